"""YAK-BTC: YAK (Hao 2010) over the anchors' nonce keys, with RFC 8235 proofs of the ephemerals.

Each side draws an ephemeral x, sends X = x·G with a Schnorr NIZK of x (nizk.py) bound to
its UserID and to both TLS randoms, and combines its long-term k with x:

    full mode          K = (k_C + x_C)·(R_S + X_S) = (k_S + x_S)·(R_C + X_C)
    server-only mode   anonymous client  K = x_C·(R_S + X_S)
                       server            K = (k_S + x_S)·X_C
    premaster = x(K), 32 big-endian bytes

Unlike x-only ECDH, YAK depends on the sign of R: k·G must be exactly the R the peer
uses. It is, with no sign rule: the verifier computes the exact R of the anchor signature
(nonce.ecdsa_nonce_point; BIP340 R has even y by definition) and the owner uses the k of
that same published signature (nonce.ecdsa_owner_nonce, schnorr_owner_nonce), whatever
the signer's low-S negation did (../shared/reference/ake-over-bitcoin.md, "The exact
R and the owner's k").
"""
from __future__ import annotations

import coincurve

from .points import add_points, parse_point, shared_x, tweak_scalar

#: UserID of a client without an anchor (server-only mode). Its proof binds no identity,
#: only the session through OtherInfo.
ANONYMOUS_USER_ID = b"milagro-tls anonymous client"

#: Size of a certificate digest (SHA-256) and of each TLS random (RFC 5246 §7.4.1.2).
_DIGEST_SIZE = 32
_RANDOM_SIZE = 32


def user_id(certificate_digest: bytes | None) -> bytes:
    """The NIZK UserID: the prover's 32-byte certificate SHA-256, or ANONYMOUS_USER_ID."""
    if certificate_digest is None:
        return ANONYMOUS_USER_ID
    if len(certificate_digest) != _DIGEST_SIZE:
        raise ValueError(f"a certificate digest is {_DIGEST_SIZE} bytes")
    return bytes(certificate_digest)


def other_info(client_random: bytes, server_random: bytes) -> bytes:
    """The NIZK OtherInfo: client_random ‖ server_random, binding a proof to one session."""
    if len(client_random) != _RANDOM_SIZE or len(server_random) != _RANDOM_SIZE:
        raise ValueError(f"TLS randoms are {_RANDOM_SIZE} bytes each")
    return bytes(client_random) + bytes(server_random)


def premaster(*, long_term: coincurve.PrivateKey | None, ephemeral: coincurve.PrivateKey,
              peer_nonce_point: bytes | None, peer_ephemeral: bytes) -> bytes:
    """x((k + x)·(R_peer + X_peer)); a None long-term key or nonce point drops that term.

    ``long_term`` is our k (None for an anonymous client), ``ephemeral`` our x,
    ``peer_nonce_point`` the peer's exact R from the verifier (None when the peer is an
    anonymous client) and ``peer_ephemeral`` the peer's X, whose proof the caller has
    already verified. The exact R with the owner's matching k means no sign rule is
    needed (module docstring).

    :raises InvalidPoint: a peer point is not a compressed curve point, or R + X is
        infinity (a peer sending X = −R would otherwise force K to infinity).
    :raises ValueError: both long-term terms are None: that is unauthenticated
        Diffie-Hellman, which no suite offers.
    """
    if long_term is None and peer_nonce_point is None:
        raise ValueError("YAK needs a long-term key on at least one side")
    peer_point = parse_point(peer_ephemeral)
    if peer_nonce_point is not None:
        peer_point = add_points(parse_point(peer_nonce_point), peer_point)
    if long_term is None:
        scalar = ephemeral.secret
    else:
        try:
            scalar = tweak_scalar(long_term.secret, ephemeral.secret, multiply=False)  # k + x mod n
        except ValueError:  # x = −k: our own ephemeral, probability 2⁻²⁵⁶
            raise ValueError("k + x is zero; draw another ephemeral") from None
    return peer_point.multiply(scalar).format(compressed=True)[1:]     # shared_x of a bare scalar
