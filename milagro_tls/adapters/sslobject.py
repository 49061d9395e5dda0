"""An ``ssl.SSLObject`` look-alike over two ``ssl.MemoryBIO``s, driving the sans-IO connection.

asyncio (``start_server(ssl=ctx)``, ``open_connection(ssl=ctx)``) and anyio (httpx's async
client) call ``context.wrap_bio()`` and use exactly this surface; the socket wrapper uses it
too, over its own BIOs. ``SSLWantReadError`` means "give me the peer's next bytes", as in ssl.
"""
from __future__ import annotations

import collections
import ssl

from ..handshake import (NEED_DATA, ApplicationData, Connection, ConnectionClosed, ConnectionFailed,
                         HandshakeComplete)
from ..handshake.errors import AnchorNotYetVerifiable
from .errors import ssl_error_for
from .peercert import bitcoin_peer_dict, peer_binary, x509_peer_dict


class MilagroSSLObject:
    def __init__(self, context, connection: Connection, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *,
                 server_side: bool, server_hostname: str | None, deliver_alert_first: bool = True) -> None:
        self._context = context
        self._connection = connection
        self._incoming = incoming
        self._outgoing = outgoing
        self.server_side = server_side
        self.server_hostname = server_hostname
        #: asyncio drops the outgoing BIO when do_handshake raises a real error (CPython
        #: gh-98078), so the peer would never see our alert. With this on, a failure first
        #: raises SSLWantReadError once (asyncio then flushes the alert), then the error.
        self._deliver_alert_first = deliver_alert_first
        self._complete: HandshakeComplete | None = None
        self._failure: ssl.SSLError | None = None
        self._failure_held = False
        self._closed: ConnectionClosed | None = None
        #: Decrypted records not yet read, as the connection returned them (no copy); the
        #: first one is consumed from ``_offset`` on. ``_pending`` counts the bytes left.
        self._plaintext: collections.deque = collections.deque()
        self._offset = 0
        self._pending = 0
        self._eof_fed = False
        if not server_side:
            connection.start()
            self._flush()

    # --- moving bytes -------------------------------------------------------------------
    def _flush(self) -> None:
        data = self._connection.data_to_send_buffer()
        if data:
            self._outgoing.write(data)

    def _pump(self, data=None) -> None:
        """Feed what the peer sent (``data``, else the incoming BIO's) into the connection and
        collect the events it makes."""
        if self._failure is not None:
            return
        if data is None:
            data = self._incoming.read()
        if data:
            self._connection.receive_data(data)
        elif self._incoming.eof and not self._eof_fed:
            self._eof_fed = True
            self._connection.receive_data(b"")
        chunks = self._connection.take_application_data()
        if chunks:
            self._plaintext.extend(chunks)
            self._pending += sum(map(len, chunks))
        next_event = self._connection.next_event
        while True:
            event = next_event()
            if event is NEED_DATA:
                break
            if type(event) is ApplicationData:
                self._plaintext.append(event.data)
                self._pending += len(event.data)
            elif isinstance(event, HandshakeComplete):
                self._complete = event
                self._context._handshake_complete(self._connection)
            elif isinstance(event, ConnectionClosed):
                self._closed = event
                break
            elif isinstance(event, ConnectionFailed):
                self._failure = ssl_error_for(event)
                if isinstance(event.error, AnchorNotYetVerifiable):
                    self._context._anchor_not_yet_verifiable(event.error)
                self._failure_held = self._deliver_alert_first and event.alert_sent
                break
        self._flush()

    def _raise_failure(self) -> None:
        if self._failure_held:
            self._failure_held = False
            raise ssl.SSLWantReadError("alert queued; the connection fails on the next call")
        raise self._failure

    # --- ssl.SSLObject ------------------------------------------------------------------
    def do_handshake(self) -> None:
        if self._complete is not None:
            return
        self._pump()
        if self._complete is not None:
            return
        if self._failure is not None:
            self._raise_failure()
        if self._closed is not None:
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        raise ssl.SSLWantReadError("The operation did not complete (read)")

    def read(self, size: int = 1024, buffer=None):
        if self._complete is None:
            self.do_handshake()
        if not self._pending and self._closed is None:
            self._pump()
        if self._pending:
            return self._take(size, buffer)
        if self._failure is not None:
            self._raise_failure()
        if self._closed is not None:
            if self._closed.clean:
                return 0 if buffer is not None else b""
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        raise ssl.SSLWantReadError("The operation did not complete (read)")

    def _take(self, size: int, buffer=None):
        """Up to ``size`` buffered plaintext bytes: copied once into ``buffer`` (their count is
        returned), else returned as bytes (a whole record without any copy)."""
        chunks = self._plaintext
        if buffer is None:
            if size <= 0:
                return b""
            chunk, start = chunks[0], self._offset
            end = start + size
            if end < len(chunk):
                self._offset = end
                out = chunk[start:end]
            else:
                # This record to its end and what follows, up to ``size``: a caller that polls its
                # fd next must not leave whole records here (see adapters.sslsocket).
                chunks.popleft()
                self._offset = 0
                out = chunk[start:] if start else chunk
                if chunks and len(out) < size:
                    pieces, taken = [out], len(out)
                    while chunks and taken < size:
                        piece = chunks[0]
                        if taken + len(piece) <= size:
                            chunks.popleft()
                        else:
                            self._offset = size - taken
                            piece = piece[:self._offset]
                        pieces.append(piece)
                        taken += len(piece)
                    out = b"".join(pieces)
            self._pending -= len(out)
            return out
        size = min(size, len(buffer)) if size else len(buffer)
        if not isinstance(buffer, memoryview):
            buffer = memoryview(buffer).cast("B")
        written, start = 0, self._offset
        while written < size and chunks:
            chunk = chunks[0]
            count = min(len(chunk) - start, size - written)
            if start or count < len(chunk):
                buffer[written:written + count] = memoryview(chunk)[start:start + count]
            else:
                buffer[written:written + count] = chunk
            written += count
            if start + count == len(chunk):
                chunks.popleft()
                start = 0
            else:
                start += count
        self._offset = start
        self._pending -= written
        return written

    def _encrypt(self, data) -> bytes:
        """``data`` as records, for the caller to send (the socket wrapper skips the BIO)."""
        if self._complete is None:
            self.do_handshake()
        if self._failure is not None:
            raise self._failure
        if not isinstance(data, (bytes, bytearray)):
            data = memoryview(data).cast("B")
        self._connection.send_data(data)
        return self._connection.data_to_send_buffer()

    def write(self, data) -> int:
        out = self._encrypt(data)
        if out:
            self._outgoing.write(out)
        return len(data)

    def pending(self) -> int:
        return self._pending

    def unwrap(self) -> None:
        """Send close_notify, then wait (SSLWantReadError) for the peer's."""
        self._connection.close()
        self._flush()
        if self._closed is None and self._failure is None:
            self._pump()
        if self._closed is not None or self._failure is not None:
            return None
        raise ssl.SSLWantReadError("The operation did not complete (read)")

    # --- what the handshake established -------------------------------------------------
    @property
    def context(self):
        return self._context

    @property
    def session(self):
        return self._connection.session

    @property
    def session_reused(self) -> bool:
        return self._connection.session_reused

    def _established(self) -> HandshakeComplete:
        if self._complete is None:
            raise ValueError("handshake not done yet")
        return self._complete

    def getpeercert(self, binary_form: bool = False):
        self._established()
        peer, x509 = self._connection.peer, self._connection.peer_x509
        if binary_form:
            return peer_binary(peer, x509)
        if peer is not None:
            return bitcoin_peer_dict(peer)
        if x509 is not None:
            return x509_peer_dict(x509)
        return None

    def cipher(self):
        if self._complete is None:
            return None
        if self._complete.standard_cipher is not None:
            return tuple(self._complete.standard_cipher)
        suite = self._complete.suite
        return suite.short_name, "TLSv1.2", suite.cipher.bits

    def shared_ciphers(self):
        if self._complete is None:
            return None
        return [(s.short_name, "TLSv1.2", s.cipher.bits) for s in self._connection.config.suites]

    def version(self) -> str | None:
        if self._complete is None:
            return None
        if self._complete.standard_cipher is not None:
            return self._complete.standard_cipher[1]
        return "TLSv1.2"

    def compression(self) -> None:
        return None

    def selected_alpn_protocol(self) -> str | None:
        return self._complete.alpn_protocol if self._complete else None

    def selected_npn_protocol(self) -> None:
        return None

    def get_channel_binding(self, cb_type: str = "tls-unique"):
        if cb_type != "tls-unique":
            raise ValueError(f"{cb_type!r} channel binding type not implemented")
        return None

    def verify_client_post_handshake(self) -> None:
        raise ssl.SSLError("post-handshake authentication is a TLS 1.3 feature; these suites are TLS 1.2")

    @property
    def connection(self) -> Connection:
        """The sans-IO connection underneath (keys for a key log, the verified peer...)."""
        return self._connection
