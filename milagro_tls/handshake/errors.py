"""Handshake errors. Every one carries the TLS alert that the peer is told.

    MilagroError
    └── HandshakeError                 alert: what the peer learns (RFC 5246 §7.2)
        ├── UnexpectedMessage          unexpected_message (10): out of order, renegotiation
        ├── BadRecordMac               bad_record_mac (20): a record failed AEAD authentication
        ├── RecordOverflow             record_overflow (22)
        ├── NoCommonSuite              handshake_failure (40): nothing we can negotiate
        ├── PeerNotAuthenticated       bad_certificate (42): the staple or the trust store refused
        │   └── AnchorNotYetVerifiable certificate_unknown (46): block unknown or too shallow here, yet
        ├── IllegalParameter           illegal_parameter (47): invalid point or scalar, bad field
        ├── MalformedMessage           decode_error (50)
        ├── ProofFailed                decrypt_error (51): a NIZK or Finished did not verify
        ├── UnsupportedVersion         protocol_version (70)
        ├── InternalError              internal_error (80)
        └── PeerAlert                  a fatal alert the peer sent us (nothing is sent back)

The reason (the exception message) goes to the log, never to the peer: one alert for every
authentication failure gives an attacker no oracle (house style, cryptography's Fernet).
"""
from __future__ import annotations

from tlslite.constants import AlertDescription

from ..errors import MilagroError


class HandshakeError(MilagroError):
    alert: int = AlertDescription.handshake_failure

    def __init__(self, message: str = "", *, alert: int | None = None) -> None:
        super().__init__(message)
        if alert is not None:
            self.alert = alert

    @property
    def alert_name(self) -> str:
        return AlertDescription.toRepr(self.alert) or f"alert_{self.alert}"


class UnexpectedMessage(HandshakeError):
    alert = AlertDescription.unexpected_message


class BadRecordMac(HandshakeError):
    alert = AlertDescription.bad_record_mac


class RecordOverflow(HandshakeError):
    alert = AlertDescription.record_overflow


class NoCommonSuite(HandshakeError):
    alert = AlertDescription.handshake_failure


class PeerNotAuthenticated(HandshakeError):
    """Any anchor or trust-store failure. The reason is logged, never sent."""
    alert = AlertDescription.bad_certificate


class PeerRevoked(PeerNotAuthenticated):
    """The peer's anchor verified but it is revoked (its seal spent, or its TBS's current
    revocation list names it: the chain source's word, chain.revocation)."""
    alert = AlertDescription.certificate_revoked


class AnchorNotYetVerifiable(PeerNotAuthenticated):
    """The staple names a block our header chain does not have, or not deep enough yet.

    Not the peer's fault, and it may pass after a header sync: a distinct alert tells an
    honest peer to retry, and ``block_hash`` tells the caller what to sync for."""
    alert = AlertDescription.certificate_unknown

    def __init__(self, message: str = "", *, block_hash: bytes | None = None) -> None:
        super().__init__(message)
        self.block_hash = block_hash


class IllegalParameter(HandshakeError):
    alert = AlertDescription.illegal_parameter


class MalformedMessage(HandshakeError):
    alert = AlertDescription.decode_error


class ProofFailed(HandshakeError):
    alert = AlertDescription.decrypt_error


class UnsupportedVersion(HandshakeError):
    alert = AlertDescription.protocol_version


class InternalError(HandshakeError):
    alert = AlertDescription.internal_error


class PeerAlert(HandshakeError):
    """The peer ended the connection with a fatal alert; ``alert`` is what it sent."""


class ConnectionDead(MilagroError):
    """The connection failed or closed earlier; h11's rule: nobody retries on it."""
