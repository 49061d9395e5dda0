"""The NSS key log: ``Context(keylog_filename=...)``, ``ctx.keylog_filename`` and ``SSLKEYLOGFILE``.

Each completed handshake appends ``CLIENT_RANDOM <client random> <master secret>`` whose values
are the connection's own, on both ends, resumptions included; nothing is written unless asked.
"""
from __future__ import annotations

import logging
import os
import socket
import stat
import threading

import pytest

from milagro_tls.capture.keylog import HEADER, KeyLog, parse_keylog

from helpers.contexts import echo_server, make_context


def _lines(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def _connect(client, port: int, *, session=None):
    tls = client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="echo.example", session=session)
    tls.sendall(b"ping")
    assert tls.recv(10) == b"ping"
    return tls


def _recording_echo(connections: list):
    """An echo handler that keeps each server-side sans-IO connection for the test to read."""
    def handler(conn):
        connections.append(conn._sslobj.connection)
        while data := conn.recv(65536):
            conn.sendall(data)
    return handler


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_each_end_logs_its_connections_client_random_and_master_secret(world, tmp_path, suites):
    client_log, server_log = tmp_path / "client.keylog", tmp_path / "server.keylog"
    server = make_context(world, identity="echo.example", trust=("alice",), keylog_filename=server_log)
    client = make_context(world, identity="alice", trust=("echo.example",), suites=suites,
                          keylog_filename=str(client_log))
    server_connections: list = []
    with server, client, echo_server(server, handler=_recording_echo(server_connections)) as (port, errors):
        with _connect(client, port) as tls:
            connection = tls._sslobj.connection
            assert tls.cipher()[0].startswith(suites.upper())
    assert not errors
    expected = f"CLIENT_RANDOM {connection.client_random.hex()} {connection.master_secret.hex()}"
    assert _lines(client_log) == [expected]
    assert _lines(server_log) == [expected]
    assert server_connections[0].master_secret == connection.master_secret
    assert client_log.read_text().startswith(HEADER)


def test_key_log_is_created_mode_0600(world, tmp_path):
    path = tmp_path / "new.keylog"
    old_umask = os.umask(0o022)                # the usual umask would allow 0644
    try:
        with make_context(world, identity="alice", trust=("echo.example",), keylog_filename=path):
            pass
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_resumed_session_is_logged_with_its_own_client_random(world, tmp_path):
    path = tmp_path / "shared.keylog"
    server = make_context(world, identity="echo.example", trust=("alice",), keylog_filename=path)
    client = make_context(world, identity="alice", trust=("echo.example",), keylog_filename=path)
    with server, client, echo_server(server) as (port, errors):
        with _connect(client, port) as first:
            session, full = first.session, first._sslobj.connection
        with _connect(client, port, session=session) as second:
            assert second.session_reused
            resumed = second._sslobj.connection
    secrets = parse_keylog(path.read_text())
    assert len(_lines(path)) == 4                      # two handshakes, each logged by both ends
    assert secrets == {full.client_random: full.master_secret, resumed.client_random: full.master_secret}


def test_nothing_is_written_unless_asked(world, tmp_path, monkeypatch):
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    server = make_context(world, identity="echo.example", trust=("alice",))
    client = make_context(world, identity="alice", trust=("echo.example",))
    with server, client, echo_server(server) as (port, errors):
        with _connect(client, port):
            pass
    assert client.keylog_filename is None and server.keylog_filename is None
    assert list(tmp_path.iterdir()) == []


def test_sslkeylogfile_environment_variable_turns_it_on_with_a_warning(world, tmp_path, monkeypatch, caplog):
    path = tmp_path / "from-env.keylog"
    monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    server = make_context(world, identity="echo.example", trust=("alice",), keylog_filename="")
    with caplog.at_level(logging.WARNING, logger="milagro_tls.context"):
        client = make_context(world, identity="alice", trust=("echo.example",))
    assert client.keylog_filename == str(path)
    assert any("KEY LOG ON" in record.getMessage() and record.levelno == logging.WARNING
               for record in caplog.records)
    with server, client, echo_server(server) as (port, errors):
        with _connect(client, port) as tls:
            connection = tls._sslobj.connection
    assert parse_keylog(path.read_text()) == {connection.client_random: connection.master_secret}
    assert server.keylog_filename is None              # the server here: keylog_filename="" is off


def test_keylog_filename_attribute_switches_logging_on_and_off(world, tmp_path):
    path = tmp_path / "attr.keylog"
    server = make_context(world, identity="echo.example", trust=("alice",))
    client = make_context(world, identity="alice", trust=("echo.example",))
    with server, client, echo_server(server) as (port, errors):
        client.keylog_filename = path
        assert client.keylog_filename == str(path)
        with _connect(client, port):
            pass
        client.keylog_filename = None
        with _connect(client, port):
            pass
    assert len(_lines(path)) == 1


def test_concurrent_writers_never_interleave_lines(tmp_path):
    path = tmp_path / "busy.keylog"
    logs = [KeyLog(path) for _ in range(4)]

    def write(index: int) -> None:
        for n in range(200):
            logs[index].write(bytes([index]) * 31 + bytes([n]), bytes([n]) * 48)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = _lines(path)
    assert len(lines) == 800 and len(parse_keylog(path.read_text())) == 800
    assert all(len(line) == len("CLIENT_RANDOM ") + 64 + 1 + 96 for line in lines)


def test_the_warning_comes_once_per_key_log_file_not_once_per_context(world, tmp_path, caplog):
    """The demo's PATs share one key log: one warning, however many contexts write to it."""
    shared, other = tmp_path / "pats.keylog", tmp_path / "other.keylog"
    with caplog.at_level(logging.WARNING, logger="milagro_tls.context"):
        contexts = [make_context(world, identity="alice", trust=("echo.example",), keylog_filename=shared)
                    for _ in range(3)]
        contexts.append(make_context(world, identity="alice", trust=("echo.example",), keylog_filename=other))
    warned = [record.getMessage() for record in caplog.records if "KEY LOG ON" in record.getMessage()]
    assert len(warned) == 2
    assert str(shared) in warned[0] and str(other) in warned[1]
    assert all(context.keylog_filename for context in contexts)   # every context still logs
    for context in contexts:
        context.close()
