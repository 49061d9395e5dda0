"""Schnorr non-interactive zero-knowledge proof of a discrete logarithm (RFC 8235 §3.3, on secp256k1).

The prover knows a with A = a·G:

    V = v·G                 v a fresh random nonce
    c = H(G ‖ V ‖ A ‖ UserID ‖ OtherInfo) mod n      (transcript() below)
    r = v − a·c mod n
    proof = (V, r); the verifier checks V = r·G + c·A

UserID binds the prover's identity (its certificate digest, or a fixed label for an
anonymous client) and OtherInfo the session (both TLS randoms, yak_btc.other_info), so a
proof can be replayed neither as another party's nor into another session (RFC 8235 §2.3,
which §3.3 follows for elliptic curves).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import coincurve

from .errors import InvalidProof
from .nonce import N
from .points import G, generate_scalar, parse_point, parse_scalar, tweak_scalar

#: Largest item the 4-byte length prefix can describe.
_MAX_ITEM = 2**32 - 1


@dataclass(frozen=True, slots=True)
class SchnorrProof:
    commitment: bytes  # V, 33-byte compressed
    response: bytes    # r, 32 bytes big-endian


def transcript(public_point: bytes, commitment: bytes, user_id: bytes, other_info: bytes) -> bytes:
    """The bytes hashed for the challenge; the one definition of the encoding.

    For each of G, V, A, UserID, OtherInfo in that order (RFC 8235 §3.3): a 4-byte
    big-endian length, then the item (the prefix RFC 8235 §2.3 recommends, so that no two
    different item lists hash the same bytes). Points are 33-byte compressed.
    """
    out = bytearray()
    for item in (G, commitment, public_point, user_id, other_info):
        if len(item) > _MAX_ITEM:
            raise ValueError("a transcript item does not fit its 4-byte length")
        out += len(item).to_bytes(4, "big") + item
    return bytes(out)


def challenge(public_point: bytes, commitment: bytes, user_id: bytes, other_info: bytes) -> int:
    """c = int(SHA-256(transcript)) mod n."""
    digest = hashlib.sha256(transcript(public_point, commitment, user_id, other_info)).digest()
    return int.from_bytes(digest, "big") % N


def prove(secret: coincurve.PrivateKey, user_id: bytes, other_info: bytes, *,
          nonce: coincurve.PrivateKey | None = None) -> SchnorrProof:
    """A proof of knowledge of ``secret`` bound to ``user_id`` and ``other_info``.

    ``nonce`` is v; leave it out (a fresh one is drawn) except for known-answer tests:
    a v used twice with different challenges reveals ``secret``.

    r = v − a·c is computed inside libsecp256k1 as a·(n − c) + v. A response of zero
    would be refused by every verifier (parse_scalar), so a fresh v is drawn; with a
    caller's nonce that is impossible and ValueError is raised.
    """
    public_point = secret.public_key.format(compressed=True)
    while True:
        v = nonce if nonce is not None else generate_scalar()
        commitment = v.public_key.format(compressed=True)
        c = challenge(public_point, commitment, user_id, other_info)
        if c == 0:
            # r = v; (n − 0) is not a valid tweak, and the proof is still sound.
            return SchnorrProof(commitment, v.secret)
        try:
            response = tweak_scalar(tweak_scalar(secret.secret, (N - c).to_bytes(32, "big"), multiply=True),
                                    v.secret, multiply=False)
        except ValueError:  # a·(n − c) + v = 0 mod n: no valid response for this v
            if nonce is not None:
                raise ValueError("this nonce gives a zero response; use another") from None
            continue
        return SchnorrProof(commitment, response)


def verify(public_point: bytes, proof: SchnorrProof, user_id: bytes, other_info: bytes) -> None:
    """Check that the prover of ``proof`` knows the discrete log of ``public_point``.

    :returns: None
    :raises InvalidPoint: A or V is not a compressed point on the curve (RFC 8235 §3.2
        checks A first; with cofactor 1 a valid point is never of small order).
    :raises InvalidScalar: r is not 32 bytes in [1, n).
    :raises InvalidProof: V ≠ r·G + c·A, or r·G + c·A is infinity.
    """
    a_point = parse_point(public_point)
    v_point = parse_point(proof.commitment)
    r = parse_scalar(proof.response)
    c = challenge(bytes(public_point), bytes(proof.commitment), bytes(user_id), bytes(other_info))
    # r and c are public, so plain tweaks on public points are fine here.
    terms = [coincurve.PublicKey.from_secret(r.to_bytes(32, "big"))]
    if c:
        terms.append(a_point.multiply(c.to_bytes(32, "big")))
    try:
        expected = coincurve.PublicKey.combine_keys(terms) if len(terms) > 1 else terms[0]
    except ValueError:
        raise InvalidProof("r·G + c·A is infinity") from None
    if expected.format(compressed=True) != v_point.format(compressed=True):
        raise InvalidProof("V ≠ r·G + c·A")
