"""The chain source goes away in the middle of a handshake.

The server's Context uses a real network source (EsploraSource over HTTP to a ChainServer that
serves the world's chain on loopback). A client connects; at the moment the server asks the
source about the client (the revocation check of a full handshake, the only source call a
handshake makes) the ChainServer is shut down, so the question meets a dead socket. The client
gets a clean fatal alert (bad_certificate: revocation status unknown) well inside the revocation
timeout, the server does not hang or crash, a client whose check needs no source (server-only
mode) is served meanwhile, and once the source is back on the same port the same client is
admitted again."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.chain.esplora import EsploraSource
from milagro_tls.chain.server import ChainServer
from milagro_tls.context import Context

from helpers.contexts import echo_stream, make_context
from helpers.nodes import LockedNode
from helpers.sources import DelegatingSource

BAD_CERTIFICATE = 42
REVOCATION_TIMEOUT = 3.0


class GoesAwayMidHandshake(DelegatingSource):
    """The Esplora source, except that once armed, the first revocation question (asked while
    a handshake waits on it) first shuts the ChainServer down: the source vanishes mid-handshake."""

    def __init__(self, inner, stop) -> None:
        super().__init__(inner)
        self.stop = stop
        self.armed = False
        self.asked = 0

    def outspend_unverified(self, txid, vout):
        self.asked += 1
        if self.armed:
            self.armed = False
            self.stop()
        return super().outspend_unverified(txid, vout)


async def _handshake(port, context):
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="echo.example")
    try:
        writer.write(b"ping")
        await writer.drain()
        assert await reader.readexactly(4) == b"ping"
        return writer.get_extra_info("peercert")["name"], time.monotonic() - started
    finally:
        writer.close()
        await writer.wait_closed()


def test_source_gone_mid_handshake_gives_a_clean_alert_in_time_and_the_server_serves_on(world):
    chain_dir = Path(world.source.node.datadir)
    served = {"server": ChainServer(LockedNode(world.source), chain_dir).start()}
    port_of_source = served["server"].port
    stopped = threading.Event()

    def stop_source():
        served["server"].close()
        stopped.set()

    esplora = EsploraSource(served["server"].url, network=world.source.network, timeout=2.0)
    source = GoesAwayMidHandshake(esplora, stop_source)
    server = Context(identity=world.identities["echo.example"], trust=world.trust("alice"), chain=source,
                     headers=":memory:", sync_interval=3600, revocation_timeout=REVOCATION_TIMEOUT)
    client = make_context(world, identity="alice", trust=("echo.example",), check_revocation=False)
    anonymous = make_context(world, trust=("echo.example",), check_revocation=False)

    async def main():
        listener = await asyncio.start_server(echo_stream, "127.0.0.1", 0, ssl=server, ssl_handshake_timeout=10)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            before = await _handshake(port, client)                      # the source answers
            source.armed = True
            started = time.monotonic()
            try:
                await _handshake(port, client)
                refusal = None
            except MilagroSSLError as exc:
                refusal = exc
            refused_after = time.monotonic() - started
            during = await _handshake(port, anonymous)                  # source still down
            served["server"] = ChainServer(LockedNode(world.source), chain_dir, port=port_of_source).start()
            after = await _handshake(port, client)
            return before, refusal, refused_after, during, after

    try:
        before, refusal, refused_after, during, after = asyncio.run(asyncio.wait_for(main(), 45))
    finally:
        served["server"].close()
        esplora.close()
        for context in (server, client, anonymous):
            context.close()

    assert before[0] == "echo.example"
    assert stopped.is_set() and source.asked >= 3
    assert refusal is not None, "the handshake succeeded although the source was gone"
    assert refusal.alert == BAD_CERTIFICATE and not refusal.alert_sent          # the server's alert, received
    assert refused_after < REVOCATION_TIMEOUT + 1.0                               # no hang past the timeout
    assert during[0] == "echo.example"
    assert after[0] == "echo.example"
