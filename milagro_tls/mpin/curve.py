"""BLS12-381 for M-Pin: a thin layer over py-arkworks-bls12381 (Rust, arkworks).

What this layer adds to the library, and why:

* **Decoding refuses what the protocol must never accept.** Points arrive from the wire and from
  D-TAs; a point outside the prime-order subgroup enables small-subgroup attacks, and the
  identity element makes a pairing equation hold for anything (e(O, Q) = 1). ``decode_g1`` and
  ``decode_g2`` take compressed encodings only, check the subgroup (the library's checked
  decoder, then ``is_in_subgroup`` again so the guarantee does not rest on one call) and refuse
  the identity, raising ``MalformedPoint``.
* **Products with a secret are split.** The library's scalar multiplication is *not* constant
  time: its running time follows the scalar's bits (measured: 0.5 µs for s = 1, ~340 µs for a
  random scalar, ~380 µs for q − 1). A D-TA that multiplies by its master secret on request
  leaks it through timing. ``secret_mul(s, P)`` draws a fresh uniform a and returns
  a·P + (s − a)·P: each multiplication sees a scalar that is uniformly random on its own, so the
  timing of one issuance follows fresh randomness instead of s. Use it for every long-term or
  session secret (master secrets, PINs, the client's x).
* **Random scalars are uniform.** 64 random bytes reduced modulo the order (bias < 2⁻¹²⁸), as
  RFC 9380 hash_to_field does, not 32 bytes (the order is ~0.45·2²⁵⁶, so 32 bytes mod q would
  make a third of the values half again as likely).
* ``hash_to_g1`` is the library's RFC 9380 suite BLS12381G1_XMD:SHA-256_SSWU_RO_, checked
  against the RFC's appendix J.9.1 vectors in tests/mpin/test_curve.py.
"""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from .errors import MalformedPoint, MalformedScalar

__all__ = [
    "GT", "G1Point", "G2Point", "Scalar", "ORDER", "G1_BYTES", "G2_BYTES", "SCALAR_BYTES",
    "g1_generator", "g2_generator", "encode_g1", "decode_g1", "encode_g2", "decode_g2",
    "random_scalar", "scalar_from_int", "encode_scalar", "decode_scalar", "secret_mul",
    "hash_to_g1", "sum_points",
]

#: The prime order q of G1, G2 and GT.
ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
G1_BYTES = 48
G2_BYTES = 96
SCALAR_BYTES = 32

_Point = TypeVar("_Point", G1Point, G2Point)


def g1_generator() -> G1Point:
    """P, the standard G1 generator."""
    return G1Point()


def g2_generator() -> G2Point:
    """Q, the standard G2 generator."""
    return G2Point()


def _encode(point, kind: type, size: int) -> bytes:
    if not isinstance(point, kind):
        raise TypeError(f"expected a {kind.__name__}, got {type(point).__name__}")
    if point == kind.identity():
        raise MalformedPoint(f"refusing to encode the {kind.__name__} identity")
    data = point.to_compressed_bytes()
    assert len(data) == size
    return data


def _decode(data, kind: type, size: int, label: str):
    if isinstance(data, str):
        try:
            data = bytes.fromhex(data)
        except ValueError:
            raise MalformedPoint(f"{label} point is not hex") from None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedPoint(f"{label} point must be bytes or hex, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != size:
        raise MalformedPoint(f"{label} point must be {size} bytes compressed, got {len(data)}")
    try:
        point = kind.from_compressed_bytes(data)
    except (ValueError, TypeError):
        raise MalformedPoint(f"{label} point is not a compressed point of the prime-order subgroup") from None
    if not point.is_in_subgroup():
        raise MalformedPoint(f"{label} point is not in the prime-order subgroup")
    if point == kind.identity():
        raise MalformedPoint(f"{label} point is the identity")
    return point


def encode_g1(point: G1Point) -> bytes:
    """48-byte compressed encoding (ZCash/IETF form); the identity is refused."""
    return _encode(point, G1Point, G1_BYTES)


def decode_g1(data: bytes | str) -> G1Point:
    """A G1 point from its 48-byte compressed encoding (bytes or hex): on the curve, in the
    subgroup, not the identity; else ``MalformedPoint``."""
    return _decode(data, G1Point, G1_BYTES, "G1")


def encode_g2(point: G2Point) -> bytes:
    """96-byte compressed encoding; the identity is refused."""
    return _encode(point, G2Point, G2_BYTES)


def decode_g2(data: bytes | str) -> G2Point:
    """A G2 point from its 96-byte compressed encoding (bytes or hex), checked as decode_g1."""
    return _decode(data, G2Point, G2_BYTES, "G2")


def random_scalar() -> Scalar:
    """A uniform non-zero scalar (64 bytes from os.urandom reduced mod q)."""
    while True:
        scalar = Scalar.from_be_bytes_mod_order(os.urandom(64))
        if not scalar.is_zero():
            return scalar


def scalar_from_int(value: int) -> Scalar:
    """A scalar from an integer 0 <= value < q (public values: y, dates; PINs via protocol)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < ORDER:
        raise MalformedScalar("a scalar is an integer in [0, q)")
    return Scalar(value)


def encode_scalar(scalar: Scalar) -> bytes:
    """32 bytes big-endian."""
    return scalar.to_be_bytes()


def decode_scalar(data: bytes | str, *, nonzero: bool = True) -> Scalar:
    """A scalar from exactly 32 big-endian bytes (or hex) below q; refuses zero unless told."""
    if isinstance(data, str):
        try:
            data = bytes.fromhex(data)
        except ValueError:
            raise MalformedScalar("scalar is not hex") from None
    if not isinstance(data, (bytes, bytearray)) or len(data) != SCALAR_BYTES:
        raise MalformedScalar(f"a scalar is {SCALAR_BYTES} bytes")
    try:
        scalar = Scalar.from_be_bytes(bytes(data))
    except ValueError:
        raise MalformedScalar("scalar is not below the group order") from None
    if nonzero and scalar.is_zero():
        raise MalformedScalar("scalar is zero")
    return scalar


def secret_mul(secret: Scalar, point: _Point) -> _Point:
    """secret·point computed as a·point + (secret − a)·point with a fresh uniform a.

    The library's multiplication runs in time that depends on the scalar (see the module
    docstring); both a and secret − a are uniform on their own, so neither multiplication's
    timing follows the secret. Scalar subtraction is modular field arithmetic in the library.
    """
    if not isinstance(secret, Scalar):
        raise TypeError("secret_mul takes a Scalar")
    mask = random_scalar()
    return point * mask + point * (secret - mask)


def hash_to_g1(msg: bytes, dst: bytes) -> G1Point:
    """RFC 9380 hash_to_curve with suite BLS12381G1_XMD:SHA-256_SSWU_RO_ (in the subgroup)."""
    if not isinstance(msg, (bytes, bytearray)) or not isinstance(dst, (bytes, bytearray)):
        raise TypeError("hash_to_g1 takes bytes")
    if not 0 < len(dst) <= 255:
        raise ValueError("RFC 9380 domain separation tags are 1 to 255 bytes")
    return G1Point.hash_to_curve(bytes(msg), bytes(dst))


def sum_points(points: Iterable[_Point], kind: type[_Point]) -> _Point:
    """The sum of points of one group (the identity for none)."""
    total = kind.identity()
    for point in points:
        if not isinstance(point, kind):
            raise TypeError(f"expected {kind.__name__} points, got {type(point).__name__}")
        total = total + point
    return total
