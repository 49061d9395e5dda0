"""The birth certificate's optional ``root_chains``: exact JSON, round trip, and every refusal."""
from __future__ import annotations

import json

import coincurve
import pytest

from milagro_tls.errors import MalformedInput
from milagro_tls.identity.certificate import BirthCertificate, RootChainEntry
from milagro_tls.identity.marker import MarkerType

PUBKEY = coincurve.PrivateKey(b"\x01" * 32).public_key.format()
CHAIN_KEY = coincurve.PrivateKey(b"\x02" * 32).public_key.format()


def _doc(**changes) -> dict:
    doc = {"version": 1, "role": "idp", "name": "idp.example", "urls": [], "created": "2026-01-01T00:00:00Z",
           "network": "regtest", "pubkey": PUBKEY.hex(),
           "root_chains": [{"type": 3, "key": CHAIN_KEY.hex()}, {"type": 4, "key": CHAIN_KEY.hex()}]}
    doc.update(changes)
    return doc


def test_root_chains_round_trip_in_canonical_form():
    cert = BirthCertificate.from_json(_doc())
    assert cert.root_chains == (RootChainEntry(MarkerType.ACTIVITY_LOG_ROOT, CHAIN_KEY),
                                RootChainEntry(MarkerType.REVOCATION_LIST_ROOT, CHAIN_KEY))
    assert cert.root_chains[0].type is MarkerType.ACTIVITY_LOG_ROOT
    raw = cert.canonical_bytes()
    # JCS: keys sorted, the chain list kept in order, types as plain integers.
    assert (b'"root_chains":[{"key":"' + CHAIN_KEY.hex().encode() + b'","type":3},{"key":"'
            + CHAIN_KEY.hex().encode() + b'","type":4}]') in raw
    assert BirthCertificate.parse(raw) == cert
    assert cert.root_chain(4) == (1, cert.root_chains[1])
    assert cert.root_chain(MarkerType.BATCH_ROOT) is None


def test_a_certificate_without_root_chains_has_no_such_field():
    doc = _doc()
    del doc["root_chains"]
    cert = BirthCertificate.from_json(doc)
    assert cert.root_chains == ()
    assert b"root_chains" not in cert.canonical_bytes()
    assert json.loads(cert.canonical_bytes()) == doc


@pytest.mark.parametrize("chains, message", [
    ([], "non-empty list"),
    ({"type": 3, "key": CHAIN_KEY.hex()}, "non-empty list"),
    ([{"type": 1, "key": CHAIN_KEY.hex()}], "not one of 2, 3, 4"),
    ([{"type": 5, "key": CHAIN_KEY.hex()}], "not one of 2, 3, 4"),
    ([{"type": True, "key": CHAIN_KEY.hex()}], "not one of 2, 3, 4"),
    ([{"type": 3.0, "key": CHAIN_KEY.hex()}], "not one of 2, 3, 4"),
    ([{"type": "3", "key": CHAIN_KEY.hex()}], "not one of 2, 3, 4"),
    ([{"type": 3, "key": CHAIN_KEY.hex()}, {"type": 3, "key": CHAIN_KEY.hex()}], "names a type twice"),
    ([{"type": 3, "key": PUBKEY.hex()}], "must differ from the identity key"),
    ([{"type": 3, "key": CHAIN_KEY[1:].hex()}], "compressed"),
    ([{"type": 3, "key": coincurve.PrivateKey(b"\x02" * 32).public_key.format(compressed=False).hex()}],
     "compressed"),
    ([{"type": 3, "key": "02" + "00" * 32}], "not a valid secp256k1 point"),
    ([{"type": 3, "key": "zz"}], "not hex"),
    ([{"type": 3, "key": 7}], "hex string"),
    ([{"type": 3}], "exactly the fields"),
    ([{"type": 3, "key": CHAIN_KEY.hex(), "value": 330}], "exactly the fields"),
    (["03" + CHAIN_KEY.hex()], "is a JSON object"),
])
def test_bad_root_chains_are_refused(chains, message):
    with pytest.raises(MalformedInput, match=message):
        BirthCertificate.from_json(_doc(root_chains=chains))


def test_the_constructor_refuses_what_from_json_refuses():
    with pytest.raises(MalformedInput, match="list of root chain entries"):
        BirthCertificate(role="idp", name="idp.example", pubkey=PUBKEY, network="regtest",
                         root_chains=[RootChainEntry(3, CHAIN_KEY)])
    with pytest.raises(MalformedInput, match="must differ"):
        BirthCertificate(role="idp", name="idp.example", pubkey=PUBKEY, network="regtest",
                         root_chains=(RootChainEntry(3, PUBKEY),))
