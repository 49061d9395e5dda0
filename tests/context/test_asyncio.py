"""Unmodified asyncio streams over the Context: ``start_server(ssl=ctx)`` and
``open_connection(ssl=ctx)`` on 127.0.0.1, and what asyncio's SSL transport delivers when a
handshake is refused (CPython gh-98078: it drops the outgoing BIO when ``do_handshake`` raises).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import socket

import pytest

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.adapters.sslobject import MilagroSSLObject
from milagro_tls.handshake import Connection, Role

from helpers.contexts import echo_server, echo_stream, make_context, raw_client_exchange
from helpers.tls_records import alert_record

SUITE_PREFIX = {"ecdh": "ECDH-BTC", "yak": "YAK-BTC"}


@pytest.fixture(scope="module")
def server_context(world):
    context = make_context(world, identity="echo.example", trust=("alice",))
    yield context
    context.close()


class EchoService:
    """An asyncio echo server; records what each accepted stream's transport reports."""

    def __init__(self) -> None:
        self.accepted: list[dict] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append({key: writer.get_extra_info(key) for key in ("peercert", "cipher", "ssl_object")})
        await echo_stream(reader, writer)


async def _exchange(reader, writer, payload: bytes) -> bytes:
    writer.write(payload)
    await writer.drain()
    received = b""
    while len(received) < len(payload):
        chunk = await reader.read(65536)
        assert chunk, "server closed early"
        received += chunk
    return received


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_start_server_and_open_connection_report_suite_and_peer(world, server_context, suites):
    client_context = make_context(world, identity="alice", trust=("echo.example",), suites=suites)
    service = EchoService()

    async def main():
        server = await asyncio.start_server(service.handle, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context,
                                                           server_hostname="echo.example")
            try:
                payload = bytes(range(256)) * 400          # several records each way
                assert await _exchange(reader, writer, payload) == payload
                return {key: writer.get_extra_info(key) for key in ("peercert", "cipher", "ssl_object")}
            finally:
                writer.close()
                await writer.wait_closed()

    with client_context:
        client_side = asyncio.run(asyncio.wait_for(main(), 10))
    name, version, _bits = client_side["cipher"]
    assert name.startswith(SUITE_PREFIX[suites]) and version == "TLSv1.2"
    assert client_side["peercert"]["name"] == "echo.example" and client_side["peercert"]["authenticated"]
    assert client_side["peercert"]["locator"] == world.parties["echo.example"].locator.to_json()
    assert isinstance(client_side["ssl_object"], MilagroSSLObject)
    assert client_side["ssl_object"].getpeercert() == client_side["peercert"]
    [server_side] = service.accepted
    assert server_side["cipher"] == client_side["cipher"]
    assert server_side["peercert"]["name"] == "alice"
    assert server_side["peercert"]["locator"] == world.parties["alice"].locator.to_json()


def test_many_connections_share_one_loop(world, server_context):
    client_context = make_context(world, identity=None, trust=("echo.example",))
    service = EchoService()

    async def one(port: int, index: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context,
                                                       server_hostname="echo.example")
        try:
            return await _exchange(reader, writer, b"%d" % index)
        finally:
            writer.close()
            await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(service.handle, "127.0.0.1", 0, ssl=server_context)
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await asyncio.gather(*(one(port, i) for i in range(10)))

    with client_context:
        assert asyncio.run(asyncio.wait_for(main(), 10)) == [b"%d" % i for i in range(10)]
    # An anonymous client: the server reports no peer, as ssl does without a client certificate.
    assert len(service.accepted) == 10 and all(a["peercert"] is None for a in service.accepted)


def test_asyncio_server_delivers_its_alert_to_a_refused_client(world, server_context):
    """The server refuses an anchored client it has not pinned: bad_certificate reaches the
    client on the wire, as plaintext (the client's keys were never confirmed)."""
    mallory = make_context(world, identity="mallory.example", trust=("echo.example",))

    async def main():
        server = await asyncio.start_server(EchoService().handle, "127.0.0.1", 0, ssl=server_context)
        async with server:
            port = server.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            wire = await loop.run_in_executor(None, functools.partial(
                raw_client_exchange, port, Connection(Role.CLIENT, mallory.config, server_hostname="echo.example"),
                until=alert_record(42)))
            with pytest.raises(MilagroSSLError) as refused:
                await loop.run_in_executor(None, _socket_client, mallory, port)
            return wire, refused.value

    with mallory:
        wire, error = asyncio.run(asyncio.wait_for(main(), 10))
    assert wire.endswith(alert_record(42))          # 15 03 03 00 02 02 2a
    assert error.alert == 42 and not error.alert_sent


def _socket_client(context, port: int) -> None:
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="echo.example") as tls:
        tls.sendall(b"hello")
        tls.recv(10)


def test_asyncio_client_refusing_a_server_delivers_its_alert(world, server_context, caplog):
    """asyncio's client refuses a server it has not pinned. The alert reaches the server, but
    the caller of open_connection gets a bare ConnectionResetError, not the verification error:
    to flush the alert the SSLObject must answer SSLWantReadError first, and asyncio (3.11 to
    3.13) reacts to the server's close during a handshake with ConnectionResetError without
    asking the SSLObject again. The reason is in the log. (Python ssl, in the same place,
    raises SSLCertVerificationError and sends no alert at all.)"""
    stranger = make_context(world, identity=None, trust=("idp.example",))

    async def main(port):
        return await asyncio.open_connection("127.0.0.1", port, ssl=stranger, server_hostname="echo.example")

    with stranger, echo_server(server_context) as (port, server_errors), \
            caplog.at_level(logging.INFO, logger="milagro_tls"):
        with pytest.raises(ConnectionResetError):
            asyncio.run(asyncio.wait_for(main(port), 10))
    assert [(type(e), e.alert, e.alert_sent) for e in server_errors] == [(MilagroSSLError, 42, False)]
    assert any("bad_certificate" in record.getMessage() and "not in the trust store" in record.getMessage()
               for record in caplog.records)


def test_starttls_upgrades_a_plain_stream_on_both_sides(world, server_context):
    """StreamWriter.start_tls (loop.start_tls) checks isinstance(ctx, ssl.SSLContext): the
    Context passes, and a plain connection is upgraded in place, as in SMTP's STARTTLS."""
    client_context = make_context(world, identity="alice", trust=("echo.example",), suites="yak")
    accepted = []

    async def handle(reader, writer):
        assert await reader.readline() == b"STARTTLS\r\n"
        writer.write(b"220 go ahead\r\n")
        await writer.drain()
        await writer.start_tls(server_context)
        accepted.append(writer.get_extra_info("peercert")["name"])
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"STARTTLS\r\n")
            assert await reader.readline() == b"220 go ahead\r\n"
            await writer.start_tls(client_context, server_hostname="echo.example")
            writer.write(b"now encrypted\r\n")
            reply = await reader.readline()
            view = writer.get_extra_info("cipher"), writer.get_extra_info("peercert")["name"]
            writer.close()
            return reply, view

    with client_context:
        reply, (cipher, name) = asyncio.run(asyncio.wait_for(main(), 10))
    assert reply == b"NOW ENCRYPTED\r\n"
    assert cipher[0].startswith("YAK-BTC") and name == "echo.example" and accepted == ["alice"]
