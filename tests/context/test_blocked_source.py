"""The handshake never waits on the network: with the chain source blocked, one asyncio loop
still completes handshakes whose staples the Context's header chain knows, and answers one
whose block it does not know with certificate_unknown (46) at once; once the source answers
again, the background header sync catches up and the same client gets in.
"""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.context import Context
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party
from milagro_tls.trust import TrustEntry

from helpers.contexts import echo_stream, make_context
from helpers.handshake import make_world
from helpers.sources import DelegatingSource

CERTIFICATE_UNKNOWN = 46


class BlockableSource(DelegatingSource):
    """world.source, except that once armed every call waits until released: a chain backend
    that has stopped answering (a hung bitcoind, an Esplora behind a dead proxy)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self._armed = False
        self._released = threading.Event()
        self.blocked_calls = 0          # calls that are waiting right now or have waited
        self._lock = threading.Lock()

    def arm(self) -> None:
        self._released.clear()
        self._armed = True

    def release(self) -> None:
        self._armed = False
        self._released.set()

    def _gate(self) -> None:
        if self._armed:
            with self._lock:
                self.blocked_calls += 1
            self._released.wait()

    def tip(self):
        self._gate()
        return super().tip()

    def header(self, height):
        self._gate()
        return super().header(height)

    def block(self, block_hash):
        self._gate()
        return super().block(block_hash)

    def transaction(self, txid, block_hash=None):
        self._gate()
        return super().transaction(txid, block_hash)

    def tx_status(self, txid, block_hash=None):
        self._gate()
        return super().tx_status(txid, block_hash)


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


async def _handshake(port: int, context: Context) -> tuple[dict, tuple, float]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="echo.example")
    try:
        writer.write(b"ping")
        await writer.drain()
        assert await reader.readexactly(4) == b"ping"
        return writer.get_extra_info("peercert"), writer.get_extra_info("cipher"), time.monotonic() - started
    finally:
        writer.close()
        await writer.wait_closed()


class EchoService:
    def __init__(self) -> None:
        self.peers: list[str] = []          # the trust-store name of each client served

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peercert")["name"])
        await echo_stream(reader, writer)


def test_blocked_source_never_stalls_a_handshake(world, tmp_path):
    source = BlockableSource(world.source)
    server = Context(identity=world.identities["echo.example"], trust=world.trust("alice"), chain=source,
                     headers=":memory:", sync_interval=3600)
    server.sync.min_gap = 0.0          # catch-ups run as soon as asked: the test need not wait 2 s
    known_height = server.headers.tip()[0]
    late = Party.create(tmp_path / "home", world.source, role="pat", name="late-client")
    server.trust.add(TrustEntry.from_json(late.trust_entry()))
    assert world.source.tip().height > known_height           # the late anchor's block is past our chain
    clients = {kind: make_context(world, identity="alice", trust=("echo.example",), suites=kind)
               for kind in ("ecdh", "yak")}
    late_client = Context(identity=LocalIdentity.from_party(late, world.source), trust=world.trust("echo.example"),
                          chain=world.source, headers=":memory:")
    service = EchoService()

    async def main():
        listener = await asyncio.start_server(service.handle, "127.0.0.1", 0, ssl=server)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            source.arm()
            server.sync.request()
            # The header sync thread is now stuck inside the source, and stays stuck.
            await asyncio.to_thread(_wait_for, lambda: source.blocked_calls >= 1)

            known = await asyncio.gather(*(_handshake(port, c) for c in clients.values()))

            started = time.monotonic()
            with pytest.raises(MilagroSSLError) as refused:
                await _handshake(port, late_client)
            refused_after = time.monotonic() - started
            still_blocked = source.blocked_calls >= 1 and not source._released.is_set()

            source.release()
            await asyncio.to_thread(_wait_for, lambda: server.headers.tip()[0] >= world.source.tip().height)
            admitted = await _handshake(port, late_client)
            return known, refused.value, refused_after, still_blocked, admitted

    try:
        known, refusal, refused_after, still_blocked, admitted = asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        source.release()
        for context in (server, late_client, *clients.values()):
            context.close()

    assert still_blocked
    for kind, (peer, cipher, elapsed) in zip(clients, known):
        assert cipher[0].startswith({"ecdh": "ECDH-BTC", "yak": "YAK-BTC"}[kind])
        assert peer["name"] == "echo.example" and elapsed < 2.0
    assert refusal.alert == CERTIFICATE_UNKNOWN and not refusal.alert_sent
    assert refused_after < 1.0            # at once, not after a lookup or asyncio's 60 s handshake timeout
    peer, cipher, _ = admitted
    assert peer["name"] == "echo.example"
    assert service.peers == ["alice", "alice", "late-client"]


class CountingSource(DelegatingSource):
    """world.source, counting every call made of it (only the header sync thread makes any)."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.calls = 0

    def tip(self):
        self.calls += 1
        return super().tip()

    def header(self, height):
        self.calls += 1
        return super().header(height)


def test_a_burst_of_unverifiable_client_hellos_costs_one_catch_up(world, tmp_path):
    """Clients anchored on another chain (their block is unknown here, and stays unknown) each
    get certificate_unknown at once, and the whole burst asks the source for one header sync."""
    elsewhere = make_world(tmp_path, [("stranger.example", "pat")])
    source = CountingSource(world.source)
    server = Context(identity=world.identities["echo.example"], trust=world.trust("alice"), chain=source,
                     headers=":memory:", sync_interval=3600)
    server.sync.min_gap = 1.0
    stranger = Context(identity=elsewhere.identities["stranger.example"], trust=world.trust("echo.example"),
                       chain=world.source, headers=":memory:")

    async def refused(port: int) -> int:
        with pytest.raises(MilagroSSLError) as error:
            await _handshake(port, stranger)
        return error.value.alert

    async def main():
        listener = await asyncio.start_server(EchoService().handle, "127.0.0.1", 0, ssl=server)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            before = server.sync.syncs, source.calls
            started = time.monotonic()
            alerts = await asyncio.gather(*(refused(port) for _ in range(20)))
            elapsed = time.monotonic() - started
            await asyncio.sleep(1.5)                   # longer than min_gap: the catch-up has run
            return alerts, elapsed, server.sync.syncs - before[0], source.calls - before[1]

    try:
        alerts, elapsed, syncs, calls = asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        for context in (server, stranger):
            context.close()
        elsewhere.source.close()
    assert alerts == [CERTIFICATE_UNKNOWN] * 20 and elapsed < 5.0
    assert syncs == 1                                  # not one per ClientHello
    assert 0 < calls <= 3                              # that sync: tip and the fork-point header
