"""The sans-IO TLS 1.2 connection for the ECDH-BTC and YAK-BTC suites (h11's shape).

    conn = Connection(Role.CLIENT, config, server_hostname="echo.example")
    conn.start()                                  # queues the ClientHello
    sock.sendall(conn.data_to_send())
    conn.receive_data(sock.recv(65536))           # b"" is EOF, as socket.recv returns it
    event = conn.next_event()                     # HandshakeComplete, ApplicationData, ...

It owns no socket and never blocks: staples verify against the caller's header chain.
Any error ends the connection: the alert is queued in ``data_to_send()``, the failure is
returned once as a ConnectionFailed event, and every later call raises ConnectionDead.
"""
from __future__ import annotations

import collections
import logging
import time

from tlslite.constants import AlertDescription, AlertLevel, HandshakeType

from ..ciphersuites.registry import SuiteSpec
from ..errors import MilagroError
from ..trust import AuthenticatedPeer
from .client import ClientHandshake
from .config import HandshakeConfig
from .errors import (ConnectionDead, HandshakeError, InternalError, MalformedMessage, PeerAlert,
                     UnexpectedMessage)
from .events import NEED_DATA, ApplicationData, ConnectionClosed, ConnectionFailed, HandshakeComplete
from .keyschedule import Transcript
from .records import MAX_CIPHERTEXT, ContentType, RecordLayer
from .server import ServerHandshake
from .session import Session
from .state import CHANGE_CIPHER_SPEC, RENEGOTIATION_REQUESTS, Role, State, next_state, next_states

log = logging.getLogger(__name__)

#: h11 bounds what it buffers; so do we. ClientHello: OpenSSL's limit (131396, from the
#: largest legal cipher and extension lists). Key exchanges: the staple bound plus points
#: and a proof. Finished: verify_data_length 12 (RFC 5246 §7.4.9).
_MAX_HELLO = 131396
_KEY_EXCHANGE_OVERHEAD = 512
#: An X.509 chain in the standard-suite fallback: OpenSSL's default max_cert_list is 100 KiB.
_MAX_CERTIFICATE_CHAIN = 100 * 1024
#: Consecutive warning alerts we tolerate: each costs us work and the peer nothing.
_MAX_WARNINGS = 4
#: The raw bytes kept for the standard-suite fallback's replay: a largest ClientHello and its
#: record headers (at most 9 records of 2^14).
_MAX_RAW_HELLO = _MAX_HELLO + 1024


def max_buffered_before_authentication(config: HandshakeConfig, role: Role = Role.SERVER) -> int:
    """The most ``Connection.buffered_bytes`` can reach between calls before the handshake is
    complete, whatever the peer sends: one incomplete record (header and the largest
    protected fragment), the handshake message being reassembled (its header and the largest
    message its role may receive: a ClientHello/ServerHello at OpenSSL's 131396 bytes, a key
    exchange at the staple bound plus 512, an X.509 chain of the client's fallback at
    100 KiB), and for a server with a standard-suite fallback the raw ClientHello kept for
    replay. Over the default server configuration: 149,837 bytes (146 KiB)."""
    largest = max(_MAX_HELLO, config.max_staple_size + _KEY_EXCHANGE_OVERHEAD)
    if role is Role.CLIENT and config.fallback_trust_anchors is not None:
        largest = max(largest, _MAX_CERTIFICATE_CHAIN)
    raw_hello = _MAX_RAW_HELLO if role is Role.SERVER and config.fallback_context is not None else 0
    return 5 + MAX_CIPHERTEXT + 4 + largest + raw_hello


class LocalProtocolError(MilagroError):
    """The caller used the connection wrongly (sent data before the handshake finished...)."""


class Connection(ClientHandshake, ServerHandshake):
    def __init__(self, role: Role, config: HandshakeConfig, *, server_hostname: str | None = None,
                 session: Session | None = None) -> None:
        if role is Role.SERVER and config.identity is None:
            raise ValueError("a server needs an anchored identity: our suites authenticate the server")
        if session is not None and role is Role.SERVER:
            raise ValueError("only a client offers a session; a server resumes from its session cache")
        self.role = role
        self.config = config
        self.server_hostname = server_hostname
        self.state = State.START if role is Role.CLIENT else State.WAIT_CLIENT_HELLO
        self.suite: SuiteSpec | None = None
        self.peer: AuthenticatedPeer | None = None
        self.alpn_protocol: str | None = None
        self.server_name: str | None = None      # the SNI a client sent us
        self.peer_x509 = None                    # the server's certificate, standard-suite fallback only
        self.client_random = b""
        self.server_random = b""
        self.session_id = b""
        self.master_secret = b""
        self._records = RecordLayer()
        self._transcript = Transcript()
        self._outgoing = bytearray()
        self._events: collections.deque = collections.deque()
        self._handshake_buffer = bytearray()
        self._pending_read = None
        self._pending_write = None
        self._warnings = 0
        self._eof = False
        self._closed_event: ConnectionClosed | None = None
        self._failure_delivered = False
        self._close_sent = False
        #: Client: the session offered for resumption. After the handshake: this connection's.
        self.session: Session | None = session
        self.session_reused = False
        #: Server: raw bytes up to the ClientHello, replayed to Python ssl for the fallback.
        self._raw_hello: bytearray | None = bytearray() if config.fallback_context is not None else None
        self._standard = None          # the fallback's engine, once delegated

    # --- the sans-IO surface --------------------------------------------------------------
    @property
    def is_established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def buffered_bytes(self) -> int:
        """Peer bytes this connection holds now: the record buffer, the handshake message being
        reassembled, the raw ClientHello kept for the fallback. Before authentication this
        stays within ``max_buffered_before_authentication(config, role)`` between calls."""
        return self._records.held + len(self._handshake_buffer) + len(self._raw_hello or b"")

    def start(self) -> None:
        """Client: queue the ClientHello. Servers wait for one and need not call this."""
        if self.role is Role.SERVER:
            return
        if self.state is not State.START:
            raise LocalProtocolError("the handshake has already started")
        self._guard(self._send_client_hello)
        self.state = State.WAIT_SERVER_HELLO

    def receive_data(self, data: bytes) -> None:
        if self.state is State.FAILED:
            raise ConnectionDead("the connection failed; open a new one")
        if self._standard is not None:
            self._standard.receive_data(data)
            return
        if self._raw_hello is not None:
            # Bounded before appending: a peer's one large read must not grow it past the bound.
            if self.state is State.WAIT_CLIENT_HELLO and len(self._raw_hello) + len(data) <= _MAX_RAW_HELLO:
                self._raw_hello += data
            else:
                self._raw_hello = None
        if not data:
            self._eof = True
        elif not self._eof:
            self._records.feed(data)

    def data_to_send(self) -> bytes:
        return bytes(self.data_to_send_buffer())

    def data_to_send_buffer(self) -> bytearray:
        """``data_to_send()`` without its final copy: a bytearray that is now the caller's."""
        out = self._outgoing
        self._outgoing = bytearray()
        if self._standard is not None:
            out += self._standard.data_to_send()
        return out

    def next_event(self):
        while True:
            if self._standard is not None and not self._events:
                return self._standard_event()
            if self._events:
                event = self._events.popleft()
                if isinstance(event, ConnectionFailed):
                    self._failure_delivered = True
                return event
            if self.state is State.FAILED:
                raise ConnectionDead("the connection failed; open a new one")
            if self._closed_event is not None and not self._records.buffered:
                return self._closed_event
            if not self._guard(self._process_next_record):
                if self._events:
                    continue
                if self._eof:
                    self._on_eof()
                    continue
                return NEED_DATA

    def take_application_data(self) -> list[bytes]:
        """The plaintexts of the whole application_data records received so far, in order:
        what next_event() would return as ApplicationData events, without an event per
        record (the adapters' bulk path). Stops at any other record; next_event() then
        handles it. A bad record fails the connection exactly as next_event() would."""
        if (self.state is not State.ESTABLISHED or self._events or self._standard is not None
                or self._closed_event is not None or self._handshake_buffer):
            return []
        out: list[bytes] = []
        self._guard(lambda: self._records.open_application_data(out))
        if out:
            self._warnings = 0
        return out

    def send_data(self, data: bytes) -> None:
        """Queue application data (encrypted) once the handshake is complete."""
        if self.state is State.FAILED:
            raise ConnectionDead("the connection failed; open a new one")
        if self._close_sent:
            raise LocalProtocolError("close() was called: no more data may be sent")
        if self.state not in (State.ESTABLISHED, State.CLOSED):
            raise LocalProtocolError(f"cannot send application data in state {self.state.value}")
        if self._standard is not None:
            self._standard.send_data(data)
            return
        if data:
            records = self._records.encode(ContentType.application_data, data)
            if self._outgoing:
                self._outgoing += records
            else:                               # adopt the buffer: no copy
                self._outgoing = records if type(records) is bytearray else bytearray(records)

    def close(self) -> None:
        """Queue close_notify (RFC 5246 §7.2.1). Idempotent; a failed connection sends nothing."""
        if self.state is State.FAILED or self._close_sent:
            return
        self._close_sent = True
        if self._standard is not None:
            self._standard.close()
            return
        self._queue_alert(AlertLevel.warning, AlertDescription.close_notify)
        if self.state is not State.ESTABLISHED:
            self.state = State.CLOSED

    # --- processing ---------------------------------------------------------------------
    def _guard(self, step) -> bool:
        """Run ``step``; any error fails the connection with its alert (never a traceback to
        the peer: an unexpected exception becomes internal_error, and its trace goes to the log)."""
        try:
            return step()
        except HandshakeError as exc:
            self._fail(exc)
        except Exception as exc:  # our bug, not the peer's: tell it internal_error
            log.exception("internal error in the %s handshake", self.role.value)
            self._fail(InternalError(f"{type(exc).__name__}: {exc}"))
        return False

    def _process_next_record(self) -> bool:
        record = self._records.next_record()
        if record is None:
            return False
        content_type, payload = record
        if content_type == ContentType.handshake:
            self._handshake_buffer += payload
            self._process_handshake_messages()
        elif self._handshake_buffer:
            # RFC 5246 §6.2.1: a handshake message may span records, but nothing may be
            # interleaved into it.
            raise UnexpectedMessage("record interleaved into a fragmented handshake message")
        elif content_type == ContentType.alert:
            self._on_alert(payload)
        elif content_type == ContentType.change_cipher_spec:
            self._on_change_cipher_spec(payload)
        else:
            self._on_application_data(payload)
        return True

    def _process_handshake_messages(self) -> None:
        buffer = self._handshake_buffer
        while len(buffer) >= 4 and self.state is not State.FAILED:
            message_type = buffer[0]
            length = int.from_bytes(buffer[1:4], "big")
            renegotiation = (self.state is State.ESTABLISHED
                             and message_type == RENEGOTIATION_REQUESTS[self.role])
            allowed = next_states(self.role, self.state, message_type)
            if allowed and not self._accepts(message_type):
                allowed = ()
            if not allowed and not renegotiation:
                raise UnexpectedMessage(f"{HandshakeType.toStr(message_type)} in state {self.state.value}")
            if length > self._max_message_size(message_type):
                raise MalformedMessage(f"{HandshakeType.toStr(message_type)} of {length} bytes is longer "
                                       "than any legal one")
            if len(buffer) < 4 + length:
                return
            raw = bytes(buffer[:4 + length])
            del buffer[:4 + length]
            if renegotiation:
                log.info("peer asked to renegotiate: refused")
                self._queue_alert(AlertLevel.warning, AlertDescription.no_renegotiation)
                continue
            chosen = self._dispatch(message_type, raw)
            if self.state is State.FAILED or self._standard is not None:
                return
            if chosen is not None and chosen not in allowed:
                raise InternalError(f"handler chose {chosen} after {HandshakeType.toStr(message_type)}")
            self.state = chosen or allowed[0]

    def _dispatch(self, message_type: int, raw: bytes) -> State | None:
        handler = {
            (Role.SERVER, HandshakeType.client_hello): self._on_client_hello,
            (Role.CLIENT, HandshakeType.server_hello): self._on_server_hello,
            (Role.CLIENT, HandshakeType.certificate): self._on_certificate,
            (Role.CLIENT, HandshakeType.certificate_request): self._on_certificate_request,
            (Role.CLIENT, HandshakeType.server_key_exchange): self._on_server_key_exchange,
            (Role.CLIENT, HandshakeType.server_hello_done): self._on_server_hello_done,
            (Role.SERVER, HandshakeType.client_key_exchange): self._on_client_key_exchange,
            (Role.CLIENT, HandshakeType.finished): self._on_server_finished,
            (Role.SERVER, HandshakeType.finished): self._on_client_finished,
        }[(self.role, message_type)]
        return handler(raw)

    def _accepts(self, message_type: int) -> bool:
        """Messages the table allows only on the client's X.509 fallback path, and only once,
        refused from their header alone everywhere else."""
        if message_type == HandshakeType.certificate_request:
            return getattr(self, "_x509", None) is not None and not getattr(self, "_certificate_requested", False)
        if message_type == HandshakeType.certificate:
            return getattr(self, "_x509", None) is not None
        return True

    def _max_message_size(self, message_type: int) -> int:
        if message_type in (HandshakeType.client_hello, HandshakeType.server_hello):
            return _MAX_HELLO
        if message_type in (HandshakeType.server_key_exchange, HandshakeType.client_key_exchange):
            return self.config.max_staple_size + _KEY_EXCHANGE_OVERHEAD
        if message_type == HandshakeType.finished:
            return 12
        if message_type in (HandshakeType.certificate, HandshakeType.certificate_request):
            return _MAX_CERTIFICATE_CHAIN
        return 0

    def _on_change_cipher_spec(self, payload: bytes) -> None:
        after = next_state(self.role, self.state, CHANGE_CIPHER_SPEC)
        if after is None:
            raise UnexpectedMessage(f"ChangeCipherSpec in state {self.state.value}")
        if payload != b"\x01":
            raise MalformedMessage("ChangeCipherSpec must be the single byte 1")
        self._records.read_protection = self._pending_read
        self.state = after

    def _on_application_data(self, payload: bytes) -> None:
        if self.state not in (State.ESTABLISHED, State.CLOSED):
            raise UnexpectedMessage(f"application data in state {self.state.value}")
        self._warnings = 0
        if payload:
            self._events.append(ApplicationData(payload))

    def _on_alert(self, payload: bytes) -> None:
        if len(payload) % 2:
            raise MalformedMessage("alert record of odd length")
        for index in range(0, len(payload), 2):
            level, description = payload[index], payload[index + 1]
            name = AlertDescription.toRepr(description) or str(description)
            if description == AlertDescription.close_notify:
                log.debug("peer sent close_notify")
                self._closed_event = ConnectionClosed(clean=True)
                if self.state is not State.ESTABLISHED:
                    self._fail(PeerAlert("peer closed during the handshake", alert=description), send=False)
                else:
                    self.state = State.CLOSED
                return
            if level == AlertLevel.fatal:
                log.info("peer sent fatal alert %s", name)
                self._fail(PeerAlert(f"peer sent fatal alert {name}", alert=description), send=False)
                return
            self._warnings += 1
            log.info("peer sent warning alert %s", name)
            if self._warnings > _MAX_WARNINGS:
                raise UnexpectedMessage("too many warning alerts in a row")

    def _on_eof(self) -> None:
        if self.state in (State.ESTABLISHED, State.CLOSED) and not self._records.mid_record():
            self.state = State.CLOSED
            self._closed_event = self._closed_event or ConnectionClosed(clean=False)
            return
        where = "mid-record" if self._records.mid_record() else f"in state {self.state.value}"
        self._fail(PeerAlert(f"peer closed the connection {where}", alert=AlertDescription.close_notify),
                   send=False)

    # --- output -------------------------------------------------------------------------
    def _send_handshake(self, *messages) -> None:
        data = bytearray()
        for message in messages:
            raw = bytes(message.write())
            self._transcript.add(raw)
            data += raw
        self._outgoing += self._records.encode(ContentType.handshake, bytes(data))

    def _send_raw_handshake(self, raw: bytes) -> None:
        self._transcript.add(raw)
        self._outgoing += self._records.encode(ContentType.handshake, raw)

    def _send_change_cipher_spec(self, protection) -> None:
        self._outgoing += self._records.encode(ContentType.change_cipher_spec, b"\x01")
        self._records.write_protection = protection

    def _queue_alert(self, level: int, description: int) -> None:
        self._outgoing += self._records.encode(ContentType.alert, bytes((level, description)))

    def _fail(self, error: HandshakeError, *, send: bool = True) -> None:
        if self.state is State.FAILED:
            return
        if send:
            # INFO, not WARNING: refusing a peer is routine for a server; internal errors are
            # logged with their traceback where they are caught (_guard).
            log.info("%s handshake failed, sending %s: %s", self.role.value, error.alert_name, error)
            try:
                self._queue_alert(AlertLevel.fatal, error.alert)
            except HandshakeError:
                pass  # the write side is unusable (sequence exhausted); the peer sees EOF
        self.state = State.FAILED
        self._events.append(ConnectionFailed(error=error, alert_sent=send))

    def _complete(self) -> None:
        suite, standard = self.suite, None
        if self.peer_x509 is not None:       # the client's X.509 fallback: not a Bitcoin suite
            suite, standard = None, (self.suite.short_name, "TLSv1.2", self.suite.cipher.bits)
        self._events.append(HandshakeComplete(suite=suite, peer=self.peer, alpn_protocol=self.alpn_protocol,
                                              session_reused=self.session_reused, standard_cipher=standard))

    def _new_session(self, *, client_locator: bytes, server_locator: bytes) -> Session:
        return Session(id=self.session_id, suite=self.suite, master_secret=self.master_secret, peer=self.peer,
                       client_locator=client_locator, server_locator=server_locator, created=time.time())

    # --- the standard-suite fallback (server), delegated to Python ssl --------------------
    def _delegate_to_standard(self) -> None:
        from .standard_server import StandardServerSession
        self._standard = StandardServerSession(self.config.fallback_context, bytes(self._raw_hello))
        self._raw_hello = None
        self._handshake_buffer.clear()

    def _standard_event(self):
        event = self._standard.next_event()
        if isinstance(event, HandshakeComplete):
            self.state = State.ESTABLISHED
            self.alpn_protocol = event.alpn_protocol
        elif isinstance(event, ConnectionFailed):
            self.state = State.FAILED
            self._failure_delivered = True
        elif isinstance(event, ConnectionClosed) and self.state is State.ESTABLISHED:
            self.state = State.CLOSED
        return event
