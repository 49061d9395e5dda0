"""gunicorn, unmodified, serving a WSGI app in a subprocess through its ``ssl_context`` server
hook: the config file builds a Context and sets ``ssl_context = ctx.gunicorn_ssl_context()``,
with ``certfile``/``keyfile`` configured (gunicorn calls the hook only then). Our client gets a
Bitcoin suite; a standard Python-ssl client, trusting the test CA, gets the fallback X.509
certificate from the same server.

The subprocess needs the server's identity and a chain it can reach. The identity comes from
the world's party home (``Context(identity="echo.example", home=...)``). The chain: the world's
node is open in this process (its directory is locked), so the test serves it with a
``ChainServer`` in a thread and the subprocess uses ``regtest://DIR``, which finds that
running server through DIR/server.json and its cookie. (Without a running server,
``regtest://DIR`` would wait for the lock and fail.) The server's handler threads reach the
node under the EmbeddedSource's own lock: the node is not thread-safe.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from milagro_tls.chain.server import ChainServer

from helpers.contexts import make_context
from helpers.https import client_context
from helpers.nodes import LockedNode
from helpers.pki import make_ca_and_leaf

import gunicorn  # noqa: F401,E402  (a test dependency: missing, this module fails, it never skips)

SUITE_PREFIX = {"ecdh": "ECDH-BTC", "yak": "YAK-BTC"}

APP = '''
import json, os


def app(environ, start_response):
    tls = environ["gunicorn.socket"]               # the socket the Context wrapped
    peer = tls.getpeercert()
    sync = tls.context.sync
    body = json.dumps({
        "cipher": list(tls.cipher()), "version": tls.version(),
        "peer": peer and {"name": peer.get("name"), "locator": peer.get("locator")},
        "scheme": environ["wsgi.url_scheme"], "worker_pid": os.getpid(), "client_port": environ["REMOTE_PORT"],
        "header_sync_running": bool(sync and sync._thread and sync._thread.is_alive()),
        "header_tip": tls.context.headers.tip()[0],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
'''

CONFIG = '''
import json, os

from milagro_tls import Context

_settings = json.loads(os.environ["MILAGRO_GUNICORN_TEST"])

bind = "127.0.0.1:0"
workers = 1
worker_class = _settings["worker_class"]
certfile = _settings["certfile"]          # the fallback certificate; also what makes gunicorn use TLS
keyfile = _settings["keyfile"]
# sync_interval: short, so that the test sees a worker's header chain follow a new block soon.
_context = Context(identity="echo.example", home=_settings["home"], chain=_settings["chain"],
                   trust=_settings["trust"], headers=":memory:", sync_interval=0.2)
ssl_context = _context.gunicorn_ssl_context()
'''



@contextlib.contextmanager
def gunicorn_server(tmp_path: Path, settings: dict):
    """Start gunicorn with the config above; yield its port; always stop it (SIGTERM, then kill)."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "gunicorn_conf.py").write_text(CONFIG)
    log_path = tmp_path / "gunicorn.log"
    env = {**os.environ, "MILAGRO_GUNICORN_TEST": json.dumps(settings), "PYTHONPATH": str(tmp_path)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "gunicorn_conf.py"),
                                    "--chdir", str(tmp_path), "app:app"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(rb"Listening at: https://127\.0\.0\.1:(\d+)", log_path.read_bytes())):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield int(found.group(1)), log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def two_requests_on_one_connection(world, port: int) -> list[dict]:
    """http.client over the Context: gthread keeps the connection (and its TLS session) between
    requests, waiting for the next one on a non-blocking socket; sync closes and we reconnect."""
    with client_context(world) as context:
        connection = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
        try:
            views = []
            for _ in range(2):
                connection.request("GET", "/")
                response = connection.getresponse()
                assert response.status == 200
                views.append(json.loads(response.read()))
            return views
        finally:
            connection.close()


def get(context: ssl.SSLContext, port: int, server_hostname: str) -> tuple[dict, tuple, object]:
    """One HTTP/1.1 request over a connection the given context wraps; returns the app's JSON,
    the client's cipher() and getpeercert()."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
        cipher, peer = tls.cipher(), tls.getpeercert()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    return json.loads(body), cipher, peer


@pytest.fixture
def served_world(world, tmp_path):
    """The world's chain, served on loopback for the subprocess, and the files it reads."""
    chain_dir = Path(world.source.node.datadir)
    server = ChainServer(LockedNode(world.source), chain_dir).start()
    ca, certfile, keyfile = make_ca_and_leaf(tmp_path, "localhost")
    trust = tmp_path / "trust.json"
    world.trust("alice").save(trust)
    try:
        yield {"home": str(world.home), "chain": f"regtest://{chain_dir}", "trust": str(trust),
               "certfile": str(certfile), "keyfile": str(keyfile)}, ca
    finally:
        server.close()


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_serves_bitcoin_suites_and_the_fallback_certificate(world, served_world, tmp_path, worker_class):
    settings, ca = served_world
    settings = {**settings, "worker_class": worker_class}
    clients = {kind: make_context(world, identity="alice", trust=("echo.example",), suites=kind)
               for kind in ("ecdh", "yak")}
    standard = ssl.create_default_context(cafile=str(ca))
    try:
        with gunicorn_server(tmp_path, settings) as (port, log_path):
            ours = {kind: get(context, port, "echo.example") for kind, context in clients.items()}
            theirs = get(standard, port, "localhost")
            kept_alive = two_requests_on_one_connection(world, port)
            # The worker keeps its header chain current: a block mined now reaches it.
            world.source.mine(1)
            deadline = time.monotonic() + 10
            while (followed := get(standard, port, "localhost")[0])["header_tip"] < world.source.tip().height:
                assert time.monotonic() < deadline, "the worker's header chain did not follow the source"
                time.sleep(0.2)
    finally:
        for context in clients.values():
            context.close()

    for kind, (app_view, cipher, peer) in ours.items():
        assert cipher[0].startswith(SUITE_PREFIX[kind]) and app_view["cipher"] == list(cipher)
        assert peer["name"] == "echo.example"
        assert peer["locator"] == world.parties["echo.example"].locator.to_json()
        assert app_view["peer"] == {"name": "alice", "locator": world.parties["alice"].locator.to_json()}
        assert app_view["scheme"] == "https"

    app_view, cipher, peer = theirs
    assert app_view["cipher"] == list(cipher) and app_view["peer"] is None      # no client certificate
    assert peer["subjectAltName"] == (("DNS", "localhost"),)                    # the fallback certificate
    assert cipher[1] in ("TLSv1.2", "TLSv1.3")
    # The Context was built in gunicorn's master (config files load there), then forked.
    assert {view["worker_pid"] for view, _, _ in (*ours.values(), theirs)} == {ours["ecdh"][0]["worker_pid"]}
    # It was built in the master, but the worker runs its own header sync (headersync.py).
    assert app_view["header_sync_running"] and followed["worker_pid"] == app_view["worker_pid"]
    assert [view["peer"]["name"] for view in kept_alive] == ["alice", "alice"]
    same_connection = kept_alive[0]["client_port"] == kept_alive[1]["client_port"]
    assert same_connection == (worker_class == "gthread")      # the sync worker serves one request each
