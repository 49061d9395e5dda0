"""The sans-IO connection's failures as ``ssl`` exceptions, so callers' ``except ssl.SSLError`` works.

    ssl.SSLError
    ├── MilagroSSLError               any refused handshake or record; .alert, .reason, .alert_sent
    └── ssl.SSLCertVerificationError
        └── MilagroPeerVerificationError   we refused the peer's anchor or trust (bad_certificate,
                                           certificate_unknown); .verify_code, .verify_message
"""
from __future__ import annotations

import ssl

from ..handshake.errors import HandshakeError, PeerNotAuthenticated
from ..handshake.events import ConnectionFailed


class MilagroSSLError(ssl.SSLError):
    library = "MILAGRO"

    def __init__(self, error: HandshakeError, *, alert_sent: bool) -> None:
        self.alert = error.alert
        self.alert_sent = alert_sent
        self.reason = error.alert_name.upper()
        self.error = error
        direction = "sent" if alert_sent else "received"
        super().__init__(error.alert, f"[MILAGRO: {self.reason}] {direction} alert {error.alert_name}: {error}")

    def __str__(self) -> str:
        return self.args[1]


class MilagroPeerVerificationError(MilagroSSLError, ssl.SSLCertVerificationError):
    def __init__(self, error: HandshakeError, *, alert_sent: bool) -> None:
        super().__init__(error, alert_sent=alert_sent)
        self.verify_code = error.alert
        self.verify_message = str(error)


def ssl_error_for(event: ConnectionFailed) -> ssl.SSLError:
    if event.alert_sent and isinstance(event.error, PeerNotAuthenticated):
        return MilagroPeerVerificationError(event.error, alert_sent=True)
    return MilagroSSLError(event.error, alert_sent=event.alert_sent)
