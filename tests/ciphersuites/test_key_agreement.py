"""ECDH-BTC, YAK-BTC and the Schnorr NIZK: what they agree on, and what they refuse."""
from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass

import coincurve
import pytest

from helpers.vectors import invalid_cases
from milagro_tls.chain.sighash import p2wpkh_script, p2wpkh_sighash
from milagro_tls.chain.source import UnspentOutput
from milagro_tls.chain.tx import parse_tx
from milagro_tls.ciphersuites import ecdh_btc, errors, nizk, points, yak_btc
from milagro_tls.ciphersuites.errors import InvalidPoint, InvalidProof, InvalidScalar, KeyAgreementError
from milagro_tls.ciphersuites.nonce import N, ecdsa_nonce_point, parse_der_signature
from milagro_tls.errors import MilagroError
from milagro_tls.identity.anchor import build_anchor_tx
from milagro_tls.identity.keys import IdentityKey

PARITIES = ("even", "odd")


@dataclass(frozen=True)
class AnchoredParty:
    k: coincurve.PrivateKey       # the owner's nonce (secret)
    nonce_point: bytes            # R, as the verifier computes it
    certificate_digest: bytes


def _anchored_party(parity: str) -> AnchoredParty:
    """A fresh identity with a real anchor whose exact R has the wanted y parity."""
    prefix = 0x02 if parity == "even" else 0x03
    fee_script = p2wpkh_script(coincurve.PrivateKey().public_key.format())
    while True:
        identity = IdentityKey.generate()
        coin = UnspentOutput(os.urandom(32), 0, 2_000, identity.p2wpkh_script, None)
        digest = os.urandom(32)
        tx = parse_tx(build_anchor_tx(identity, coin, digest, fee_script).raw)
        r, s = parse_der_signature(bytes(tx.vin[0].witness.items[0])[:-1])
        z = p2wpkh_sighash(tx, 0, identity.public_key, coin.value)
        nonce_point = ecdsa_nonce_point(r, s, z, identity.public_key)
        if nonce_point[0] == prefix:
            # nonce_key is ecdsa_owner_nonce with the identity's own key: k·G is exactly R.
            return AnchoredParty(identity.nonce_key(r, s, z), nonce_point, digest)


def _negated(point: bytes) -> bytes:
    return bytes([point[0] ^ 1]) + point[1:]


def _public(secret: coincurve.PrivateKey) -> bytes:
    return secret.public_key.format()


def _randoms() -> tuple[bytes, bytes]:
    return os.urandom(32), os.urandom(32)


@dataclass(frozen=True)
class YakSide:
    ephemeral: coincurve.PrivateKey
    proof: nizk.SchnorrProof
    user_id: bytes

    @property
    def ephemeral_point(self) -> bytes:
        return _public(self.ephemeral)


def _yak_side(party: AnchoredParty | None, info: bytes) -> YakSide:
    x = points.generate_scalar()
    uid = yak_btc.user_id(party.certificate_digest if party else None)
    return YakSide(x, nizk.prove(x, uid, info), uid)


# ---------------------------------------------------------------- both sides agree

@pytest.mark.parametrize("client_parity,server_parity", list(itertools.product(PARITIES, repeat=2)))
def test_ecdh_btc_full_both_sides_agree(client_parity, server_parity):
    client, server = _anchored_party(client_parity), _anchored_party(server_parity)
    client_view = ecdh_btc.premaster(client.k, server.nonce_point)
    assert client_view == ecdh_btc.premaster(server.k, client.nonce_point)
    assert len(client_view) == 32


@pytest.mark.parametrize("server_parity", PARITIES)
def test_ecdh_btc_server_only_both_sides_agree(server_parity):
    server = _anchored_party(server_parity)
    e = points.generate_scalar()
    assert ecdh_btc.premaster(e, server.nonce_point) == ecdh_btc.premaster(server.k, _public(e))


@pytest.mark.parametrize("client_parity,server_parity", list(itertools.product(PARITIES, repeat=2)))
def test_yak_btc_full_both_sides_agree_and_accept_each_others_proofs(client_parity, server_parity):
    client, server = _anchored_party(client_parity), _anchored_party(server_parity)
    info = yak_btc.other_info(*_randoms())
    client_side, server_side = _yak_side(client, info), _yak_side(server, info)
    # Each side checks the peer's proof against the UserID it derives from the peer's certificate.
    nizk.verify(server_side.ephemeral_point, server_side.proof, yak_btc.user_id(server.certificate_digest), info)
    nizk.verify(client_side.ephemeral_point, client_side.proof, yak_btc.user_id(client.certificate_digest), info)
    client_view = yak_btc.premaster(long_term=client.k, ephemeral=client_side.ephemeral,
                                    peer_nonce_point=server.nonce_point, peer_ephemeral=server_side.ephemeral_point)
    server_view = yak_btc.premaster(long_term=server.k, ephemeral=server_side.ephemeral,
                                    peer_nonce_point=client.nonce_point, peer_ephemeral=client_side.ephemeral_point)
    assert client_view == server_view
    assert len(client_view) == 32


@pytest.mark.parametrize("server_parity", PARITIES)
def test_yak_btc_server_only_anonymous_client_and_server_agree(server_parity):
    server = _anchored_party(server_parity)
    info = yak_btc.other_info(*_randoms())
    client_side, server_side = _yak_side(None, info), _yak_side(server, info)
    nizk.verify(client_side.ephemeral_point, client_side.proof, yak_btc.ANONYMOUS_USER_ID, info)
    client_view = yak_btc.premaster(long_term=None, ephemeral=client_side.ephemeral,
                                    peer_nonce_point=server.nonce_point, peer_ephemeral=server_side.ephemeral_point)
    server_view = yak_btc.premaster(long_term=server.k, ephemeral=server_side.ephemeral,
                                    peer_nonce_point=None, peer_ephemeral=client_side.ephemeral_point)
    assert client_view == server_view


# ---------------------------------------------------------------- the sign of R

@pytest.mark.parametrize("parity", PARITIES)
def test_ecdh_btc_does_not_depend_on_the_sign_of_the_nonce_point(parity):
    server = _anchored_party(parity)
    e = points.generate_scalar()
    assert ecdh_btc.premaster(e, server.nonce_point) == ecdh_btc.premaster(e, _negated(server.nonce_point))


@pytest.mark.parametrize("parity", PARITIES)
def test_yak_btc_needs_the_exact_nonce_point_not_its_negation(parity):
    # Why the verifier's exact R matters: with −R the client would compute a different K.
    client, server = _anchored_party("even"), _anchored_party(parity)
    x_c, x_s = points.generate_scalar(), points.generate_scalar()
    server_view = yak_btc.premaster(long_term=server.k, ephemeral=x_s, peer_nonce_point=client.nonce_point,
                                    peer_ephemeral=_public(x_c))
    exact = yak_btc.premaster(long_term=client.k, ephemeral=x_c, peer_nonce_point=server.nonce_point,
                              peer_ephemeral=_public(x_s))
    flipped = yak_btc.premaster(long_term=client.k, ephemeral=x_c, peer_nonce_point=_negated(server.nonce_point),
                                peer_ephemeral=_public(x_s))
    assert exact == server_view != flipped


def test_yak_btc_full_secret_differs_from_ecdh_btc_over_the_same_anchors():
    client, server = _anchored_party("odd"), _anchored_party("even")
    x_c, x_s = points.generate_scalar(), points.generate_scalar()
    yak = yak_btc.premaster(long_term=client.k, ephemeral=x_c, peer_nonce_point=server.nonce_point,
                            peer_ephemeral=_public(x_s))
    assert yak != ecdh_btc.premaster(client.k, server.nonce_point)


def test_yak_btc_secret_changes_with_the_ephemerals():
    client, server = _anchored_party("even"), _anchored_party("even")
    x_s = points.generate_scalar()
    views = {yak_btc.premaster(long_term=client.k, ephemeral=points.generate_scalar(),
                               peer_nonce_point=server.nonce_point, peer_ephemeral=_public(x_s)) for _ in range(3)}
    assert len(views) == 3


# ---------------------------------------------------------------- what YAK refuses

def test_yak_btc_refuses_unauthenticated_diffie_hellman():
    x = points.generate_scalar()
    with pytest.raises(ValueError):
        yak_btc.premaster(long_term=None, ephemeral=x, peer_nonce_point=None,
                          peer_ephemeral=_public(points.generate_scalar()))


def test_yak_btc_refuses_a_peer_ephemeral_that_cancels_the_peer_nonce_point():
    server = _anchored_party("odd")
    with pytest.raises(InvalidPoint):
        yak_btc.premaster(long_term=None, ephemeral=points.generate_scalar(), peer_nonce_point=server.nonce_point,
                          peer_ephemeral=_negated(server.nonce_point))


def test_user_id_is_the_certificate_digest_or_the_anonymous_label():
    digest = hashlib.sha256(b"certificate").digest()
    assert yak_btc.user_id(digest) == digest
    assert yak_btc.user_id(None) == yak_btc.ANONYMOUS_USER_ID
    with pytest.raises(ValueError):
        yak_btc.user_id(digest[:31])


def test_other_info_is_both_randoms_in_order_and_refuses_other_lengths():
    client_random, server_random = _randoms()
    assert yak_btc.other_info(client_random, server_random) == client_random + server_random
    with pytest.raises(ValueError):
        yak_btc.other_info(client_random[:31], server_random)
    with pytest.raises(ValueError):
        yak_btc.other_info(client_random, server_random + b"\x00")


# ---------------------------------------------------------------- the NIZK

def test_proof_bound_to_another_identity_does_not_verify():
    x = points.generate_scalar()
    info = yak_btc.other_info(*_randoms())
    proof = nizk.prove(x, yak_btc.user_id(os.urandom(32)), info)
    with pytest.raises(InvalidProof):
        nizk.verify(_public(x), proof, yak_btc.user_id(os.urandom(32)), info)
    with pytest.raises(InvalidProof):
        nizk.verify(_public(x), proof, yak_btc.ANONYMOUS_USER_ID, info)


def test_proof_from_another_session_does_not_verify():
    x = points.generate_scalar()
    uid = yak_btc.user_id(None)
    client_random, server_random = _randoms()
    proof = nizk.prove(x, uid, yak_btc.other_info(client_random, server_random))
    for info in (yak_btc.other_info(*_randoms()), yak_btc.other_info(server_random, client_random)):
        with pytest.raises(InvalidProof):
            nizk.verify(_public(x), proof, uid, info)


def test_proof_for_one_point_does_not_verify_for_another():
    x, other = points.generate_scalar(), points.generate_scalar()
    proof = nizk.prove(x, b"user", b"info")
    with pytest.raises(InvalidProof):
        nizk.verify(_public(other), proof, b"user", b"info")


def test_proof_accepts_bytearray_fields_as_tlslite_parses_them():
    x = points.generate_scalar()
    proof = nizk.prove(x, b"user", b"info")
    nizk.verify(bytearray(_public(x)), nizk.SchnorrProof(bytearray(proof.commitment), bytearray(proof.response)),
                bytearray(b"user"), bytearray(b"info"))


def test_prove_draws_a_fresh_nonce_each_time():
    x = points.generate_scalar()
    first, second = nizk.prove(x, b"u", b"o"), nizk.prove(x, b"u", b"o")
    assert first.commitment != second.commitment
    for proof in (first, second):
        nizk.verify(_public(x), proof, b"u", b"o")


def test_prove_with_a_given_nonce_is_deterministic():
    x, v = points.generate_scalar(), points.generate_scalar()
    assert nizk.prove(x, b"u", b"o", nonce=v) == nizk.prove(x, b"u", b"o", nonce=v)
    assert nizk.prove(x, b"u", b"o", nonce=v).commitment == _public(v)


def _zero_response_nonce(secret: coincurve.PrivateKey, c: int) -> coincurve.PrivateKey:
    # v = a·c makes r = v − a·c zero. Test keys only, so Python ints are fine here.
    return coincurve.PrivateKey((int.from_bytes(secret.secret, "big") * c % N).to_bytes(32, "big"))


def test_prove_refuses_a_given_nonce_whose_response_would_be_zero(monkeypatch):
    # A real challenge cannot be steered; fixing it stands in for a 2⁻²⁵⁶ event.
    monkeypatch.setattr(nizk, "challenge", lambda *args: 5)
    x = points.generate_scalar()
    with pytest.raises(ValueError):
        nizk.prove(x, b"u", b"o", nonce=_zero_response_nonce(x, 5))


def test_prove_draws_another_nonce_when_the_response_would_be_zero(monkeypatch):
    x = points.generate_scalar()
    bad = _zero_response_nonce(x, 5)
    drawn = iter([bad, points.generate_scalar()])
    monkeypatch.setattr(nizk, "generate_scalar", lambda: next(drawn))
    monkeypatch.setattr(nizk, "challenge", lambda *args: 5)
    proof = nizk.prove(x, b"u", b"o")
    assert proof.commitment != _public(bad)
    nizk.verify(_public(x), proof, b"u", b"o")


def test_proof_with_a_zero_challenge_is_r_equal_v_and_verifies(monkeypatch):
    monkeypatch.setattr(nizk, "challenge", lambda *args: 0)
    x, v = points.generate_scalar(), points.generate_scalar()
    proof = nizk.prove(x, b"u", b"o", nonce=v)
    assert proof.response == v.secret
    nizk.verify(_public(x), proof, b"u", b"o")


def test_verify_refuses_when_r_g_plus_c_a_is_infinity(monkeypatch):
    monkeypatch.setattr(nizk, "challenge", lambda *args: 7)
    a = points.generate_scalar()
    r = (-7 * int.from_bytes(a.secret, "big")) % N   # r·G = −c·A
    proof = nizk.SchnorrProof(_public(points.generate_scalar()), r.to_bytes(32, "big"))
    with pytest.raises(InvalidProof):
        nizk.verify(_public(a), proof, b"u", b"o")


def test_transcript_length_prefixes_keep_user_id_and_other_info_apart():
    a, v = _public(points.generate_scalar()), _public(points.generate_scalar())
    assert nizk.transcript(a, v, b"ab", b"c") != nizk.transcript(a, v, b"a", b"bc")
    assert nizk.transcript(a, v, b"u", b"o") == b"".join(
        len(item).to_bytes(4, "big") + item for item in (points.G, v, a, b"u", b"o"))


def test_challenge_is_sha256_of_the_transcript_mod_n():
    a, v = _public(points.generate_scalar()), _public(points.generate_scalar())
    digest = hashlib.sha256(nizk.transcript(a, v, b"u", b"o")).digest()
    assert nizk.challenge(a, v, b"u", b"o") == int.from_bytes(digest, "big") % N


# ---------------------------------------------------------------- points and scalars

def test_parse_point_accepts_both_compressed_prefixes():
    for parity in (0x02, 0x03):
        while (point := _public(points.generate_scalar()))[0] != parity:
            pass
        assert points.parse_point(point).format() == point
        assert points.parse_point(bytearray(point)).format() == point


def test_parse_point_refuses_what_is_not_bytes():
    with pytest.raises(TypeError):
        points.parse_point(33)
    with pytest.raises(TypeError):
        points.parse_scalar("00" * 32)


def test_generator_constant_is_the_secp256k1_generator():
    assert points.G == coincurve.PrivateKey((1).to_bytes(32, "big")).public_key.format()


@pytest.mark.parametrize("value", [b"\x00" * 32, N.to_bytes(32, "big"), b"\xff" * 32, b"\x01" * 31, b"\x01" * 33],
                         ids=["zero", "n", "max", "31-bytes", "33-bytes"])
def test_parse_scalar_refuses_zero_out_of_range_and_wrong_length(value):
    with pytest.raises(InvalidScalar):
        points.parse_scalar(value)


def test_parse_scalar_accepts_one_and_n_minus_one():
    assert points.parse_scalar((1).to_bytes(32, "big")) == 1
    assert points.parse_scalar((N - 1).to_bytes(32, "big")) == N - 1


def test_add_points_refuses_a_point_and_its_negation():
    point = _public(points.generate_scalar())
    with pytest.raises(InvalidPoint):
        points.add_points(points.parse_point(point), points.parse_point(_negated(point)))


def test_shared_x_is_the_x_of_the_product():
    a, b = points.generate_scalar(), points.generate_scalar()
    shared = points.shared_x(a, b.public_key)
    assert shared == points.shared_x(b, a.public_key) == b.public_key.multiply(a.secret).format()[1:]
    assert len(shared) == points.SCALAR_SIZE


def test_generate_scalar_is_fresh_each_time():
    assert len({points.generate_scalar().secret for _ in range(8)}) == 8


def test_key_agreement_errors_are_milagro_errors():
    for cls in (InvalidPoint, InvalidScalar, InvalidProof):
        assert issubclass(cls, KeyAgreementError) and issubclass(cls, MilagroError)


# ---------------------------------------------------------------- every invalid vector

def _valid_proof() -> tuple[bytes, nizk.SchnorrProof]:
    x = points.generate_scalar()
    return _public(x), nizk.prove(x, b"u", b"o")


@pytest.mark.parametrize("case", invalid_cases("key_agreement.json"))
def test_invalid_vector_raises_its_exception(case):
    expected = getattr(errors, case["error"])
    hexed = bytes.fromhex
    if case["kind"] == "point":
        point = hexed(case["point"])
        own = points.generate_scalar()
        public, proof = _valid_proof()
        refusals = [
            lambda: points.parse_point(point),
            lambda: ecdh_btc.premaster(own, point),
            lambda: yak_btc.premaster(long_term=own, ephemeral=own, peer_nonce_point=None, peer_ephemeral=point),
            lambda: yak_btc.premaster(long_term=None, ephemeral=own, peer_nonce_point=point, peer_ephemeral=public),
            lambda: nizk.verify(point, proof, b"u", b"o"),
            lambda: nizk.verify(public, nizk.SchnorrProof(point, proof.response), b"u", b"o"),
        ]
        for refusal in refusals:
            with pytest.raises(expected):
                refusal()
    elif case["kind"] == "proof":
        proof = nizk.SchnorrProof(hexed(case["commitment"]), hexed(case["response"]))
        with pytest.raises(expected):
            nizk.verify(hexed(case["public_point"]), proof, hexed(case["user_id"]), hexed(case["other_info"]))
    else:
        assert case["kind"] == "yak_premaster"
        long_term = coincurve.PrivateKey(hexed(case["long_term"])) if case["long_term"] else None
        with pytest.raises(expected):
            yak_btc.premaster(long_term=long_term, ephemeral=coincurve.PrivateKey(hexed(case["ephemeral"])),
                              peer_nonce_point=hexed(case["peer_nonce_point"]),
                              peer_ephemeral=hexed(case["peer_ephemeral"]))
