"""roles.serving: a role's WSGI app under gunicorn (two gthread workers) in a subprocess, with
the Context built in the master, the app built in each worker after the fork, the listening
line on stdout, a graceful SIGTERM; and the chain server a regtest directory needs, found or
started (and stopped with the role, SIGKILL included)."""
from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.server import ChainServer
from milagro_tls.chain.spec import server_info
from milagro_tls.identity.party import Party
from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.serving import ServeConfig, ServingError, chain_service, load_app

from helpers.contexts import make_context
from helpers.nodes import LockedNode
from helpers.role_process import run_role, standard_get, wait_for

APP = '''
import json, os
from pathlib import Path


def create_app(tag, markers):
    markers = Path(markers)
    (markers / f"started-{os.getpid()}").write_text(tag)

    def app(environ, start_response):
        tls = environ["gunicorn.socket"]
        peer = tls.getpeercert()
        body = json.dumps({"tag": tag, "pid": os.getpid(), "cipher": tls.cipher()[0],
                           "peer": peer.get("name") if peer and "name" in peer else None}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    app.milagro_shutdown = lambda: (markers / f"stopped-{os.getpid()}").write_text(tag)
    return app
'''

RUNNER = '''
import json, os, sys
from milagro_tls import Context
from milagro_tls.roles.serving import ServeConfig, chain_service, serve

settings = json.loads(os.environ["ROLE_TEST"])
with chain_service(settings["chain"]):
    context = Context(identity=settings["identity"], home=settings["home"], chain=settings["chain"],
                      trust=settings.get("trust"), headers=":memory:", sync_interval=0.5)
    serve(ServeConfig(app="app:create_app", app_kwargs={"tag": "t1", "markers": settings["markers"]},
                      certfile=settings["certfile"], keyfile=settings["keyfile"], workers=2, threads=2,
                      announce={"role": "test"}), context)
'''


def test_gunicorn_workers_serve_the_role_app_and_stop_gracefully(world, tmp_path):
    chain_dir = Path(world.source.node.datadir)
    cert, key = RoleHome(tmp_path / "home", "service", "echo.example").fallback_certificate()
    trust = tmp_path / "trust.json"
    world.trust("alice").save(trust)
    with ChainServer(LockedNode(world.source), chain_dir).start():
        settings = {"chain": f"regtest://{chain_dir}", "home": str(world.home), "identity": "echo.example",
                    "certfile": str(cert), "keyfile": str(key), "trust": str(trust)}
        with run_role(tmp_path, settings, APP, RUNNER) as role:
            assert role.line == {"listening": role.port, "pid": role.process.pid, "workers": 2, "role": "test",
                                 "url": f"https://127.0.0.1:{role.port}"}
            standard = standard_get(cert, role.port)
            client = make_context(world, identity="alice", trust=("echo.example",))
            try:
                raw = socket.create_connection(("127.0.0.1", role.port), timeout=10)
                with client.wrap_socket(raw, server_hostname="echo.example") as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    response = b""
                    while chunk := tls.recv(65536):
                        response += chunk
                    assert tls.getpeercert()["name"] == "echo.example"
            finally:
                client.close()
            ours = json.loads(response.partition(b"\r\n\r\n")[2])
            markers = tmp_path / "markers"
            started = wait_for(lambda: sorted(p.name for p in markers.glob("started-*")) if
                               len(list(markers.glob("started-*"))) == 2 else None, what="two workers")
            role.process.send_signal(signal.SIGTERM)
            assert role.process.wait(30) == 0, role.log.read_text()
    assert standard["tag"] == "t1" and standard["peer"] is None and not standard["cipher"].startswith("ECDH-BTC")
    assert ours["cipher"].startswith(("ECDH-BTC", "YAK-BTC")) and ours["peer"] == "alice"
    worker_pids = {int(name.split("-")[1]) for name in started}
    # Built in the workers, after the fork: never in the master.
    assert role.process.pid not in worker_pids and {standard["pid"], ours["pid"]} <= worker_pids
    assert sorted(p.name for p in markers.glob("stopped-*")) == sorted(f"stopped-{pid}" for pid in worker_pids)


@pytest.fixture(scope="module")
def own_chain(tmp_path_factory):
    """A regtest directory no process holds open, with an anchored service on it."""
    base = tmp_path_factory.mktemp("own-chain")
    source = EmbeddedSource.open(base / "chain")
    try:
        source.mine(110)
        Party.create(base / "home", source, role="service", name="svc.example")
    finally:
        source.close()
    return base


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_a_role_starts_the_chain_server_its_workers_need_and_it_ends_with_the_role(own_chain, tmp_path, stop):
    chain_dir = own_chain / "chain"
    cert, key = RoleHome(tmp_path / "home", "service", "svc.example").fallback_certificate()
    assert server_info(chain_dir) is None
    settings = {"chain": f"regtest://{chain_dir}", "home": str(own_chain / "home"), "identity": "svc.example",
                "certfile": str(cert), "keyfile": str(key)}
    with run_role(tmp_path, settings, APP, RUNNER) as role:
        info = server_info(chain_dir)
        assert info is not None and _parent_of(info["pid"]) == role.process.pid
        assert standard_get(cert, role.port)["tag"] == "t1"
        if stop == "sigterm":
            role.process.send_signal(signal.SIGTERM)
            assert role.process.wait(30) == 0, role.log.read_text()
        else:
            role.process.kill()
            role.process.wait()
        wait_for(lambda: not _alive(info["pid"]), what="the chain server to stop")
    wait_for(lambda: server_info(chain_dir) is None, what="server.json to go")


def test_chain_service_uses_a_running_server_and_passes_other_specs(world, tmp_path):
    chain_dir = Path(world.source.node.datadir)
    with ChainServer(LockedNode(world.source), chain_dir).start() as server:
        with chain_service(f"regtest://{chain_dir}") as info:
            assert info["port"] == server.port and info["pid"] == os.getpid()
    with chain_service("esplora+https://blockstream.info/api") as info:
        assert info is None
    with pytest.raises(ServingError, match="no regtest chain at"):
        with chain_service(f"regtest://{tmp_path / 'nothing'}"):
            pass


def test_load_app_refuses_bad_import_strings():
    with pytest.raises(ServingError, match="is not 'module:factory'"):
        load_app("json", {})
    with pytest.raises(ServingError, match="is not a callable app factory"):
        load_app("json:nothing", {})
    assert load_app("json:dumps", {"obj": [1]}) == "[1]"


def test_serve_config_needs_a_certificate():
    from milagro_tls.roles.serving import RoleApplication
    with pytest.raises(ServingError, match="certfile and keyfile are required"):
        RoleApplication(ServeConfig(app="app:create_app"), context=None)
