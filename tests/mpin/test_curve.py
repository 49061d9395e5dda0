"""milagro_tls.mpin.curve: RFC 9380 vectors, checked point decoding, scalars, secret_mul."""
import json
from pathlib import Path

import pytest
from py_arkworks_bls12381 import G1Point, G2Point, Scalar

from milagro_tls.errors import MilagroError
from milagro_tls.mpin import curve
from milagro_tls.mpin.errors import MalformedPoint, MalformedScalar, MpinError

VECTORS = Path(__file__).parent.parent / "vectors" / "rfc9380_bls12381g1_xmd_sha256_sswu_ro.json"


def _rfc_vectors():
    doc = json.loads(VECTORS.read_text())
    assert doc["suite"] == "BLS12381G1_XMD:SHA-256_SSWU_RO_"
    assert "RFC 9380" in doc["source"] and "J.9.1" in doc["source"]
    return doc["dst"].encode(), doc["vectors"]


def test_rfc9380_vectors_cover_the_appendix():
    dst, vectors = _rfc_vectors()
    assert dst == b"QUUX-V01-CS02-with-BLS12381G1_XMD:SHA-256_SSWU_RO_"
    assert [len(v["msg"]) for v in vectors] == [0, 3, 16, 133, 517]


@pytest.mark.parametrize("index", range(5))
def test_hash_to_g1_matches_rfc9380_j91(index):
    dst, vectors = _rfc_vectors()
    vector = vectors[index]
    point = curve.hash_to_g1(vector["msg"].encode(), dst)
    assert point.to_xy_bytes_be().hex() == vector["P.x"] + vector["P.y"]
    # The compressed form carries the same x (flags in the top three bits).
    compressed = curve.encode_g1(point)
    assert compressed[0] & 0x80
    assert bytes([compressed[0] & 0x1F]) + compressed[1:] == bytes.fromhex(vector["P.x"])


def test_hash_to_g1_depends_on_the_tag():
    dst, vectors = _rfc_vectors()
    msg = vectors[1]["msg"].encode()
    assert curve.hash_to_g1(msg, dst) != curve.hash_to_g1(msg, dst + b"X")
    with pytest.raises(ValueError):
        curve.hash_to_g1(msg, b"")


def test_round_trip_g1_g2():
    p = curve.hash_to_g1(b"x", b"TEST-DST")
    assert curve.decode_g1(curve.encode_g1(p)) == p
    assert curve.decode_g1(curve.encode_g1(p).hex()) == p
    q = curve.g2_generator() * curve.random_scalar()
    assert len(curve.encode_g2(q)) == 96
    assert curve.decode_g2(curve.encode_g2(q)) == q


def _off_subgroup(kind, size):
    """A compressed x on the curve whose point lies outside the prime-order subgroup."""
    for x in range(1, 100):
        data = bytearray(size)
        data[-1] = x
        data[0] |= 0x80
        try:
            point = kind.from_compressed_bytes_unchecked(bytes(data))
        except ValueError:
            continue
        if not point.is_in_subgroup():
            return bytes(data)
    raise AssertionError("no off-subgroup point found")


def test_decode_refuses_identity_and_non_subgroup_points():
    identity_g1 = G1Point.identity().to_compressed_bytes()
    identity_g2 = G2Point.identity().to_compressed_bytes()
    with pytest.raises(MalformedPoint, match="identity"):
        curve.decode_g1(identity_g1)
    with pytest.raises(MalformedPoint, match="identity"):
        curve.decode_g2(identity_g2)
    with pytest.raises(MalformedPoint, match="subgroup"):
        curve.decode_g1(_off_subgroup(G1Point, 48))
    with pytest.raises(MalformedPoint, match="subgroup"):
        curve.decode_g2(_off_subgroup(G2Point, 96))
    with pytest.raises(MalformedPoint):
        curve.encode_g1(G1Point.identity())


@pytest.mark.parametrize("data", [b"", b"\x80" * 47, b"\x80" * 49, "zz" * 48, b"\x00" * 48,
                                  b"\xff" * 48, 42])
def test_decode_refuses_garbage(data):
    with pytest.raises(MalformedPoint) as info:
        curve.decode_g1(data)
    assert isinstance(info.value, MpinError) and isinstance(info.value, MilagroError)


def test_decode_refuses_g2_bytes_as_g1():
    q = curve.encode_g2(curve.g2_generator())
    with pytest.raises(MalformedPoint):
        curve.decode_g1(q[:48])
    with pytest.raises(MalformedPoint):
        curve.decode_g2(curve.encode_g1(curve.g1_generator()) * 2)


def test_random_scalars_are_distinct_and_nonzero():
    scalars = {curve.encode_scalar(curve.random_scalar()) for _ in range(64)}
    assert len(scalars) == 64
    assert all(int.from_bytes(s, "big") < curve.ORDER and any(s) for s in scalars)


def test_order_is_the_library_order():
    assert int(-Scalar(1)) == curve.ORDER - 1


def test_scalar_decoding_is_strict():
    assert int(curve.decode_scalar((5).to_bytes(32, "big"))) == 5
    with pytest.raises(MalformedScalar):
        curve.decode_scalar(curve.ORDER.to_bytes(32, "big"))
    with pytest.raises(MalformedScalar):
        curve.decode_scalar(bytes(32))
    assert curve.decode_scalar(bytes(32), nonzero=False).is_zero()
    with pytest.raises(MalformedScalar):
        curve.decode_scalar(bytes(31))
    with pytest.raises(MalformedScalar):
        curve.scalar_from_int(curve.ORDER)
    with pytest.raises(MalformedScalar):
        curve.scalar_from_int(True)


@pytest.mark.parametrize("value", [1, 2, 1234, curve.ORDER - 1, (1 << 254) - 1])
def test_secret_mul_equals_plain_multiplication(value):
    s = Scalar(value)
    p = curve.hash_to_g1(b"point", b"TEST-DST")
    assert curve.secret_mul(s, p) == p * s
    assert curve.secret_mul(s, curve.g2_generator()) == curve.g2_generator() * s


def test_secret_mul_splits_with_fresh_randomness(monkeypatch):
    """Both multiplications see masked scalars: never the secret itself."""
    seen = []

    class Spy:
        def __init__(self, point):
            self.point = point

        def __mul__(self, scalar):
            seen.append(int(scalar))
            return Spy(self.point * scalar)

        def __add__(self, other):
            return Spy(self.point + other.point)

    secret = Scalar(7)
    p = curve.g1_generator()
    out1 = curve.secret_mul(secret, Spy(p))
    out2 = curve.secret_mul(secret, Spy(p))
    assert out1.point == out2.point == p * secret
    assert 7 not in seen and len(set(seen)) == 4
    assert (seen[0] + seen[1]) % curve.ORDER == 7 and (seen[2] + seen[3]) % curve.ORDER == 7
