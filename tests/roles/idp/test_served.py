"""The IdP as deployed: ``milagro idp serve`` under gunicorn, over real HTTPS on one port.
Standard clients (httpx trusting the fallback certificate) and a milagro-tls client (httpx over
a Context pinning the IdP's anchor) reach the same issuer."""
from __future__ import annotations

import ssl

import httpx

from .flows import REDIRECT_URI, authorize, authorize_params, exchange, location, pkce_pair, query_of


def standard_client(idp_server) -> httpx.Client:
    return httpx.Client(base_url=idp_server.issuer, verify=ssl.create_default_context(cafile=idp_server.ca_file),
                        follow_redirects=False, timeout=30)


def test_code_flow_over_https_with_userinfo_get_and_post(idp_server):
    with standard_client(idp_server) as http:
        doc = http.get("/.well-known/openid-configuration").json()
        assert doc["issuer"] == idp_server.issuer and doc["token_endpoint"] == idp_server.issuer + "/token"
        registered = http.post("/register", json={"client_name": "HTTPS App", "redirect_uris": [REDIRECT_URI]})
        assert registered.status_code == 201, registered.text
        client = registered.json()
        verifier, challenge = pkce_pair()
        response = authorize(http, authorize_params(client["client_id"], challenge))
        assert response.status_code == 302 and location(response).startswith(REDIRECT_URI), response.text
        tokens = exchange(http, query_of(location(response))["code"], verifier, client["client_id"],
                          client["client_secret"])
        assert tokens.status_code == 200, tokens.text
        access = tokens.json()["access_token"]
        by_header = http.get("/userinfo", headers={"Authorization": f"Bearer {access}"})
        by_body = http.post("/userinfo", data={"access_token": access})
        assert by_header.status_code == by_body.status_code == 200
        assert by_header.json() == by_body.json() and by_header.json()["preferred_username"] == "alice"
        receipts = http.get("/milagro/receipts").json()
        assert receipts and receipts[-1]["issuer"] == idp_server.issuer and len(receipts[-1]["salt"]) == 64


def test_webfinger_and_jwks_over_https(idp_server):
    with standard_client(idp_server) as http:
        host = idp_server.issuer.removeprefix("https://")
        finger = http.get("/.well-known/webfinger", params={"resource": f"acct:alice@{host}"})
        assert finger.status_code == 200 and finger.json()["links"][0]["href"] == idp_server.issuer
        keys = http.get("/jwks").json()["keys"]
        assert {key["alg"] for key in keys} == {"RS256", "ES256"}


def test_a_milagro_tls_client_gets_discovery_over_a_bitcoin_suite_on_the_same_port(idp_server, world):
    from milagro_tls.context import Context
    from milagro_tls.identity.party import Party
    from milagro_tls.trust import TrustEntry, TrustStore

    party = Party.load(idp_server.home, "idp")
    entry = TrustEntry.from_json({**party.trust_entry(), "name": "idp.pinned"})
    with Context(trust=TrustStore([entry]), chain=world.source, headers=":memory:") as context:
        with httpx.Client(verify=context, timeout=30) as http:
            with http.stream("GET", idp_server.issuer + "/.well-known/openid-configuration",
                             extensions={"sni_hostname": "idp.pinned"}) as response:
                tls = response.extensions["network_stream"].get_extra_info("socket")     # the MilagroSocket
                cipher, peer = tls.cipher(), tls.getpeercert()
                response.read()
    assert response.status_code == 200
    doc = response.json()
    assert cipher[0].startswith(("ECDH-BTC", "YAK-BTC"))
    assert peer["name"] == "idp.pinned" and peer["locator"] == party.locator.to_json()   # verified from the chain
    assert doc["issuer"] == idp_server.issuer
    assert doc["milagro_pubkey"] == party.key.public_key.hex()
    assert doc["milagro_birth_certificate_sha256"] == party.certificate.digest().hex()
    assert doc["milagro_locator"] == party.locator.to_json()


def test_a_login_receipt_is_anchored_and_its_inclusion_verifies_against_the_chain(world, tmp_path):
    """A separate IdP with 2-second log periods: log in, wait for the period's root to be
    anchored (a type-0x03 link of the IdP's chain), mine it, and verify the receipt's inclusion
    against headers alone."""
    import time

    from milagro_tls.chain.verify import resolve_anchor
    from milagro_tls.identity.party import Party
    from milagro_tls.roles.activitylog import receipt_leaf, verify_log_inclusion

    from .flows import login
    from .served import ServedChain, start_idp

    chain = ServedChain(world)
    try:
        idp = start_idp(tmp_path / "idp", chain.chain_dir, extra=("--period", "2"))
        try:
            with standard_client(idp) as http:
                assert login(http).status_code == 302
                receipt = http.get("/milagro/receipts").json()[-1]
                sub = query_sub(http, idp)
                leaf = bytes.fromhex(receipt["leaf"])
                assert receipt_leaf(bytes.fromhex(receipt["salt"]), sub, receipt["period"]) == leaf
                deadline = time.monotonic() + 60
                while True:
                    found = http.get("/.well-known/milagro/activity-log/inclusion", params={"leaf": leaf.hex()})
                    if found.status_code == 200:
                        break
                    assert found.status_code == 409, found.text               # not anchored yet
                    assert time.monotonic() < deadline, idp.log()[-3000:]
                    world.source.mine(1)
                    time.sleep(0.5)
                doc = found.json()
        finally:
            idp.stop()
    finally:
        chain.close()
    world.source.mine(1)
    party = Party.load(tmp_path / "idp", "idp")
    headers = world.headers()
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, headers)
    verified = verify_log_inclusion(doc, leaf, identity, proof.tx, world.source, headers)
    assert verified.period == receipt["period"]


def query_sub(http, idp) -> str:
    """alice's sub, through a public client's code flow (the receipt names the sub)."""
    client = http.post("/register", json={"redirect_uris": [REDIRECT_URI],
                                          "token_endpoint_auth_method": "none"}).json()
    verifier, challenge = pkce_pair()
    response = authorize(http, authorize_params(client["client_id"], challenge))
    tokens = exchange(http, query_of(location(response))["code"], verifier, client["client_id"], None).json()
    return http.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()["sub"]


def test_two_workers_share_one_postgresql(world, tmp_path, postgres_database):
    """Two gunicorn workers over one PostgreSQL: codes, tokens, sessions' users and device
    codes written by one worker are read by the other (each request on a new connection,
    spread over the workers by the kernel)."""
    from .served import ServedChain, start_idp

    chain = ServedChain(world)
    try:
        idp = start_idp(tmp_path / "idp", chain.chain_dir, db=postgres_database, workers=2)
        try:
            assert idp.announced["workers"] == 2
            context = ssl.create_default_context(cafile=idp.ca_file)
            with httpx.Client(base_url=idp.issuer, verify=context, timeout=30) as setup:
                client = setup.post("/register", json={"redirect_uris": [REDIRECT_URI]}).json()
            for _ in range(3):
                # No keep-alive: every request may land on either worker.
                limits = httpx.Limits(max_keepalive_connections=0)
                with httpx.Client(base_url=idp.issuer, verify=context, timeout=30, limits=limits) as http:
                    verifier, challenge = pkce_pair()
                    response = authorize(http, authorize_params(client["client_id"], challenge))
                    assert response.status_code == 302, response.text
                    tokens = exchange(http, query_of(location(response))["code"], verifier, client["client_id"],
                                      client["client_secret"])
                    assert tokens.status_code == 200, tokens.text
                    info = http.get("/userinfo", headers={"Authorization": f"Bearer {tokens.json()['access_token']}"})
                    assert info.json()["preferred_username"] == "alice"
        finally:
            idp.stop()
    finally:
        chain.close()
    assert "Booting worker" in idp.log() and idp.log().count("Booting worker") >= 2
