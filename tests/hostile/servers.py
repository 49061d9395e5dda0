"""In-process servers over a Context for the hostile-peer tests: the threaded EchoServer
(what ``milagro serve echo`` runs) and an asyncio ``start_server(ssl=ctx)`` echo, each on its
own thread, each reporting what happened to every connection."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

from milagro_tls.context import Context
from milagro_tls.echo_server import EchoServer


def context_for(config) -> Context:
    """A server Context with exactly ``config``'s options (its header chain, no source)."""
    return Context(identity=config.identity, trust=config.trust, headers=config.headers, suites=config.suites,
                   min_confirmations=config.min_confirmations, max_staple_size=config.max_staple_size,
                   require_client_identity=config.require_client_identity,
                   allowed_client_roles=config.allowed_client_roles)


class SyncServer:
    kind = "sync"

    def __init__(self, context: Context, *, timeout: float, max_connections: int = 1024) -> None:
        self.context = context
        self.lines: list[str] = []
        self.server = EchoServer(context, timeout=timeout, max_connections=max_connections,
                                 report=self.lines.append)
        self.address = self.server.address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def line_for(self, port: int, timeout: float = 5.0) -> str:
        """The report line for the connection from our ``port`` (it may come just after EOF)."""
        prefix = f"127.0.0.1:{port} "
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line[len(prefix):]
            time.sleep(0.01)
        raise AssertionError(f"no report for port {port}: {self.lines[-5:]}")

    def open_connections(self) -> int:
        with self.server._lock:
            return len(self.server._open)

    def close(self) -> None:
        self.server.stop()
        self.thread.join(5)


class AsyncServer:
    """asyncio.start_server(ssl=context, ssl_handshake_timeout=timeout) on a loop of its own."""
    kind = "asyncio"

    def __init__(self, context: Context, *, timeout: float) -> None:
        self.context = context
        self.loop = asyncio.new_event_loop()
        self.errors: list[dict] = []
        self.loop.set_exception_handler(lambda loop, ctx: self.errors.append(ctx))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(asyncio.start_server(
            self._echo, "127.0.0.1", 0, ssl=context, ssl_handshake_timeout=timeout), self.loop).result(10)
        self.address = self.server.sockets[0].getsockname()[:2]

    async def _echo(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and self.server.is_serving()

    def open_connections(self) -> int:
        """Accepted transports not yet closed: asyncio.Server counts them (_attach/_detach);
        there is no public accessor, and this is what a slot is in asyncio."""
        return asyncio.run_coroutine_threadsafe(self._count(), self.loop).result(5)

    async def _count(self) -> int:
        return self.server._active_count

    def close(self) -> None:
        async def stop():
            self.server.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def serves(server, world, identity: str | None = "alice") -> float:
    """A well-behaved client (a Context over a socket) gets its echo; the seconds it took."""
    started = time.perf_counter()
    with Context(identity=world.identities[identity] if identity else None, trust=world.trust("echo.example"),
                 headers=server.context.headers) as client, client.wrap_socket(
            socket.create_connection(server.address, timeout=10), server_hostname="echo.example") as tls:
        tls.sendall(b"still serving")
        assert tls.recv(100) == b"still serving"
        assert tls.getpeercert()["name"] == "echo.example"
    return time.perf_counter() - started


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
