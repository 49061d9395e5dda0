"""secp256k1 points and scalars as they cross the wire, and the few operations the suites need.

Every point on the wire is a 33-byte compressed SEC1 encoding, as Bitcoin writes keys
(RFC 8422 §5.4.1 sends the NIST curves' points uncompressed instead). Accepting one
encoding only gives each point exactly one byte string, which the NIZK transcript hashes. Secret scalars stay coincurve.PrivateKey
objects: all arithmetic on them runs inside libsecp256k1, never on Python ints.
"""
from __future__ import annotations

import coincurve
import coincurve.context
from coincurve._libsecp256k1 import ffi as _ffi, lib as _lib

from .errors import InvalidPoint, InvalidScalar
from .nonce import N

#: Size of a compressed SEC1 point: prefix 0x02/0x03 and the 32-byte x.
POINT_SIZE = 33
#: Size of a big-endian scalar modulo n.
SCALAR_SIZE = 32
#: The secp256k1 field prime (SEC 2 §2.4.1).
P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
#: The generator G, compressed (SEC 2 §2.4.1).
G = bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798")


def _as_bytes(data: object, what: str) -> bytes:
    # tlslite's Parser hands out bytearrays; coincurve would take anything that is not
    # `bytes` for a raw C struct, so normalise here once.
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(data).__name__}")
    return bytes(data)


def parse_point(data: bytes) -> coincurve.PublicKey:
    """A peer's point: exactly 33 bytes, prefix 0x02 or 0x03, x < p, on the curve.

    :raises InvalidPoint: for anything else, including the one-byte infinity b"\\x00"
        and 65-byte uncompressed or hybrid encodings.
    """
    data = _as_bytes(data, "a point")
    if len(data) != POINT_SIZE or data[0] not in (0x02, 0x03):
        raise InvalidPoint(f"not a {POINT_SIZE}-byte compressed point ({len(data)} bytes)")
    # libsecp256k1 v0.6 refuses x >= p itself; checked here too so that the rule does not
    # depend on the library version (an x reduced mod p would give a second encoding).
    if int.from_bytes(data[1:], "big") >= P:
        raise InvalidPoint("x is not below the field prime")
    try:
        return coincurve.PublicKey(data)
    except ValueError:
        raise InvalidPoint("x is not the x-coordinate of a curve point") from None


def parse_scalar(data: bytes) -> int:
    """A public scalar from the wire (such as a NIZK response): 32 bytes, 0 < value < n.

    :raises InvalidScalar: otherwise.
    """
    data = _as_bytes(data, "a scalar")
    if len(data) != SCALAR_SIZE:
        raise InvalidScalar(f"a scalar is {SCALAR_SIZE} bytes, not {len(data)}")
    value = int.from_bytes(data, "big")
    if not 0 < value < N:
        raise InvalidScalar("scalar is zero or not below n")
    return value


def shared_x(secret: coincurve.PrivateKey, point: coincurve.PublicKey) -> bytes:
    """x(secret·point) as 32 big-endian bytes (the RFC 8422 §5.10 premaster encoding).

    The product is never infinity: secret is in [1, n) and the group has prime order.
    """
    return point.multiply(secret.secret).format(compressed=True)[1:]


def tweak_scalar(secret: bytes, tweak: bytes, *, multiply: bool) -> bytes:
    """secret·tweak or secret + tweak mod n, inside libsecp256k1 (constant time), as 32 bytes.

    coincurve's PrivateKey.multiply/add return a new PrivateKey, which derives its public
    key at once: one base-point multiplication (~35 us) that an intermediate scalar never
    needs. :raises ValueError: the result is zero (or the tweak out of range)."""
    buffer = _ffi.new("unsigned char [32]", secret)
    tweak_function = _lib.secp256k1_ec_seckey_tweak_mul if multiply else _lib.secp256k1_ec_seckey_tweak_add
    if not tweak_function(coincurve.context.GLOBAL_CONTEXT.ctx, buffer, tweak):
        raise ValueError("the tweak was out of range, or the result is zero")
    return bytes(_ffi.buffer(buffer, 32))


def add_points(a: coincurve.PublicKey, b: coincurve.PublicKey) -> coincurve.PublicKey:
    """a + b. :raises InvalidPoint: when b = −a (a peer can choose its point that way)."""
    try:
        return coincurve.PublicKey.combine_keys([a, b])
    except ValueError:
        raise InvalidPoint("the sum of the points is infinity") from None


def generate_scalar() -> coincurve.PrivateKey:
    """A fresh secret scalar in [1, n).

    coincurve draws os.urandom(32) and rejects values outside [1, n) (rejection sampling,
    so no modular bias).
    """
    return coincurve.PrivateKey()
