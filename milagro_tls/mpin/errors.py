"""The M-Pin exceptions: one root (MpinError, under MilagroError) and a class per reason.

A D-TA or relying service maps them to HTTP 4xx with the class's ``reason`` in a JSON body;
the messages never carry a secret (no scalar, token, PIN or share).
"""
from __future__ import annotations

from ..errors import MilagroError


class MpinError(MilagroError):
    """Root of the M-Pin errors (milagro_tls.mpin)."""
    #: A short machine-readable reason for JSON error bodies.
    reason = "mpin-error"


class MalformedPoint(MpinError, ValueError):
    """Bytes or hex that are not a usable group element: wrong length, not on the curve,
    outside the prime-order subgroup, or the identity (which would void every check)."""
    reason = "malformed-point"


class MalformedScalar(MpinError, ValueError):
    """A scalar encoding that is not 32 bytes below the group order, or zero where it may not be."""
    reason = "malformed-scalar"


class MalformedIdentity(MpinError, ValueError):
    """An M-Pin identity (u16be-length-prefixed issuer and sub) that does not parse."""
    reason = "malformed-identity"


class MalformedMessage(MpinError, ValueError):
    """A protocol message (pass 1, challenge, pass 2) whose JSON does not parse."""
    reason = "malformed-message"


class MalformedShare(MpinError, ValueError):
    """A signed share whose JSON does not have the exact expected fields and types."""
    reason = "malformed-share"


class InvalidMasterSecret(MpinError):
    """A master secret that is zero modulo the group order (it would issue the identity)."""
    reason = "invalid-master-secret"


class InvalidPin(MpinError, ValueError):
    """A PIN that is not a non-negative integer (or a string of decimal digits) below the order."""
    reason = "invalid-pin"


class ShareSignatureError(MpinError):
    """A share's BIP340 signature does not verify under the D-TA's anchored key (tampered, or
    issued by another D-TA)."""
    reason = "share-signature"


class ShareMismatch(MpinError):
    """A correctly signed share that is not the one expected: another kind, identity, date or
    recipient."""
    reason = "share-mismatch"


class ExpiredPermit(MpinError):
    """The client's time permit is for another date than the server's today (UTC day number)."""
    reason = "expired-permit"


class AuthenticationFailed(MpinError):
    """The M-Pin pairing check failed. The server cannot tell why, by design: a wrong PIN, a
    missing share, a share from a D-TA the service does not use, and a token for another identity
    all look the same."""
    reason = "authentication-failed"


class ProtocolStateError(MpinError):
    """A protocol step out of order (pass 2 before pass 1, or a pass repeated)."""
    reason = "protocol-state"
