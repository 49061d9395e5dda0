"""The long-term key-agreement key of an anchored party: its signature's nonce.

Verifier side (public data only):
    ECDSA   R = s⁻¹·z·G + s⁻¹·r·Q      exact: the point ECDSA verification computes
    BIP340  R = lift_x(sig[0:32])       even y by definition
Owner side (secret arithmetic only inside libsecp256k1, through coincurve tweaks):
    ECDSA   k = s⁻¹·(z + r·d) mod n     with the s that is on chain (after any low-S
                                         negation), so k·G is exactly the verifier's R
    BIP340  k = s − e·d′ mod n          d′ = d or −d so that d′·G has even y

k is as secret as d (d = (s·k − z)/r), so it is returned only as a coincurve key
and never as an int. Why no sign rule is needed: ../shared/reference/ake-over-bitcoin.md.
"""
from __future__ import annotations

import coincurve

from ..chain.hashes import tagged_hash

#: Order of the secp256k1 group.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = N // 2


class InvalidNonceInput(ValueError):
    """A signature or key that cannot yield a nonce point."""


def _scalar32(value: int) -> bytes:
    return (value % N).to_bytes(32, "big")


def parse_der_signature(der: bytes) -> tuple[int, int]:
    """Strict DER (BIP66's IsValidSignatureEncoding, without the sighash byte) to (r, s)."""
    if not 8 <= len(der) <= 72 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise InvalidNonceInput("not a DER signature")
    values = []
    pos = 2
    for _ in range(2):
        if pos + 2 > len(der) or der[pos] != 0x02:
            raise InvalidNonceInput("DER integer expected")
        length = der[pos + 1]
        body = der[pos + 2: pos + 2 + length]
        if length == 0 or len(body) != length:
            raise InvalidNonceInput("DER integer truncated")
        if body[0] & 0x80:
            raise InvalidNonceInput("negative DER integer")
        if length > 1 and body[0] == 0 and not body[1] & 0x80:
            raise InvalidNonceInput("non-minimal DER integer")
        values.append(int.from_bytes(body, "big"))
        pos += 2 + length
    if pos != len(der):
        raise InvalidNonceInput("trailing bytes in DER signature")
    r, s = values
    if not (0 < r < N and 0 < s < N):
        raise InvalidNonceInput("r or s out of range")
    return r, s


def ecdsa_nonce_point(r: int, s: int, z: bytes, pubkey: bytes) -> bytes:
    """The exact nonce point R (33-byte compressed) of a valid ECDSA signature.

    Raises InvalidNonceInput when the signature does not verify: computing R *is*
    the verification (x(R) mod n must equal r), for low-S and high-S alike.
    """
    if not (0 < r < N and 0 < s < N) or len(z) != 32:
        raise InvalidNonceInput("r, s or z out of range")
    try:
        q = coincurve.PublicKey(pubkey)
    except Exception:
        raise InvalidNonceInput("public key is not a valid point") from None
    s_inv = pow(s, -1, N)
    u1 = int.from_bytes(z, "big") * s_inv % N
    u2 = r * s_inv % N
    terms = [q.multiply(_scalar32(u2))]
    if u1:
        terms.append(coincurve.PublicKey.from_secret(_scalar32(u1)))
    try:
        point = coincurve.PublicKey.combine_keys(terms) if len(terms) > 1 else terms[0]
    except Exception:  # the sum is the point at infinity
        raise InvalidNonceInput("nonce point at infinity") from None
    x, _ = point.point()
    if x % N != r:
        raise InvalidNonceInput("signature does not verify")
    return point.format(compressed=True)


def ecdsa_owner_nonce(private_key: coincurve.PrivateKey, r: int, s: int, z: bytes) -> coincurve.PrivateKey:
    """k = s⁻¹·(z + r·d): the owner's nonce matching ecdsa_nonce_point exactly."""
    if not (0 < r < N and 0 < s < N) or len(z) != 32:
        raise InvalidNonceInput("r, s or z out of range")
    s_inv = pow(s, -1, N)  # s is public: its inverse may be computed in Python
    return private_key.multiply(_scalar32(r)).add(_scalar32(int.from_bytes(z, "big"))).multiply(_scalar32(s_inv))


def schnorr_nonce_point(signature: bytes) -> bytes:
    """R = lift_x(sig[0:32]) with even y, as a 33-byte compressed point."""
    if len(signature) != 64:
        raise InvalidNonceInput("a BIP340 signature is 64 bytes")
    try:
        return coincurve.PublicKey(b"\x02" + signature[:32]).format(compressed=True)
    except Exception:
        raise InvalidNonceInput("sig[0:32] is not the x of a curve point") from None


def schnorr_owner_nonce(private_key: coincurve.PrivateKey, signature: bytes, message: bytes) -> coincurve.PrivateKey:
    """k = s − e·d′ (BIP340), without negating d in Python.

    With P = d·G: if P has even y, d′ = d and k = s + (n − e)·d; otherwise d′ = −d and k = s + e·d.
    e and s are public; d and k exist only inside libsecp256k1 (coincurve's seckey tweaks).

    :raises InvalidNonceInput: the signature is not this key's over ``message`` (then k·G would
        not be lift_x(sig[0:32]), and a handshake with that k would fail far from the cause).
    """
    if len(signature) != 64 or len(message) != 32:
        raise InvalidNonceInput("signature is 64 bytes and message 32")
    s = int.from_bytes(signature[32:], "big")
    if s >= N:
        raise InvalidNonceInput("s out of range")
    public = private_key.public_key.format(compressed=True)
    e = int.from_bytes(tagged_hash("BIP0340/challenge", signature[:32] + public[1:] + message), "big") % N
    factor = N - e if public[0] == 0x02 else e
    try:
        nonce = private_key.multiply(_scalar32(factor))
        if s:
            nonce = nonce.add(_scalar32(s))
    except ValueError:          # e = 0 or k = 0: not a valid signature of this key
        raise InvalidNonceInput("signature yields no nonce for this key") from None
    if nonce.public_key.format(compressed=True) != schnorr_nonce_point(signature):
        raise InvalidNonceInput("signature is not this key's BIP340 signature over the message")
    return nonce
