"""ECDH-BTC: static-static Diffie-Hellman over the anchors' nonce keys (McCorry et al. 2015).

Each anchored party's long-term key pair is (k, R): R the exact nonce point of its anchor
signature (public, recomputed by the verifier), k the matching nonce (secret, known to the
owner alone; see nonce.py).

    full mode         premaster = x(k_C·R_S) = x(k_S·R_C)
    server-only mode  the client picks an ephemeral e and sends E = e·G;
                      premaster = x(e·R_S) = x(k_S·E)

Only the x-coordinate is used, and x(−P) = x(P), so a sign mix-up of R on either side
could not change the result. No forward secrecy in full mode, and open to key-compromise
impersonation: YAK-BTC (yak_btc.py) is the suite without those weaknesses.
"""
from __future__ import annotations

import coincurve

from .points import parse_point, shared_x


def premaster(own_secret: coincurve.PrivateKey, peer_point: bytes) -> bytes:
    """x(own_secret · peer_point), 32 big-endian bytes (RFC 8422 §5.10 encoding).

    Called with (k_C, R_S) and (k_S, R_C) in full mode, (e, R_S) and (k_S, E) in
    server-only mode.

    :raises InvalidPoint: when peer_point is not a compressed point on the curve.
    """
    return shared_x(own_secret, parse_point(peer_point))
