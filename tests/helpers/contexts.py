"""Contexts over the shared test world, and a threaded echo server on loopback."""
from __future__ import annotations

import contextlib
import socket
import threading

from milagro_tls.context import Context


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
            except OSError as exc:
                if stop.is_set():
                    return
                errors.append(exc)
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
