"""The server's standard-suite fallback: Python ``ssl`` (OpenSSL) over memory BIOs.

When a client offers none of our suites and the server has a fallback certificate, the bytes
received so far (the ClientHello) are replayed into an ``ssl.SSLObject``, which then runs the
whole connection: standard clients get OpenSSL's TLS, certificate and record layer, and we
add no TLS code of our own to that path.
"""
from __future__ import annotations

import ssl

from tlslite.constants import AlertDescription

from .errors import HandshakeError, PeerAlert
from .events import NEED_DATA, ApplicationData, ConnectionClosed, ConnectionFailed, HandshakeComplete

_SSL_AGAIN = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
#: Application data read per next_event(): one TLS record's worth.
_READ_SIZE = 16384


class StandardSuiteFailed(HandshakeError):
    """OpenSSL refused the connection; it sent its own alert, already in the outgoing bytes."""


#: OpenSSL's reason codes and the alert its state machine sends for them (ssl/statem/*.c).
_ALERT_FOR_REASON = {
    "NO_SHARED_CIPHER": AlertDescription.handshake_failure,
    "UNSUPPORTED_PROTOCOL": AlertDescription.protocol_version,
    "WRONG_VERSION_NUMBER": AlertDescription.protocol_version,
    "VERSION_TOO_LOW": AlertDescription.protocol_version,
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": AlertDescription.bad_record_mac,
    "BAD_RECORD_MAC": AlertDescription.bad_record_mac,
    "RECORD_LAYER_FAILURE": AlertDescription.decode_error,
    "LENGTH_MISMATCH": AlertDescription.decode_error,
    "BAD_PACKET_LENGTH": AlertDescription.decode_error,
    "UNEXPECTED_MESSAGE": AlertDescription.unexpected_message,
    "UNEXPECTED_RECORD": AlertDescription.unexpected_message,
    "NO_SHARED_GROUPS": AlertDescription.handshake_failure,
    "BAD_KEY_SHARE": AlertDescription.illegal_parameter,
    "DIGEST_CHECK_FAILED": AlertDescription.decrypt_error,
}


class StandardServerSession:
    def __init__(self, context: ssl.SSLContext, replay: bytes) -> None:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._incoming.write(replay)
        self._established = False
        self._closed: ConnectionClosed | None = None

    def receive_data(self, data: bytes) -> None:
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def data_to_send(self) -> bytes:
        return self._outgoing.read()

    def next_event(self):
        if self._closed is not None:
            return self._closed
        try:
            if not self._established:
                self.ssl_object.do_handshake()
                self._established = True
                return HandshakeComplete(suite=None, peer=None,
                                         alpn_protocol=self.ssl_object.selected_alpn_protocol(),
                                         standard_cipher=self.ssl_object.cipher())
            data = self.ssl_object.read(_READ_SIZE)
        except _SSL_AGAIN:
            return NEED_DATA
        except ssl.SSLZeroReturnError:
            self._closed = ConnectionClosed(clean=True)
            return self._closed
        except ssl.SSLEOFError:
            if not self._established:
                return ConnectionFailed(error=PeerAlert("peer closed during the standard-suite handshake",
                                                        alert=AlertDescription.close_notify), alert_sent=False)
            self._closed = ConnectionClosed(clean=False)
            return self._closed
        except ssl.SSLError as exc:
            alert = _ALERT_FOR_REASON.get(exc.reason or "", AlertDescription.handshake_failure)
            return ConnectionFailed(error=StandardSuiteFailed(f"OpenSSL: {exc.reason or exc}", alert=alert),
                                    alert_sent=True)
        if not data:
            self._closed = ConnectionClosed(clean=True)
            return self._closed
        return ApplicationData(data)

    def send_data(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.ssl_object.write(view)
            view = view[written:]

    def close(self) -> None:
        try:
            self.ssl_object.unwrap()
        except (ssl.SSLError, OSError):
            pass           # close_notify is queued; the peer's reply is not awaited
