"""Contexts over the shared test world, and a threaded echo server on loopback."""
from __future__ import annotations

import contextlib
import socket
import threading

from milagro_tls.context import Context
from milagro_tls.handshake import NEED_DATA, ConnectionFailed


def make_context(world, *, identity=None, trust=(), **options) -> Context:
    return Context(identity=world.identities[identity] if identity else None, trust=world.trust(*trust),
                   chain=world.source, headers=":memory:", **options)


@contextlib.contextmanager
def echo_server(context: Context, *, handler=None):
    """A wrapped listening socket on 127.0.0.1 whose accepted connections echo until EOF.
    Yields (port, errors): errors collects what the server side raised, per connection."""
    listener = context.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    errors: list[BaseException] = []
    stop = threading.Event()
    workers: list[threading.Thread] = []

    def serve_one(conn):
        try:
            with conn:
                conn.settimeout(10)
                if handler is not None:
                    handler(conn)
                    return
                while data := conn.recv(65536):
                    conn.sendall(data)
        except Exception as exc:           # recorded for the test to inspect
            errors.append(exc)

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:         # accept() handshakes: a refused one raises here
                errors.append(exc)         # even if the test is already leaving: it may check this
                if stop.is_set():
                    return
                continue
            worker = threading.Thread(target=serve_one, args=(conn,), daemon=True)
            workers.append(worker)
            worker.start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield port, errors
    finally:
        stop.set()
        thread.join(2)
        for worker in workers:          # so that errors holds every connection's outcome
            worker.join(5)
        listener.close()


def raw_client_exchange(port: int, connection, *, until: bytes | None = None, timeout: float = 5.0) -> bytes:
    """Drive a sans-IO client Connection over a plain socket to 127.0.0.1:port and return every
    byte the server sent, up to EOF (or until ``until`` appears). A timeout means the server
    neither answered nor closed: the behaviour these tests exist to rule out."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        connection.start()
        failed = False
        while until is None or until not in received:
            if not failed and (outgoing := connection.data_to_send()):
                raw.sendall(outgoing)
            data = raw.recv(65536)
            if not data:
                break
            received += data
            if failed:
                continue
            connection.receive_data(data)
            while (event := connection.next_event()) is not NEED_DATA:
                if isinstance(event, ConnectionFailed):
                    failed = True
                    break
    return received


async def echo_stream(reader, writer) -> None:
    """asyncio's side of an echo server: what arrives goes back until EOF, then close."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
