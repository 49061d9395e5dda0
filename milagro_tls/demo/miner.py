"""The demo's miner: a separate process that mines on the regtest chain through its chain server.

    python -m milagro_tls.demo.miner --chain-dir DIR [--every 1.0]

It announces ``{"miner": pid, "height": H}`` and then obeys one command per stdin line, answering
each with one JSON line:

    run      mine a block every ``--every`` seconds (while the demo waits for confirmations)
    auto     every ``--every`` seconds, mine a block only if the mempool holds a transaction
             (while PATs enrol: the tip moves only when a batch waits, so a thin client's
             header sync is rarely overtaken by a block)
    pause    stop mining on the clock
    mine N   mine N blocks now (on demand), answer {"height", "mined": N}
    quit     exit (so does EOF: the demo's end, or its death)

Blocks go to the node's miner key (the chain server's default), so mining is all it does; it
holds no key of any party.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path


class MinerControl:
    """The demo's side of the miner process (a processes.Child started with stdin)."""

    def __init__(self, child) -> None:
        self.child = child
        self._lock = threading.Lock()

    def _command(self, text: str, timeout: float = 60.0) -> dict:
        from .processes import DemoError, read_line
        with self._lock:
            try:
                self.child.process.stdin.write(f"{text}\n".encode())
                self.child.process.stdin.flush()
            except OSError:
                raise DemoError(f"the miner is gone (pid {self.child.pid}); its log:\n{self.child.log()}") from None
            line = read_line(self.child.process, timeout)
        if not line:
            raise DemoError(f"the miner did not answer {text!r}; its log:\n{self.child.log()}")
        return json.loads(line)

    def run(self) -> None:
        self._command("run")

    def auto(self) -> None:
        self._command("auto")

    def pause(self) -> None:
        self._command("pause")

    def mine(self, n: int = 1) -> int:
        return self._command(f"mine {n}")["height"]


def _say(obj) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    from ..chain.spec import open_regtest

    parser = argparse.ArgumentParser(prog="milagro-demo-miner")
    parser.add_argument("--chain-dir", type=Path, required=True)
    parser.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args(argv)
    source = open_regtest(args.chain_dir)
    lock = threading.Lock()                  # one RPC at a time on the source
    running = threading.Event()
    only_pending = threading.Event()
    done = threading.Event()

    def clock() -> None:
        while not done.wait(args.every):
            if running.is_set():
                with lock:
                    if not only_pending.is_set() or source.mempool_txids():
                        source.mine(1)

    with lock:
        _say({"miner": __import__("os").getpid(), "height": source.tip().height})
    threading.Thread(target=clock, daemon=True).start()
    try:
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command in ("run", "auto"):
                (only_pending.set if command == "auto" else only_pending.clear)()
                running.set()
                _say({"running": True, "only_pending": command == "auto"})
            elif command == "pause":
                running.clear()
                _say({"running": False})
            elif command == "mine":
                with lock:
                    source.mine(int(arg or 1))
                    height = source.tip().height
                _say({"height": height, "mined": int(arg or 1)})
            elif command == "quit":
                break
            else:
                _say({"error": f"unknown command {command!r}"})
    finally:
        done.set()
        with lock:
            source.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
