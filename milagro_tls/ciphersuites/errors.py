"""Why a peer's key-agreement value was refused.

    MilagroError
     └── KeyAgreementError          a peer's key-agreement value is unusable
          ├── InvalidPoint           not a 33-byte compressed SEC1 point on secp256k1, or a sum at infinity
          ├── InvalidScalar          a scalar read from the wire is zero or not below n
          └── InvalidProof           a Schnorr NIZK (RFC 8235) does not verify

The classes are precise because the log needs the reason. The handshake folds all
of them into one alert, so the peer learns nothing about which check failed.
Misuse by our own caller (wrong lengths of our own randoms, no long-term key on
either side) is a ValueError, not one of these.
"""
from __future__ import annotations

from ..errors import MilagroError


class KeyAgreementError(MilagroError):
    """A peer's key-agreement value is unusable."""


class InvalidPoint(KeyAgreementError):
    """Wrong length, not compressed SEC1, infinity, not on the curve, or x >= p."""


class InvalidScalar(KeyAgreementError):
    """A scalar read from the wire is zero or not below the group order n."""


class InvalidProof(KeyAgreementError):
    """A Schnorr NIZK proof does not verify."""
