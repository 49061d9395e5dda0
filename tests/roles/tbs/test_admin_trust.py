"""Trust entries for a group, verified against the chain: pasted (certificate required, proof
fetched when absent, a wrong certificate or a forged proof refused) and fetched from a role's
normative URL (its live certificate and metadata checked with check_role; a role serving
another's certificate, a pinned locator that differs, a plain-http URL refused)."""
from __future__ import annotations

import hashlib

import httpx
import pytest
from flask import Flask, Response, jsonify

from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.enrolment import InstructionTrust
from milagro_tls.roles.tbs.admin.accounts import authenticate, create_token
from milagro_tls.roles.tbs.groups import get_group
from milagro_tls.roles.wellknown import BIRTH_CERTIFICATE_PATH, METADATA_PATH, metadata_document, wellknown_blueprint

from .admin_support import (ADMIN, PASSWORD, app, chain, client, logged_in, make_app, page_csrf,  # noqa: F401
                            pasted_entry, store)


@pytest.fixture
def h(app, store):
    return {"Authorization": "Bearer " + create_token(store, authenticate(store, ADMIN, PASSWORD), "t")}


def test_pasted_entry_is_verified_and_stored_with_its_proof(client, h, store, world):
    idp = world.parties["idp.example"]
    response = client.post("/api/groups/default/trust", json={"entries": [pasted_entry(idp)]}, headers=h)
    assert response.status_code == 200, response.get_json()
    doc = response.get_json()
    assert doc["added"][0]["certificate_name"] == "idp.example" and doc["added"][0]["role"] == "idp"
    assert doc["added"][0]["txid"] == idp.locator.txid_hex
    assert doc["group"]["trust"] == [{"name": "idp.example", "roles": ["idp"], "locator": idp.locator.to_json(),
                                      "txid": idp.locator.txid_hex}]
    stored = get_group(store, "default").trust[0]
    # What the PATs get: the entry with the certificate and the proof of the TBS's chain.
    _, proof = resolve_anchor(idp.locator, idp.certificate, world.source, world.headers())
    assert stored["proof"] == proof.encode().hex()
    assert InstructionTrust.from_json(stored).certificate == idp.certificate


def test_pasted_entry_with_its_proof_and_a_name_and_roles(client, h, store, world):
    dta = world.parties["echo.example"]
    _, proof = resolve_anchor(dta.locator, dta.certificate, world.source, world.headers())
    entry = pasted_entry(dta, name="dta-one", roles=["dta"]) | {"proof": proof.encode().hex()}
    assert client.post("/api/groups/default/trust", json={"entries": [entry]}, headers=h).status_code == 200
    assert [(e["name"], e["roles"]) for e in get_group(store, "default").trust] == [("dta-one", ["dta"])]
    # Replaced by name, then removed.
    client.post("/api/groups/default/trust", json={"entries": [entry | {"roles": ["dta", "idp"]}]}, headers=h)
    assert get_group(store, "default").trust[0]["roles"] == ["dta", "idp"]
    assert client.delete("/api/groups/default/trust/dta-one", headers=h).get_json()["trust"] == []
    assert client.delete("/api/groups/default/trust/dta-one", headers=h).status_code == 404


def test_wrong_certificate_is_refused(client, h, store, world):
    forged = pasted_entry(world.parties["idp.example"], certificate=world.parties["mallory.example"].certificate)
    response = client.post("/api/groups/default/trust", json={"entries": [forged]}, headers=h)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert response.get_json()["error_description"].startswith("entry 1: DigestMismatch")
    assert get_group(store, "default").trust == []


def test_proof_of_another_anchor_is_refused(client, h, store, world):
    idp, other = world.parties["idp.example"], world.parties["mallory.example"]
    _, other_proof = resolve_anchor(other.locator, other.certificate, world.source, world.headers())
    entry = pasted_entry(idp) | {"proof": other_proof.encode().hex()}
    response = client.post("/api/groups/default/trust", json={"entries": [entry]}, headers=h)
    assert response.status_code == 400
    assert response.get_json()["error_description"].startswith("entry 1: ")
    assert get_group(store, "default").trust == []


@pytest.mark.parametrize("entries,message", [
    ([{"name": "x"}], "entry 1: missing ['certificate', 'locator']"),
    ([{"locator": {}, "certificate": "{}", "extra": 1}], "entry 1: unknown fields ['extra']"),
    ([], "paste 1 to 64 trust entries"),
])
def test_malformed_pastes(client, h, entries, message):
    response = client.post("/api/groups/default/trust", json={"entries": entries}, headers=h)
    assert response.status_code == 400
    assert response.get_json()["error_description"].startswith(message)


def test_paste_through_the_page(logged_in, store, world):
    import json
    token = page_csrf(logged_in, "/groups/default")
    entry = pasted_entry(world.parties["idp.example"])
    response = logged_in.post("/groups/default/trust/paste", data={"csrf_token": token, "entries": json.dumps(entry)})
    assert response.status_code == 303
    page = logged_in.get("/groups/default").get_data(as_text=True)
    assert "Verified and trusted: idp.example (idp, anchor" in page
    assert 'id="trust-idp.example"' in page
    response = logged_in.post("/groups/default/trust/paste", data={"csrf_token": token, "entries": "[{"})
    assert response.status_code == 400 and "not JSON" in response.get_data(as_text=True)
    assert logged_in.post("/groups/default/trust/paste", data={"entries": json.dumps(entry)}).status_code == 400


# --- fetched from a role's normative URL ---------------------------------------------------------
def role_http(role_app: Flask):
    return lambda: httpx.Client(transport=httpx.WSGITransport(app=role_app))


def honest_role(party) -> Flask:
    role = Flask("role")
    role.register_blueprint(wellknown_blueprint(party))
    return role


def lying_role(served_certificate, metadata_party) -> Flask:
    """Serves one party's certificate beside another's metadata (and its locator)."""
    role = Flask("liar")

    @role.get(BIRTH_CERTIFICATE_PATH)
    def certificate():
        return Response(served_certificate.canonical_bytes(), mimetype="application/json")

    @role.get(METADATA_PATH)
    def metadata():
        import time
        return jsonify(metadata_document(metadata_party, canary=None, period_seconds=None, now=time.time()))

    return role


def fetch_app(store, chain, role_app):
    application = make_app(store, chain=chain, fetch_http=role_http(role_app))
    from milagro_tls.roles.tbs.admin import add_admin
    admin = add_admin(store, "fetcher", "pw")
    return application, {"Authorization": "Bearer " + create_token(store, admin, "t")}


def test_fetch_from_a_role(store, chain, world):
    idp = world.parties["idp.example"]
    application, h = fetch_app(store, chain, honest_role(idp))
    response = application.test_client().post("/api/groups/default/trust", headers=h,
                                              json={"url": "https://idp.test:8443", "roles": ["idp"]})
    assert response.status_code == 200, response.get_json()
    added = response.get_json()["added"][0]
    assert (added["name"], added["role"], added["txid"]) == ("idp.example", "idp", idp.locator.txid_hex)
    assert any("canary" in warning for warning in added["warnings"])     # this role keeps none
    stored = get_group(store, "default").trust[0]
    assert hashlib.sha256(stored["certificate"].encode()).digest() == idp.certificate.digest()


def test_fetch_with_a_pinned_locator(store, chain, world):
    idp, other = world.parties["idp.example"], world.parties["mallory.example"]
    application, h = fetch_app(store, chain, honest_role(idp))
    client_ = application.test_client()
    response = client_.post("/api/groups/default/trust", headers=h,
                            json={"url": "https://idp.test", "expected_locator": other.locator.to_json()})
    assert response.status_code == 400
    assert "not the expected locator" in response.get_json()["error_description"]
    response = client_.post("/api/groups/default/trust", headers=h,
                            json={"url": "https://idp.test", "expected_locator": idp.locator.to_json()})
    assert response.status_code == 200


def test_fetch_from_a_role_serving_another_certificate_is_refused(store, chain, world):
    liar = lying_role(world.parties["mallory.example"].certificate, world.parties["idp.example"])
    application, h = fetch_app(store, chain, liar)
    response = application.test_client().post("/api/groups/default/trust", headers=h, json={"url": "https://idp.test"})
    assert response.status_code == 400
    assert "DigestMismatch" in response.get_json()["error_description"]
    assert get_group(store, "default").trust == []


def test_fetch_refusals(store, chain, world):
    application, h = fetch_app(store, chain, Flask("empty"))
    client_ = application.test_client()
    response = client_.post("/api/groups/default/trust", headers=h, json={"url": "http://idp.test"})
    assert response.status_code == 400 and "https://" in response.get_json()["error_description"]
    response = client_.post("/api/groups/default/trust", headers=h, json={"url": "https://idp.test"})
    assert response.status_code == 400
    assert response.get_json()["error_description"] == \
        "birth certificate: HTTP 404 from https://idp.test/.well-known/milagro/birth-certificate"
    response = client_.post("/api/groups/default/trust", headers=h, json={"url": "https://x", "bogus": 1})
    assert response.status_code == 400
    assert client_.post("/api/groups/nope/trust", headers=h, json={"url": "https://x"}).status_code == 404


def test_without_chain_access_trust_is_refused(store, world):
    application = make_app(store)
    from milagro_tls.roles.tbs.admin import add_admin
    h = {"Authorization": "Bearer " + create_token(store, add_admin(store, "c", "pw"), "t")}
    response = application.test_client().post("/api/groups/default/trust", headers=h,
                                              json={"entries": [pasted_entry(world.parties["idp.example"])]})
    assert response.status_code == 400
    assert response.get_json()["error_description"] == "this admin API has no chain access to check trust entries"
