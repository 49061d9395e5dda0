"""``milagro chain init|mine|serve|info`` and ``regtest://DIR``: the directory when no server runs,
the server (found through DIR/server.json) when one does, and a clean handover between the two."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import DataDirLocked
from milagro_tls.chain.hashes import to_display_hex
from milagro_tls.chain.network import Network
from milagro_tls.chain.node import RegtestNode
from milagro_tls.chain.rpc_client import RpcSource
from milagro_tls.chain.script_text import address
from milagro_tls.chain.spec import find_server, open_source, server_info
from milagro_tls.cli import main

OTHER = b"\x00\x14" + b"\x99" * 20
ENTRY = "import sys; from milagro_tls.cli import main; sys.exit(main(sys.argv[1:]))"   # the console script's


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


class Served:
    """``milagro chain serve`` in a child process (it takes the directory lock away from us)."""

    def __init__(self, chain_dir, *extra) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ENTRY, "chain", "serve", "--chain-dir", str(chain_dir),
                                      *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"server did not start: {self.proc.stderr.read()}")
        self.info = json.loads(line)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def chain_dir(tmp_path, capsys):
    d = tmp_path / "chain"
    assert run(capsys, "chain", "init", "--chain-dir", str(d))[0] == 0
    return d


def test_init_mine_info_on_the_directory(tmp_path, capsys):
    d = tmp_path / "c"
    code, out, _ = run(capsys, "chain", "init", "--chain-dir", str(d))
    assert code == 0 and out["height"] == 110 and out["via"] == "directory"
    assert run(capsys, "chain", "init", "--chain-dir", str(d))[1]["height"] == 110    # idempotent
    code, out, _ = run(capsys, "chain", "mine", "3", "--chain-dir", str(d))
    assert code == 0 and out["height"] == 113 and len(out["mined"]) == 3 and out["tip"] == out["mined"][-1]
    code, out, _ = run(capsys, "chain", "mine", "1", "--chain-dir", str(d), "--address",
                       address(OTHER, Network.REGTEST))
    with RegtestNode.open(d) as node:
        assert Block.parse(node.block(node.tip().block_hash)).txs[0].vout[0].script_pubkey.data == OTHER
    code, out, _ = run(capsys, "chain", "info", "--chain-dir", str(d))
    assert code == 0 and out["height"] == 114 and out["mempool_size"] == 0 and out["server"] is None
    with pytest.raises(SystemExit):
        main(["chain", "mine", "1", "--chain-dir", str(d), "--address", "bc1qnotregtest"])
    with pytest.raises(SystemExit):
        main(["chain", "info", "--chain-dir", str(tmp_path / "nothing-here")])
    capsys.readouterr()


def test_serve_and_redirect(chain_dir, capsys):
    served = Served(chain_dir)
    try:
        info = served.info
        assert info["host"] == "127.0.0.1" and info["pid"] == served.proc.pid and info["port"] > 0
        assert info["rpc_url"].startswith("http://127.0.0.1:") and info["chain_dir"] == str(chain_dir)
        assert server_info(chain_dir)["port"] == info["port"]
        assert httpx.get(info["rest_url"] + "/blocks/tip/height").text == "110"
        # The directory is the server's now: opening it directly is refused ...
        with pytest.raises(DataDirLocked):
            RegtestNode.open(chain_dir)
        with pytest.raises(DataDirLocked):
            EmbeddedSource.open(chain_dir)
        # ... so everything goes through the server instead.
        with open_source(f"regtest://{chain_dir}") as source:
            assert isinstance(source, RpcSource) and source.tip().height == 110
        code, out, _ = run(capsys, "chain", "mine", "2", "--chain-dir", str(chain_dir))
        assert code == 0 and out["height"] == 112 and out["via"] == "server"
        code, out, _ = run(capsys, "chain", "init", "--chain-dir", str(chain_dir))
        assert code == 0 and out["height"] == 112 and out["via"] == "server"
        with open_source(f"regtest://{chain_dir}") as source:
            txid = source.faucet(OTHER, 10_000)
        code, out, _ = run(capsys, "chain", "info", "--chain-dir", str(chain_dir))
        assert out["mempool_size"] == 1 and out["server"]["pid"] == served.proc.pid and out["via"] == "server"
        # A second server on the same directory fails cleanly.
        second = subprocess.run([sys.executable, "-c", ENTRY, "chain", "serve", "--chain-dir", str(chain_dir)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "DataDirLocked" in second.stderr
        assert served.proc.poll() is None
    finally:
        assert served.stop() == 0
    # Clean exit: files gone, lock released, the directory opens directly and kept everything.
    assert not (chain_dir / "server.json").exists() and not (chain_dir / ".cookie").exists()
    with open_source(f"regtest://{chain_dir}") as source:
        assert isinstance(source, EmbeddedSource) and source.tip().height == 112
        assert source.tx_status(txid).block_hash is None                   # the mempool was persisted
    code, out, _ = run(capsys, "chain", "info", "--chain-dir", str(chain_dir))
    assert out["via"] == "directory" and out["server"] is None and out["mempool_size"] == 1


def test_sigint_stops_the_server(chain_dir):
    served = Served(chain_dir, "--port", "0", "--verbose")
    port = served.info["port"]
    assert httpx.get(f"http://127.0.0.1:{port}/blocks/tip/hash").status_code == 200
    assert served.stop(signal.SIGINT) == 0
    assert find_server(chain_dir) is None and not (chain_dir / "server.json").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/blocks/tip/hash")


def test_stale_server_files_are_ignored(chain_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (chain_dir / "server.json").write_text(json.dumps({"host": "127.0.0.1", "port": 9, "pid": dead.pid}))
    assert server_info(chain_dir) is None
    with open_source(f"regtest://{chain_dir}") as source:
        assert isinstance(source, EmbeddedSource)
    # A live pid whose port does not answer (a hung or foreign process) is not a server either.
    (chain_dir / "server.json").write_text(json.dumps({"host": "127.0.0.1", "port": 9, "pid": os.getpid()}))
    assert server_info(chain_dir) is not None and find_server(chain_dir, timeout=2) is None
    with open_source(f"regtest://{chain_dir}") as source:
        assert isinstance(source, EmbeddedSource)
    (chain_dir / "server.json").write_text("{garbage")
    assert server_info(chain_dir) is None


def test_waits_for_a_briefly_held_lock(chain_dir):
    """Another command holding the directory (no server) is waited for, not failed at once."""
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from milagro_tls.chain.node import RegtestNode\n"
                               f"n = RegtestNode.open({str(chain_dir)!r}); print('held', flush=True)\n"
                               "time.sleep(1.5); n.close()"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with open_source(f"regtest://{chain_dir}") as source:
        assert isinstance(source, EmbeddedSource) and source.tip().height == 110
    assert time.monotonic() - started > 0.5
    holder.wait(timeout=30)
    holder.stdout.close()


def test_tip_hash_agrees_between_cli_and_server(chain_dir, capsys):
    served = Served(chain_dir)
    try:
        _, out, _ = run(capsys, "chain", "info", "--chain-dir", str(chain_dir))
        assert out["tip"] == httpx.get(served.info["rest_url"] + "/blocks/tip/hash").text
        with open_source(f"regtest://{chain_dir}") as source:
            assert to_display_hex(source.tip().block_hash) == out["tip"]
    finally:
        served.stop()
