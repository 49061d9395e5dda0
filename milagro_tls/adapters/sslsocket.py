"""A ``socket.socket`` subclass shaped like ``ssl.SSLSocket``: a real fd for select(), timeouts
that keep the session, non-blocking mode with SSLWantReadError/SSLWantWriteError.

It only moves bytes between the kernel socket and a MilagroSSLObject's memory BIOs.

It never keeps a whole TLS record that nobody asked for (``_RecordFraming``): a read takes the
rest of the record being read, the next record's 5-byte header, and further records only as far
as the caller asked for that much plaintext, and hands all of it to the caller. A poll()-driven
server (gunicorn's keep-alive poller) waits on the fd for the next request; a request sitting
complete in our buffers would never make the fd readable, and the connection would time out
under a client that already sent it. (OpenSSL without read-ahead reads one record at a time;
taking as many as the caller wants keeps bulk reads at a few syscalls and one pump per call.)
"""
from __future__ import annotations

import errno
import select
import socket
import ssl
import threading
import time

from .sslobject import MilagroSSLObject

_RECV_SIZE = 262144
#: What a failed connection drains from the kernel before it closes (see _discard_unread).
_DISCARD_LIMIT = 262144
_thread_buffers = threading.local()


def _receive_buffer() -> memoryview:
    """One receive buffer per thread, not per socket: idle connections hold none."""
    view = getattr(_thread_buffers, "view", None)
    if view is None:
        view = _thread_buffers.view = memoryview(bytearray(_RECV_SIZE))
    return view


class _RecordFraming:
    """How many bytes the kernel may give us (see the module docstring)."""

    __slots__ = ("body_left", "length", "header")
    HEADER = 5

    def __init__(self) -> None:
        self.body_left = 0          # bytes of the current record's body still in the kernel
        self.length = 0             # the current record's body length
        self.header = bytearray()   # the next record's header, as far as it came

    def wanted(self, plaintext: int = 0) -> int:
        """The rest of the current record and the next header, plus whole records up to
        ``plaintext`` bytes in all: a record's plaintext is never longer than its body, so
        everything decrypted fits what the caller asked for, or is the current record."""
        if self.body_left:
            size = self.body_left + self.HEADER + max(0, plaintext - self.length)
        else:
            size = self.HEADER - len(self.header) + plaintext
        return min(size, _RECV_SIZE)

    def consumed(self, data) -> None:
        at, size = 0, len(data)
        while at < size:
            if self.body_left:
                taken = min(self.body_left, size - at)
                self.body_left -= taken
                at += taken
                continue
            piece = data[at:at + self.HEADER - len(self.header)]
            self.header += piece
            at += len(piece)
            if len(self.header) == self.HEADER:
                self.body_left = self.length = int.from_bytes(self.header[3:5], "big")
                self.header.clear()


class MilagroSocket(socket.socket):
    @classmethod
    def _create(cls, sock: socket.socket, context, *, server_side: bool, server_hostname: str | None,
                do_handshake_on_connect: bool, suppress_ragged_eofs: bool, session=None) -> "MilagroSocket":
        if sock.type != socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side and server_hostname:
            raise ValueError("server_hostname can only be specified in client mode")
        kwargs = dict(family=sock.family, type=sock.type, proto=sock.proto, fileno=sock.fileno())
        self = cls.__new__(cls, **kwargs)
        super(MilagroSocket, self).__init__(**kwargs)
        timeout = sock.gettimeout()
        sock.detach()
        self.settimeout(timeout)
        self._context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self._session_offer = session
        self._sslobj: MilagroSSLObject | None = None
        self._unsent = b""
        self._framing = _RecordFraming()
        try:
            self.getpeername()
            connected = True
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            connected = False
        self._connected = connected
        if connected:
            try:
                self._start()
                if do_handshake_on_connect:
                    if timeout == 0.0:
                        raise ValueError("do_handshake_on_connect should not be specified for non-blocking sockets")
                    self.do_handshake()
            except (OSError, ValueError):
                # As ssl.SSLSocket._create: a refused handshake closes the socket (after the
                # alert went out), or the peer waits on a connection nobody holds any more.
                self.close()
                raise
        return self

    def _start(self) -> None:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._sslobj = self._context._make_sslobject(
            self._incoming, self._outgoing, server_side=self.server_side,
            server_hostname=self.server_hostname, session=self._session_offer, deliver_alert_first=False)

    # --- the IO loop ---------------------------------------------------------------------
    def _deadline(self) -> float | None:
        timeout = self.gettimeout()
        return None if timeout is None else time.monotonic() + timeout

    def _wait(self, for_write: bool, deadline: float | None, what: str) -> None:
        # poll(), not select(): select() refuses descriptors at or above FD_SETSIZE (1024), which
        # a busy server passes.
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        poller = select.poll()
        poller.register(self.fileno(), select.POLLOUT if for_write else select.POLLIN)
        if not poller.poll(None if remaining is None else remaining * 1000):
            raise TimeoutError(f"The {what} operation timed out")

    def _flush(self, deadline: float | None) -> None:
        """Send what the TLS layer produced; a non-blocking socket keeps the rest for later."""
        self._unsent += self._outgoing.read()
        while self._unsent:
            try:
                sent = super().send(self._unsent)
            except (BlockingIOError, InterruptedError):
                if self.gettimeout() == 0.0:
                    raise ssl.SSLWantWriteError("The operation did not complete (write)") from None
                self._wait(True, deadline, "write")
                continue
            except TimeoutError:
                raise TimeoutError("The write operation timed out") from None
            self._unsent = self._unsent[sent:]

    def _fill(self, deadline: float | None, plaintext: int = 0) -> None:
        """Read the peer's next bytes into the TLS layer (b"" marks EOF); ``plaintext``: how much
        the caller is reading (see _RecordFraming)."""
        if self.gettimeout() not in (0.0, None):
            self._wait(False, deadline, "read")
        try:
            data = super().recv(self._framing.wanted(plaintext))
        except (BlockingIOError, InterruptedError):
            raise ssl.SSLWantReadError("The operation did not complete (read)") from None
        except TimeoutError:
            raise TimeoutError("The read operation timed out") from None
        if data:
            self._framing.consumed(data)
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def _run(self, operation, plaintext: int = 0):
        if self._sslobj is None:
            raise OSError(errno.ENOTCONN, "socket is not connected")
        deadline = self._deadline()
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                self._flush(deadline)
                self._fill(deadline, plaintext)
                continue
            except ssl.SSLError:
                self._flush_quietly()
                raise
            self._flush(deadline)
            return result

    def _flush_quietly(self) -> None:
        try:
            self._flush(time.monotonic() + 1.0)
        except (OSError, ssl.SSLError):
            pass        # the alert is best effort: the connection is failing anyway
        self._discard_unread()

    def _discard_unread(self) -> None:
        """The connection failed: drop what the peer already sent (bounded, without waiting).
        Reads stop at record boundaries, so the rest of a refused flight may still sit in the
        kernel, and close() over unread bytes sends RST, which can destroy our alert before the
        peer reads it."""
        budget, timeout = _DISCARD_LIMIT, self.gettimeout()
        try:
            # Non-blocking mode, not MSG_DONTWAIT alone: with a timeout set, Python first waits
            # up to that timeout for the fd to become readable.
            super().settimeout(0.0)
            while budget > 0:
                data = super().recv(min(budget, 65536))
                if not data:
                    return
                budget -= len(data)
        except OSError:
            pass        # nothing more now (EAGAIN), or the socket is already gone
        finally:
            try:
                super().settimeout(timeout)
            except OSError:
                pass

    # --- ssl.SSLSocket --------------------------------------------------------------------
    def do_handshake(self, block: bool = False) -> None:
        self._run(self._sslobj.do_handshake if self._sslobj else self._not_connected)

    def _not_connected(self):
        raise OSError(errno.ENOTCONN, "socket is not connected")

    def _fast(self):
        """The SSLObject when plain blocking application-data IO may skip the memory BIOs and
        the SSLWantReadError round trips: established, healthy, no timeout, nothing unsent."""
        sslobj = self._sslobj
        if (sslobj is not None and sslobj._complete is not None and sslobj._failure is None
                and sslobj._closed is None and not self._unsent and self.gettimeout() is None):
            return sslobj
        return None

    def _read_fast(self, size: int, buffer):
        """Blocking read straight from the kernel into the connection; None: take the slow path."""
        sslobj = self._fast()
        while sslobj is not None:
            if sslobj._pending:
                return sslobj._take(size, buffer)
            if sslobj._incoming.pending or self._outgoing.pending:
                return None
            scratch = _receive_buffer()
            received = super().recv_into(scratch, self._framing.wanted(size))
            if not received:
                self._incoming.write_eof()     # the slow path reports EOF as ssl does
                return None
            self._framing.consumed(scratch[:received])
            sslobj._pump(scratch[:received])    # the record layer copies what it keeps
            if self._outgoing.pending:         # e.g. a warning alert we answer
                self._flush(None)
            sslobj = self._fast()
        return None

    def read(self, len: int = 1024, buffer=None):
        if len > 0:
            result = self._read_fast(len, buffer)
            if result is not None:
                return result
        try:
            return self._run(lambda: self._sslobj.read(len, buffer), len)
        except ssl.SSLEOFError:
            if self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data) -> int:
        return self._run(lambda: self._sslobj.write(data))

    # Without TLS (before connect, after shutdown()) recv reads the plain socket, as
    # ssl.SSLSocket's does: servers drain a half-closed connection that way before close
    # (gunicorn's close_graceful), which keeps the kernel from answering late bytes with RST.
    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self._sslobj is None:
            return super().recv(buflen, flags)
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv() on {type(self)}")
        return self.read(buflen)

    def recv_into(self, buffer, nbytes: int | None = None, flags: int = 0) -> int:
        if self._sslobj is None:
            return super().recv_into(buffer, nbytes or 0, flags)
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv_into() on {type(self)}")
        view = memoryview(buffer).cast("B")
        nbytes = nbytes or len(view)
        return self.read(nbytes, view[:nbytes])

    def send(self, data, flags: int = 0) -> int:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {type(self)}")
        if self._unsent:
            self._flush(self._deadline())        # raises SSLWantWriteError if still blocked
        return self.write(data)

    def sendall(self, data, flags: int = 0) -> None:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to sendall() on {type(self)}")
        sslobj = self._fast()
        if sslobj is not None and not self._outgoing.pending:
            if not isinstance(data, (bytes, bytearray)):
                data = memoryview(data).cast("B")
            try:
                records = sslobj._encrypt(data)
            except ssl.SSLError:
                self._flush_quietly()
                raise
            super().sendall(records)
            return
        view = memoryview(data).cast("B")
        while view:
            view = view[self.send(view, flags):]

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        return self._sendfile_use_send(file, offset, count)

    def recvfrom(self, *args, **kwargs):
        raise ValueError(f"recvfrom not allowed on instances of {type(self)}")

    def recvfrom_into(self, *args, **kwargs):
        raise ValueError(f"recvfrom_into not allowed on instances of {type(self)}")

    def sendto(self, *args, **kwargs):
        raise ValueError(f"sendto not allowed on instances of {type(self)}")

    def recvmsg(self, *args, **kwargs):
        raise NotImplementedError(f"recvmsg not allowed on instances of {type(self)}")

    def sendmsg(self, *args, **kwargs):
        raise NotImplementedError(f"sendmsg not allowed on instances of {type(self)}")

    def dup(self):
        raise NotImplementedError(f"Can't dup() {type(self).__name__} instances")

    def pending(self) -> int:
        return self._sslobj.pending() if self._sslobj else 0

    def unwrap(self) -> socket.socket:
        """close_notify both ways, then the plain socket (as ssl.SSLSocket.unwrap)."""
        self._run(self._sslobj.unwrap)
        self._sslobj = None
        return socket.socket(self.family, self.type, self.proto, fileno=self.detach())

    # --- connecting and accepting ---------------------------------------------------------------
    def connect(self, address) -> None:
        self._real_connect(address, False)

    def connect_ex(self, address) -> int:
        return self._real_connect(address, True)

    def _real_connect(self, address, connect_ex: bool):
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected MilagroSocket!")
        result = super().connect_ex(address) if connect_ex else super().connect(address)
        if result:
            return result
        self._connected = True
        self._start()
        if self.do_handshake_on_connect:
            self.do_handshake()
        return 0 if connect_ex else None

    def accept(self):
        sock, address = super().accept()
        return self._context.wrap_socket(sock, server_side=True,
                                         do_handshake_on_connect=self.do_handshake_on_connect,
                                         suppress_ragged_eofs=self.suppress_ragged_eofs), address

    def shutdown(self, how: int) -> None:
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self._send_close_notify()
        super().shutdown(how)

    def _send_close_notify(self) -> None:
        """close_notify on close: a peer reading to EOF can tell our end from a truncation."""
        sslobj, self._sslobj = self._sslobj, None
        if sslobj is None or sslobj._complete is None or sslobj._failure is not None:
            return
        try:
            sslobj.connection.close()
            data = self._unsent + sslobj.connection.data_to_send()
            super().send(data, socket.MSG_DONTWAIT)
        except (OSError, Exception):
            pass

    def _real_close(self, *args, **kwargs) -> None:
        self._send_close_notify()
        super()._real_close(*args, **kwargs)

    # --- what the handshake established ---------------------------------------------------
    @property
    def context(self):
        return self._context

    @property
    def session(self):
        return self._sslobj.session if self._sslobj else None

    @property
    def session_reused(self) -> bool:
        return bool(self._sslobj and self._sslobj.session_reused)

    def _check_connected(self):
        if self._sslobj is None:
            raise OSError(errno.ENOTCONN, "socket is not connected")
        return self._sslobj

    def getpeercert(self, binary_form: bool = False):
        return self._check_connected().getpeercert(binary_form)

    def cipher(self):
        return self._sslobj.cipher() if self._sslobj else None

    def shared_ciphers(self):
        return self._sslobj.shared_ciphers() if self._sslobj else None

    def version(self):
        return self._sslobj.version() if self._sslobj else None

    def compression(self):
        return None

    def selected_alpn_protocol(self):
        return self._sslobj.selected_alpn_protocol() if self._sslobj else None

    def selected_npn_protocol(self):
        return None

    def get_channel_binding(self, cb_type: str = "tls-unique"):
        return self._check_connected().get_channel_binding(cb_type)

    def verify_client_post_handshake(self):
        return self._check_connected().verify_client_post_handshake()
