"""Known-answer vectors, recomputed here; nonce keys by a second implementation (``ecdsa``)."""
from __future__ import annotations

import pytest
from ecdsa import SECP256k1
from ecdsa.ellipticcurve import Point

from helpers.vectors import invalid_cases, valid_cases
from milagro_tls.chain.sighash import p2wpkh_sighash
from milagro_tls.chain.tx import parse_tx
from milagro_tls.ciphersuites.nonce import InvalidNonceInput, ecdsa_nonce_point, parse_der_signature
from milagro_tls.errors import MalformedInput
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.locator import Locator
from milagro_tls.identity.marker import Marker, MarkerType

G = SECP256k1.generator
ORDER = SECP256k1.order


def _point_from_compressed(data: bytes) -> Point:
    curve = SECP256k1.curve
    p = curve.p()
    x = int.from_bytes(data[1:], "big")
    y = pow((x ** 3 + 7) % p, (p + 1) // 4, p)
    if y % 2 != data[0] - 2:
        y = p - y
    return Point(curve, x, y)


def _compressed(point) -> bytes:
    x, y = point.x(), point.y()
    return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


@pytest.mark.parametrize("case", valid_cases("nonce_keys.json"))
def test_nonce_point_matches_second_implementation(case):
    r, s, z = int(case["r"], 16), int(case["s"], 16), int(case["z"], 16)
    q = _point_from_compressed(bytes.fromhex(case["pubkey"]))
    s_inv = pow(s, -1, ORDER)
    expected_r = G * (z * s_inv % ORDER) + q * (r * s_inv % ORDER)
    assert _compressed(expected_r) == bytes.fromhex(case["nonce_point"])
    assert expected_r.x() % ORDER == r
    # The owner's k, recomputed from d in pure Python: k·G is that same exact R.
    d = int(case["d"], 16)
    k = s_inv * (z + r * d) % ORDER
    assert k == int(case["k"], 16)
    assert _compressed(G * k) == bytes.fromhex(case["nonce_point"])
    # And our own code gives the same R from public data alone.
    assert ecdsa_nonce_point(r, s, bytes.fromhex(case["z"]), bytes.fromhex(case["pubkey"])).hex() == case["nonce_point"]


def test_nonce_vectors_cover_low_and_high_s():
    flags = {case.values[0]["high_s"] for case in valid_cases("nonce_keys.json")}
    assert flags == {True, False}


@pytest.mark.parametrize("case", invalid_cases("nonce_keys.json"))
def test_nonce_point_rejects_signature_that_does_not_verify(case):
    with pytest.raises(InvalidNonceInput):
        ecdsa_nonce_point(int(case["r"], 16), int(case["s"], 16), bytes.fromhex(case["z"]),
                          bytes.fromhex(case["pubkey"]))


@pytest.mark.parametrize("case", valid_cases("certificates.json"))
def test_certificate_canonical_form_and_digest(case):
    cert = BirthCertificate.from_json(case["json"])
    assert cert.canonical_bytes().hex() == case["canonical_hex"]
    assert cert.digest().hex() == case["sha256"]
    assert BirthCertificate.parse(bytes.fromhex(case["canonical_hex"])) == cert


@pytest.mark.parametrize("case", invalid_cases("certificates.json"))
def test_certificate_rejects_invalid(case):
    with pytest.raises(MalformedInput):
        BirthCertificate.parse(case["raw"].encode())


@pytest.mark.parametrize("case", valid_cases("locators.json"))
def test_locator_binary_and_json_round_trip(case):
    loc = Locator.from_json(case["json"])
    assert loc.encode().hex() == case["binary_hex"]
    assert Locator.decode(bytes.fromhex(case["binary_hex"])) == loc
    assert loc.to_json() == case["json"]


@pytest.mark.parametrize("case", invalid_cases("locators.json"))
def test_locator_rejects_invalid(case):
    with pytest.raises(MalformedInput):
        Locator.decode(bytes.fromhex(case["binary_hex"]))


@pytest.mark.parametrize("case", valid_cases("anchors.json"))
def test_anchor_vector_recomputes(case):
    tx = parse_tx(bytes.fromhex(case["raw_tx"]))
    assert tx.txid().hex() == case["txid"]
    markers = [o.script_pubkey.data for o in tx.vout if o.script_pubkey.data[:1] == b"\x6a"]
    assert Marker.parse_script(markers[0]) == Marker(MarkerType.BIRTH_CERTIFICATE,
                                                     bytes.fromhex(case["certificate_sha256"]))
    pubkey = bytes.fromhex(case["identity_pubkey"])
    z = p2wpkh_sighash(tx, 0, pubkey, case["spent_value"])
    assert z.hex() == case["sighash"]
    r, s = parse_der_signature(bytes(tx.vin[0].witness.items[0])[:-1])
    assert (f"{r:064x}", f"{s:064x}") == (case["r"], case["s"])
    # Second implementation of R for the anchor's signature.
    q = _point_from_compressed(pubkey)
    s_inv = pow(s, -1, ORDER)
    point = G * (int(case["sighash"], 16) * s_inv % ORDER) + q * (r * s_inv % ORDER)
    assert _compressed(point).hex() == case["nonce_point"]


@pytest.mark.parametrize("change", [{"input": "0"}, {"input": True}, {"version": True}, {"input": 1.0}],
                         ids=["input-string", "input-bool", "version-bool", "input-float"])
def test_locator_json_refuses_values_that_only_look_like_integers(change):
    good = valid_cases("locators.json")[0].values[0]["json"]
    Locator.from_json(good)
    with pytest.raises(MalformedInput):
        Locator.from_json({**good, **change})
