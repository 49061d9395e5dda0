"""tests/vectors/key_agreement.json: reproduced by our code, then recomputed by a second implementation.

The second implementation uses the pure-Python ``ecdsa`` package's curve arithmetic,
hashlib and a TLS 1.2 P_hash written here with hmac. It reads only the JSON: nothing from
milagro_tls enters those computations, so a shared bug cannot make both sides agree.
"""
from __future__ import annotations

import hashlib
import hmac

import coincurve
import pytest
from ecdsa import SECP256k1, VerifyingKey
from ecdsa.ellipticcurve import INFINITY, Point
from ecdsa.util import sigdecode_string, sigencode_der, sigencode_string
from tlslite.mathtls import PRF_1_2, PRF_1_2_SHA384

from helpers.vectors import invalid_cases, load_vectors, valid_cases
from milagro_tls.chain.sighash import p2wpkh_sighash
from milagro_tls.chain.tx import parse_tx
from milagro_tls.ciphersuites import ecdh_btc, nizk, yak_btc
from milagro_tls.ciphersuites.nonce import ecdsa_nonce_point, parse_der_signature
from milagro_tls.identity.keys import IdentityKey

VECTORS = "key_agreement.json"
CURVE = SECP256k1.curve
GENERATOR = SECP256k1.generator
ORDER = SECP256k1.order
FIELD = CURVE.p()


def _anchors(case: dict) -> list[dict]:
    return [case[side]["anchor"] for side in ("client", "server") if "anchor" in case[side]]


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def _secret(value: str) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(_hex(value))


# ---------------------------------------------------------------- our code reproduces every value

@pytest.mark.parametrize("case", valid_cases(VECTORS))
def test_anchor_gives_the_recorded_nonce_point_and_owner_nonce(case):
    for anchor in _anchors(case):
        tx = parse_tx(_hex(anchor["raw_tx"]))
        pubkey = _hex(anchor["identity_pubkey"])
        z = p2wpkh_sighash(tx, 0, pubkey, anchor["spent_value"])
        assert z.hex() == anchor["sighash"]
        r, s = parse_der_signature(bytes(tx.vin[0].witness.items[0])[:-1])
        assert (f"{r:064x}", f"{s:064x}") == (anchor["r"], anchor["s"])
        assert ecdsa_nonce_point(r, s, z, pubkey).hex() == anchor["nonce_point"]
        owner = IdentityKey(_secret(anchor["identity_private_key"]))
        assert owner.public_key == pubkey
        assert owner.nonce_key(r, s, z).secret.hex() == anchor["k"]


@pytest.mark.parametrize("case", valid_cases(VECTORS))
def test_premaster_reproduces_on_both_sides(case):
    client, server = case["client"], case["server"]
    r_server = _hex(server["anchor"]["nonce_point"])
    k_server = _secret(server["anchor"]["k"])
    if case["suite"] == "ecdh_btc":
        if case["mode"] == "full":
            client_view = ecdh_btc.premaster(_secret(client["anchor"]["k"]), r_server)
            server_view = ecdh_btc.premaster(k_server, _hex(client["anchor"]["nonce_point"]))
        else:
            e = _secret(client["ephemeral"])
            assert e.public_key.format().hex() == client["ephemeral_point"]
            client_view = ecdh_btc.premaster(e, r_server)
            server_view = ecdh_btc.premaster(k_server, _hex(client["ephemeral_point"]))
    else:
        full = case["mode"] == "full"
        client_view = yak_btc.premaster(
            long_term=_secret(client["anchor"]["k"]) if full else None, ephemeral=_secret(client["ephemeral"]),
            peer_nonce_point=r_server, peer_ephemeral=_hex(server["ephemeral_point"]))
        server_view = yak_btc.premaster(
            long_term=k_server, ephemeral=_secret(server["ephemeral"]),
            peer_nonce_point=_hex(client["anchor"]["nonce_point"]) if full else None,
            peer_ephemeral=_hex(client["ephemeral_point"]))
    assert client_view.hex() == server_view.hex() == case["premaster"]


@pytest.mark.parametrize("case", [c for c in valid_cases(VECTORS) if c.values[0]["suite"] == "yak_btc"])
def test_nizk_proofs_reproduce_and_verify(case):
    info = yak_btc.other_info(_hex(case["client_random"]), _hex(case["server_random"]))
    for side in ("client", "server"):
        doc = case[side]
        proof_doc = doc["proof"]
        digest = _hex(doc["anchor"]["certificate_sha256"]) if "anchor" in doc else None
        uid = yak_btc.user_id(digest)
        assert (uid.hex(), info.hex()) == (proof_doc["user_id"], proof_doc["other_info"])
        x = _secret(doc["ephemeral"])
        assert x.public_key.format().hex() == doc["ephemeral_point"]
        proof = nizk.prove(x, uid, info, nonce=_secret(proof_doc["nonce"]))
        assert (proof.commitment.hex(), proof.response.hex()) == (proof_doc["commitment"], proof_doc["response"])
        c = nizk.challenge(_hex(doc["ephemeral_point"]), proof.commitment, uid, info)
        assert f"{c:064x}" == proof_doc["challenge"]
        nizk.verify(_hex(doc["ephemeral_point"]), nizk.SchnorrProof(_hex(proof_doc["commitment"]),
                                                                    _hex(proof_doc["response"])), uid, info)


@pytest.mark.parametrize("case", valid_cases(VECTORS))
def test_extended_master_secret_reproduces_with_tlslite_prf(case):
    premaster = _hex(case["premaster"])
    assert bytes(PRF_1_2(premaster, b"extended master secret", _hex(case["session_hash_sha256"]), 48)).hex() \
        == case["master_secret_sha256"]
    assert bytes(PRF_1_2_SHA384(premaster, b"extended master secret", _hex(case["session_hash_sha384"]),
                                48)).hex() == case["master_secret_sha384"]


# ---------------------------------------------------------------- second implementation, JSON only

def _decode(data: bytes) -> Point:
    """Compressed SEC1 to a point, with every check done here (SEC 1 §2.3.4)."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise ValueError("not a compressed point")
    x = int.from_bytes(data[1:], "big")
    if x >= FIELD:
        raise ValueError("x is not a field element")
    y = pow((x ** 3 + 7) % FIELD, (FIELD + 1) // 4, FIELD)  # p ≡ 3 mod 4
    if y * y % FIELD != (x ** 3 + 7) % FIELD:
        raise ValueError("x is not on the curve")
    if y % 2 != data[0] - 2:
        y = FIELD - y
    return Point(CURVE, x, y, ORDER)


def _encode(point: Point) -> bytes:
    assert point != INFINITY
    return bytes([2 + (point.y() & 1)]) + point.x().to_bytes(32, "big")


def _x(point: Point) -> str:
    return point.x().to_bytes(32, "big").hex()


def _int(value: str) -> int:
    return int(value, 16)


def _p_hash(name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 §5: P_hash(secret, seed) = HMAC(secret, A(1) ‖ seed) ‖ HMAC(secret, A(2) ‖ seed) ‖ …"""
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, name).digest()
        out += hmac.new(secret, a + seed, name).digest()
    return out[:length]


def _challenge(public_point: bytes, commitment: bytes, user_id: bytes, other_info: bytes) -> int:
    items = (_encode(GENERATOR), commitment, public_point, user_id, other_info)
    data = b"".join(len(item).to_bytes(4, "big") + item for item in items)
    return int.from_bytes(hashlib.sha256(data).digest(), "big") % ORDER


def _equation_holds(public_point: bytes, commitment: bytes, response: bytes, user_id: bytes,
                    other_info: bytes) -> bool:
    r = int.from_bytes(response, "big")
    if len(response) != 32 or not 0 < r < ORDER:
        return False
    c = _challenge(public_point, commitment, user_id, other_info)
    return GENERATOR * r + _decode(public_point) * c == _decode(commitment)


@pytest.mark.parametrize("case", valid_cases(VECTORS))
def test_second_implementation_checks_each_anchor_signature_and_nonce(case):
    for anchor in _anchors(case):
        r, s, z = _int(anchor["r"]), _int(anchor["s"]), _int(anchor["sighash"])
        d, k = _int(anchor["identity_private_key"]), _int(anchor["k"])
        q = _decode(_hex(anchor["identity_pubkey"]))
        assert GENERATOR * d == q
        # The anchor's witness holds this very signature and key, and the signature verifies.
        raw = _hex(anchor["raw_tx"])
        assert sigencode_der(r, s, ORDER) + b"\x01" in raw and _hex(anchor["identity_pubkey"]) in raw
        vk = VerifyingKey.from_string(_hex(anchor["identity_pubkey"]), curve=SECP256k1)
        assert vk.verify_digest(sigencode_string(r, s, ORDER), _hex(anchor["sighash"]), sigdecode=sigdecode_string)
        # R as ECDSA verification computes it, and the owner's nonce for the on-chain s.
        s_inv = pow(s, -1, ORDER)
        point = GENERATOR * (z * s_inv % ORDER) + q * (r * s_inv % ORDER)
        assert _encode(point).hex() == anchor["nonce_point"]
        assert point.x() % ORDER == r
        assert k == s_inv * (z + r * d) % ORDER
        assert GENERATOR * k == point
        assert hashlib.sha256(_hex(anchor["certificate_canonical_hex"])).hexdigest() == anchor["certificate_sha256"]


def test_vectors_cover_both_parities_of_the_nonce_point():
    prefixes = {anchor["nonce_point"][:2] for case in valid_cases(VECTORS) for anchor in _anchors(case.values[0])}
    assert prefixes == {"02", "03"}


@pytest.mark.parametrize("case", valid_cases(VECTORS))
def test_second_implementation_recomputes_the_premaster(case):
    client, server = case["client"], case["server"]
    r_server = _decode(_hex(server["anchor"]["nonce_point"]))
    k_server = _int(server["anchor"]["k"])
    if case["mode"] == "full":
        r_client, k_client = _decode(_hex(client["anchor"]["nonce_point"])), _int(client["anchor"]["k"])
    if case["suite"] == "yak_btc":
        x_client, x_server = _int(client["ephemeral"]), _int(server["ephemeral"])
        big_x_client, big_x_server = _decode(_hex(client["ephemeral_point"])), _decode(_hex(server["ephemeral_point"]))
        assert (GENERATOR * x_client, GENERATOR * x_server) == (big_x_client, big_x_server)
    if case["suite"] == "ecdh_btc" and case["mode"] == "full":
        views = [r_server * k_client, r_client * k_server, GENERATOR * (k_client * k_server % ORDER)]
    elif case["suite"] == "ecdh_btc":
        e = _int(client["ephemeral"])
        big_e = _decode(_hex(client["ephemeral_point"]))
        assert GENERATOR * e == big_e
        views = [r_server * e, big_e * k_server]
    elif case["mode"] == "full":
        views = [(r_server + big_x_server) * ((k_client + x_client) % ORDER),
                 (r_client + big_x_client) * ((k_server + x_server) % ORDER),
                 GENERATOR * ((k_client + x_client) * (k_server + x_server) % ORDER)]
    else:
        views = [(r_server + big_x_server) * x_client, big_x_client * ((k_server + x_server) % ORDER)]
    assert {_x(view) for view in views} == {case["premaster"]}


@pytest.mark.parametrize("case", [c for c in valid_cases(VECTORS) if c.values[0]["suite"] == "yak_btc"])
def test_second_implementation_checks_each_nizk(case):
    other_info = _hex(case["client_random"]) + _hex(case["server_random"])
    for side in ("client", "server"):
        doc, proof = case[side], case[side]["proof"]
        expected_user = (_hex(doc["anchor"]["certificate_sha256"]) if "anchor" in doc
                         else b"milagro-tls anonymous client")
        assert (_hex(proof["user_id"]), _hex(proof["other_info"])) == (expected_user, other_info)
        a = _hex(doc["ephemeral_point"])
        c = _challenge(a, _hex(proof["commitment"]), expected_user, other_info)
        assert c == _int(proof["challenge"])
        v, x, r = _int(proof["nonce"]), _int(doc["ephemeral"]), _int(proof["response"])
        assert _encode(GENERATOR * v).hex() == proof["commitment"]
        assert r == (v - x * c) % ORDER
        assert _equation_holds(a, _hex(proof["commitment"]), _hex(proof["response"]), expected_user, other_info)


@pytest.mark.parametrize("case", valid_cases(VECTORS))
def test_second_implementation_recomputes_the_extended_master_secret(case):
    premaster = _hex(case["premaster"])
    for name in ("sha256", "sha384"):
        session_hash = _hex(case[f"session_hash_{name}"])
        assert len(session_hash) == hashlib.new(name).digest_size
        # RFC 7627 §4: master_secret = PRF(pre_master_secret, "extended master secret", session_hash)[0..47]
        master = _p_hash(name, premaster, b"extended master secret" + session_hash, 48)
        assert master.hex() == case[f"master_secret_{name}"]


@pytest.mark.parametrize("case", [c for c in invalid_cases(VECTORS) if c.values[0]["kind"] == "proof"])
def test_second_implementation_also_refuses_each_invalid_proof(case):
    fields = [_hex(case[key]) for key in ("public_point", "commitment", "response", "user_id", "other_info")]
    try:
        holds = _equation_holds(*fields)
    except ValueError:  # a point that does not decode
        holds = False
    assert not holds


@pytest.mark.parametrize("case", [c for c in invalid_cases(VECTORS) if c.values[0]["kind"] == "point"])
def test_second_implementation_also_refuses_each_invalid_point(case):
    with pytest.raises(ValueError):
        _decode(_hex(case["point"]))


def test_every_invalid_case_names_a_known_exception():
    from milagro_tls.ciphersuites import errors

    for case in load_vectors(VECTORS)["invalid"]:
        assert issubclass(getattr(errors, case["error"]), errors.KeyAgreementError), case["name"]
