"""The trust store against identities anchored on the embedded chain and verified by the real
verifier: trust is pinned, never taken from the certificate's self-asserted name."""
from __future__ import annotations

import dataclasses
import datetime
import http.server
import ipaddress
import json
import logging
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.party import Party
from milagro_tls.trust import (MAX_METADATA_SIZE, AuthenticatedPeer, PeerNotTrusted, TrustEntry, TrustError,
                               TrustOrigin, TrustStore, TrustStoreError, authenticate_peer)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """bank.example and a client, and mallory's certificate that also claims bank.example."""
    base = tmp_path_factory.mktemp("trust")
    source = EmbeddedSource.open(base / "chain")
    source.mine(110)
    parties = {
        "bank": Party.create(base / "home", source, role="service", name="bank.example"),
        "client": Party.create(base / "home", source, role="pat", name="alice.example"),
        "mallory": Party.create(base / "mallory", source, role="service", name="bank.example"),
    }
    headers = HeaderChain(":memory:", source.network)
    identities = {key: resolve_anchor(party.locator, party.certificate, source, headers)[0]
                  for key, party in parties.items()}
    yield parties, identities
    source.close()


def _entry(party: Party, **changes) -> TrustEntry:
    return dataclasses.replace(TrustEntry.from_json(party.trust_entry()), **changes)


def test_pinned_peer_is_authenticated_under_the_store_name(chain):
    parties, identities = chain
    store = TrustStore([_entry(parties["client"]), _entry(parties["bank"], name="Bank.Example")])
    peer = authenticate_peer(identities["bank"], store, expected_name="bank.EXAMPLE")
    assert peer.authenticated and peer.entry is store.entries[1]
    assert peer.name == "Bank.Example"      # the store's spelling, not the certificate's
    assert authenticate_peer(identities["bank"], store).entry is store.entries[1]
    store.add(_entry(parties["bank"], name="savings.example"))     # one anchor under two names
    assert authenticate_peer(identities["bank"], store).name == "Bank.Example"   # the first, in store order
    assert authenticate_peer(identities["bank"], store, expected_name="savings.example").name == "savings.example"


def test_anchor_claiming_a_pinned_name_is_refused(chain):
    """Mallory anchored a certificate named bank.example; the store pins bank's anchor."""
    parties, identities = chain
    assert identities["mallory"].name == "bank.example"
    store = TrustStore([_entry(parties["bank"])])
    with pytest.raises(PeerNotTrusted, match="'bank.example' is pinned to another anchor"):
        authenticate_peer(identities["mallory"], store, expected_name="bank.example")


def test_anchor_pinned_under_another_name_is_refused(chain):
    parties, identities = chain
    store = TrustStore([_entry(parties["bank"], name="savings.example")])
    with pytest.raises(PeerNotTrusted, match="pinned as 'savings.example', not 'bank.example'"):
        authenticate_peer(identities["bank"], store, expected_name="bank.example")


def test_name_match_is_ascii_case_insensitive_only(chain):
    parties, identities = chain
    store = TrustStore([_entry(parties["bank"], name="BANK.EXAMPLE")])
    authenticate_peer(identities["bank"], store, expected_name="bank.example")
    with pytest.raises(PeerNotTrusted):     # U+0130 lowercases to "i̇" under str.lower(), not ASCII "i"
        authenticate_peer(identities["bank"], TrustStore([_entry(parties["bank"], name="\u0130.example")]),
                          expected_name="i\u0307.example")


@pytest.mark.parametrize("expected_name", [None, "bank.example"])
def test_unknown_peer_fails_closed(chain, expected_name):
    parties, identities = chain
    for store in (TrustStore(), TrustStore([_entry(parties["client"])])):
        with pytest.raises(PeerNotTrusted, match="is not in the trust store"):
            authenticate_peer(identities["bank"], store, expected_name=expected_name)


def test_allowed_roles_check_the_entry_roles_not_the_certificate(chain):
    parties, identities = chain
    assert identities["client"].certificate.role == "pat"
    store = TrustStore([_entry(parties["client"], roles=frozenset({"auditor"}))])
    assert authenticate_peer(identities["client"], store, allowed_roles=frozenset({"auditor", "idp"})).authenticated
    with pytest.raises(PeerNotTrusted, match=r"pinned with roles \['auditor'\], none of the allowed roles \['pat'\]"):
        authenticate_peer(identities["client"], store, allowed_roles=frozenset({"pat"}))


def test_entry_pinned_with_another_block_hash_still_matches(chain):
    parties, identities = chain
    other_block = dataclasses.replace(parties["bank"].locator, block_hash=bytes(32))
    store = TrustStore([_entry(parties["bank"], locator=other_block)])
    assert store.entries_for(identities["bank"].locator) == store.entries
    assert authenticate_peer(identities["bank"], store, expected_name="bank.example").authenticated
    other_input = dataclasses.replace(parties["bank"].locator, input_index=1)
    with pytest.raises(PeerNotTrusted):
        authenticate_peer(identities["bank"], TrustStore([_entry(parties["bank"], locator=other_input)]))


def test_anchor_re_mined_in_another_block_after_a_reorg_keeps_its_pin(tmp_path):
    with EmbeddedSource.open(tmp_path / "chain") as source:
        source.mine(110)
        party = Party.create(tmp_path / "home", source, role="service", name="reorg.example", confirm_blocks=1)
        store = TrustStore([TrustEntry.from_json(party.trust_entry())])
        node = source.node
        parent = BlockHeader.parse(node.header_by_hash(party.locator.block_hash)).prev_hash
        for _ in range(2):   # a longer branch from the anchor block's parent, without the anchor
            raw = node.build_block([], parent=parent)
            node.submit_block(raw)
            parent = Block.parse(raw).hash
        source.mine(1)       # the anchor, back from the mempool, in a new block
        party.confirm(source)
        identity, _ = resolve_anchor(party.locator, party.certificate, source,
                                     HeaderChain(":memory:", source.network), min_confirmations=1)
    assert identity.locator.block_hash != store.entries[0].locator.block_hash
    assert authenticate_peer(identity, store, expected_name="reorg.example").entry == store.entries[0]


def test_accept_any_anchored_peer_is_unauthenticated_and_logged(chain, caplog):
    parties, identities = chain
    store = TrustStore([_entry(parties["client"])])
    with caplog.at_level(logging.WARNING, logger="milagro_tls.trust"):
        peer = authenticate_peer(identities["bank"], store, accept_any_anchored_peer_unauthenticated=True)
    assert peer == AuthenticatedPeer(identities["bank"], None, False)
    assert peer.name is None                 # never the certificate's "bank.example"
    assert "UNAUTHENTICATED" in caplog.text
    # Under the opt-in, allowed_roles can only check the certificate's self-asserted role.
    with pytest.raises(PeerNotTrusted, match="self-asserted role 'service'"):
        authenticate_peer(identities["bank"], store, allowed_roles=frozenset({"pat"}),
                          accept_any_anchored_peer_unauthenticated=True)


def test_accept_any_anchored_peer_does_not_override_pinning(chain, caplog):
    parties, identities = chain
    store = TrustStore([_entry(parties["bank"])])
    with caplog.at_level(logging.WARNING, logger="milagro_tls.trust"):
        peer = authenticate_peer(identities["bank"], store, accept_any_anchored_peer_unauthenticated=True)
    assert peer.authenticated and peer.name == "bank.example" and caplog.text == ""
    with pytest.raises(PeerNotTrusted, match="pinned to another anchor"):
        authenticate_peer(identities["mallory"], store, expected_name="bank.example",
                          accept_any_anchored_peer_unauthenticated=True)
    with pytest.raises(PeerNotTrusted, match="pinned as 'bank.example'"):
        authenticate_peer(identities["bank"], store, expected_name="other.example",
                          accept_any_anchored_peer_unauthenticated=True)
    with pytest.raises(PeerNotTrusted, match="none of the allowed roles"):
        authenticate_peer(identities["bank"], store, allowed_roles=frozenset({"pat"}),
                          accept_any_anchored_peer_unauthenticated=True)


def test_store_saves_and_loads_the_party_trust_entries(chain, tmp_path):
    parties, _ = chain
    path = tmp_path / "trust.json"
    path.write_text(json.dumps([parties["bank"].trust_entry(), parties["client"].trust_entry(["pat", "dta"])]))
    store = TrustStore.load(path)
    assert [e.name for e in store] == ["bank.example", "alice.example"] and len(store) == 2
    assert store.entries[1].roles == frozenset({"pat", "dta"}) and store.entries[1].origin is TrustOrigin.PINNED
    store.add(_entry(parties["mallory"], name="mallory.example", origin=TrustOrigin.TBS))
    store.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert TrustStore.load(path).entries == store.entries
    saved = json.loads(path.read_text())
    assert "origin" not in saved[0] and saved[1]["roles"] == ["dta", "pat"] and saved[2]["origin"] == "tbs"
    store.remove("BANK.example")
    assert [e.name for e in store] == ["alice.example", "mallory.example"]
    with pytest.raises(TrustStoreError, match="no trust entry named"):
        store.remove("bank.example")
    with pytest.raises(TrustStoreError, match="already pinned"):
        store.add(_entry(parties["client"], name="Alice.Example"))


@pytest.mark.parametrize("mutate, message", [
    (lambda e: {"not": "a list"}, "JSON list"),
    (lambda e: ["entry"], "entry 0: a trust entry is a JSON object"),
    (lambda e: [{k: v for k, v in e.items() if k != "roles"}], r"lacks \['roles'\]"),
    (lambda e: [{**e, "pubkey": "00"}], r"unknown trust entry fields \['pubkey'\]"),
    (lambda e: [{**e, "name": 7}], "name must be a string"),
    (lambda e: [{**e, "name": ""}], "non-empty name"),
    (lambda e: [{**e, "roles": "service"}], "roles must be a list of strings"),
    (lambda e: [{**e, "roles": [["service"]]}], "roles must be a list of strings"),
    (lambda e: [{**e, "origin": "self"}], "unknown trust entry origin 'self'"),
    (lambda e: [{**e, "locator": {**e["locator"], "txid": "zz"}}], "locator JSON is malformed"),
    (lambda e: [{**e, "locator": {**e["locator"], "network": "moon"}}], "locator JSON is malformed"),
    (lambda e: [e, e], "entry 1: 'bank.example' is already pinned"),
], ids=["not-list", "not-object", "no-roles", "unknown-field", "name-type", "empty-name", "roles-string",
        "roles-items", "origin", "txid", "network", "duplicate"])
def test_malformed_trust_file_is_refused_with_its_reason(chain, tmp_path, mutate, message):
    parties, _ = chain
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(mutate(parties["bank"].trust_entry())))
    with pytest.raises(TrustStoreError, match=message):
        TrustStore.load(path)


def test_unreadable_or_non_json_trust_file_is_a_trust_store_error(tmp_path):
    with pytest.raises(TrustStoreError, match="cannot read trust file"):
        TrustStore.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(TrustStoreError, match="is not JSON"):
        TrustStore.load(tmp_path / "bad.json")
    assert issubclass(TrustStoreError, TrustError) and issubclass(PeerNotTrusted, TrustError)


# --- trust on first use over a real HTTPS server -------------------------------------------

def _certificate(subject: str, key, issuer_key, issuer: x509.Name | None = None, *, ca: bool):
    """Key identifiers on both: Python 3.13's default VERIFY_X509_STRICT refuses a chain without them."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False)
        builder = builder.add_extension(usage, critical=True)
    else:
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclasses.dataclass
class HttpsServer:
    url: str
    pages: dict[str, bytes]
    ca: ssl.SSLContext          # trusts only the throwaway CA
    ca_file: str


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """A throwaway CA, a server certificate for 127.0.0.1, and a server on 127.0.0.1:0 that
    serves whatever bytes a test puts in ``pages`` (path → body; others are 404)."""
    base = tmp_path_factory.mktemp("pki")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("trust test CA", ca_key, ca_key, ca=True)
    server_cert = _certificate("127.0.0.1", server_key, ca_key, ca_cert.subject, ca=False)
    (base / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM)
                                      + server_key.private_bytes(serialization.Encoding.PEM,
                                                                 serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
    (base / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(base / "server.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield HttpsServer(f"https://127.0.0.1:{server.server_address[1]}", pages,
                      ssl.create_default_context(cafile=base / "ca.pem"), str(base / "ca.pem"))
    server.shutdown()
    server.server_close()
    thread.join()


def test_first_use_pins_metadata_fetched_over_verified_https(chain, https_server, caplog):
    parties, identities = chain
    url, pages, ca = https_server.url, https_server.pages, https_server.ca
    pages["/bank.json"] = json.dumps({"locator": parties["bank"].locator.to_json(), "name": "127.0.0.1",
                                      "roles": ["service"]}).encode()
    store = TrustStore()
    with caplog.at_level(logging.WARNING, logger="milagro_tls.trust"):
        entry = store.trust_on_first_use_via_web_pki(f"{url}/bank.json", verify=ca)
    assert entry == TrustEntry("127.0.0.1", parties["bank"].locator, frozenset({"service"}), TrustOrigin.WEB_PKI)
    assert store.entries == (entry,) and entry.to_json()["origin"] == "web-pki"
    assert "web PKI (a certificate authority) is now the root of trust" in caplog.text
    assert authenticate_peer(identities["bank"], store, expected_name="127.0.0.1").entry == entry
    # A second use finds the same anchor pinned and changes nothing.
    assert store.trust_on_first_use_via_web_pki(f"{url}/bank.json", verify=ca) == entry and len(store) == 1


def test_first_use_names_the_entry_by_argument_then_metadata_then_host(chain, https_server):
    parties, _ = chain
    url, pages, ca = https_server.url, https_server.pages, https_server.ca
    pages["/bare.json"] = json.dumps({"locator": parties["client"].locator.to_json()}).encode()
    store = TrustStore()
    by_host = store.trust_on_first_use_via_web_pki(f"{url}/bare.json", verify=ca)
    assert by_host.name == "127.0.0.1" and by_host.roles == frozenset()
    named = store.trust_on_first_use_via_web_pki(f"{url}/bare.json", name="alice.example", roles=["pat"],
                                                 verify=https_server.ca_file)   # a CA bundle path
    assert named.name == "alice.example" and named.roles == frozenset({"pat"})
    pages["/claims.json"] = json.dumps({"locator": parties["bank"].locator.to_json(), "name": "bank.example",
                                        "roles": ["service"]}).encode()
    chosen = store.trust_on_first_use_via_web_pki(f"{url}/claims.json", name="my-bank", roles=[], verify=ca)
    assert chosen.name == "my-bank" and chosen.roles == frozenset()


def test_first_use_ignores_a_name_the_certificate_authority_did_not_vouch_for(chain, https_server, caplog):
    """The CA vouches for 127.0.0.1 only: a document claiming bank.example is not pinned as bank.example."""
    parties, identities = chain
    url, pages, ca = https_server.url, https_server.pages, https_server.ca
    pages["/claims-other-host.json"] = json.dumps({"locator": parties["mallory"].locator.to_json(),
                                                   "name": "bank.example"}).encode()
    store = TrustStore()
    with caplog.at_level(logging.WARNING, logger="milagro_tls.trust"):
        entry = store.trust_on_first_use_via_web_pki(f"{url}/claims-other-host.json", verify=ca)
    assert entry.name == "127.0.0.1"
    assert "claims the name 'bank.example'" in caplog.text
    assert not [e for e in store if e.name == "bank.example"]


def test_first_use_refuses_what_it_cannot_verify_or_parse(chain, https_server):
    parties, _ = chain
    url, pages, ca = https_server.url, https_server.pages, https_server.ca
    pages["/not-json"] = b"<html>hello</html>"
    pages["/huge.json"] = b" " * (MAX_METADATA_SIZE + 1)
    pages["/no-locator.json"] = json.dumps({"name": "bank.example"}).encode()
    pages["/bad-locator.json"] = json.dumps({"locator": {"version": 1}}).encode()
    pages["/bad-roles.json"] = json.dumps({"locator": parties["bank"].locator.to_json(), "roles": "x"}).encode()
    store = TrustStore()
    for path, message in [("/not-json", "is not JSON"), ("/no-locator.json", "not a JSON object with a locator"),
                          ("/bad-locator.json", "locator JSON is malformed"),
                          ("/bad-roles.json", "roles must be a list"), ("/missing", "HTTP 404"),
                          ("/huge.json", f"exceeds {MAX_METADATA_SIZE} bytes")]:
        with pytest.raises(TrustStoreError, match=message):
            store.trust_on_first_use_via_web_pki(url + path, verify=ca)
    with pytest.raises(TrustStoreError, match="only over https://"):
        store.trust_on_first_use_via_web_pki(url.replace("https", "http") + "/bank.json", verify=ca)
    with pytest.raises(TrustStoreError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        store.trust_on_first_use_via_web_pki(url + "/not-json")            # the system CAs do not know ours
    with pytest.raises(TrustStoreError, match="needs certificate"):
        store.trust_on_first_use_via_web_pki(url + "/not-json", verify=False)
    assert len(store) == 0


def test_first_use_never_replaces_a_name_pinned_to_another_anchor(chain, https_server):
    parties, _ = chain
    url, pages, ca = https_server.url, https_server.pages, https_server.ca
    pages["/mallory.json"] = json.dumps({"locator": parties["mallory"].locator.to_json()}).encode()
    store = TrustStore([_entry(parties["bank"])])
    with pytest.raises(TrustStoreError, match="'bank.example' is already pinned to regtest p2wpkh"):
        store.trust_on_first_use_via_web_pki(f"{url}/mallory.json", name="bank.example", verify=ca)
    assert store.entries == (_entry(parties["bank"]),)
