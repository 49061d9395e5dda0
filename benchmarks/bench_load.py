"""Load: one asyncio server holding hundreds of concurrent milagro-tls connections, beside Python ssl.

    .venv/bin/python benchmarks/bench_load.py [--connections 500] [--client-procs 2] [--concurrency 16]
        [--exchange-seconds 5] [--message 1024] [--family ECDH-BTC|YAK-BTC] [--repeats 3]
        [--trace-connections 100]

Not part of ``make test``. Same stacks as benchmarks/bench_context.py (whose helpers this reuses):
ours is ``milagro_tls.Context`` on the embedded regtest chain of tests/helpers (make_world: server
"server.example" and client "client", both with stapled identities), one Bitcoin suite
(--family, AES-128-GCM), mutual authentication; the baseline is Python ``ssl``, TLS 1.2
ECDHE-ECDSA P-256 AES-128-GCM with a client certificate. Ratios are ours / ssl from this run
(the shared 2-vCPU VM's speed swings, so only same-run ratios mean much).

Where things run, identical for both stacks, every process forked fresh for each pass:
  server   one child process: ``asyncio.start_server(echo, ssl=ctx)``; only this process is
           measured (RSS from /proc, process CPU time, how many connections it holds);
  clients  --client-procs child processes, each one asyncio loop opening its share of the
           connections with at most --concurrency handshakes in flight, then holding them.
The server and the clients share the machine's 2 CPUs (and whatever else runs on them), so
handshakes/s is what the whole loopback system reaches; the CPU time per handshake (the server
process's, and the client processes' together) is the steadier figure.

A pass, per stack:
  1 ramp      the clients open --connections connections as fast as the concurrency allows and
              keep every one open: handshakes/s over the whole ramp and per block of 100 (does the
              rate hold as the server fills up?), server CPU ms per handshake;
  2 exchange  every held connection echoes --message bytes in a loop for --exchange-seconds (all
              at once): round trips/s, and every echo is checked;
  3 memory    server RSS before the ramp (after one warm-up connection, opened and closed),
              after the ramp and after the exchange; per connection = growth / connections.
              asyncio's SSL transport allocates a 256 KiB read buffer per connection whichever
              the stack (sslproto's max_size) but only touched pages count in RSS.
  4 trace     (fresh server, --trace-connections connections) tracemalloc in the server: Python
              heap bytes per held connection, and the top allocation sites of ours. tracemalloc
              slows everything down, so this pass is separate and reports no rates.
--repeats alternates the stacks' order; each figure is the median over the passes.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import ssl
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_context import (CLIENT, FAMILIES, SERVER, Child, Stacks, _command_loop,  # noqa: E402
                           _rss, _suite, make_world)

from milagro_tls.ciphersuites.registry import BulkCipher  # noqa: E402

STACKS = ("ssl", "milagro")
BLOCK = 100                      # connections per block of the ramp's rate profile


def _raise_fd_limit(needed: int) -> int:
    """Each connection costs the server one fd and a client process one; raise the soft limit
    to the hard one (inherited by every forked child) and refuse to start if still too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed: raise it (ulimit -Hn)")
    return soft


# --- the server (one child per pass) ------------------------------------------------------------
def _load_server(pipe, stacks: Stacks, stack: str) -> None:
    """asyncio echo server; the handler starts after the handshake, so it counts handshakes."""
    context = stacks.milagro_server() if stack == "milagro" else stacks.ssl_server_mutual
    loop = asyncio.new_event_loop()
    state = {"open": 0, "max_open": 0, "handshakes": 0, "errors": 0}

    async def handle(reader, writer):
        state["handshakes"] += 1
        state["open"] += 1
        state["max_open"] = max(state["max_open"], state["open"])
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            state["errors"] += 1
        finally:
            state["open"] -= 1
            writer.close()

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=4096))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    pipe.send(server.sockets[0].getsockname()[1])

    _command_loop(pipe, None, extra={"state": lambda: dict(state)})


def _server_process(pipe, stacks: Stacks, stack: str) -> None:
    """_load_server with the tracemalloc commands (bench_context's command loop has no hook
    for commands with arguments, so they are dispatched here first)."""
    class Pipe:
        """Routes ("trace", action) to the tracer and the rest to bench_context's loop."""

        def __init__(self, inner) -> None:
            self.inner = inner

        def send(self, value) -> None:
            self.inner.send(value)

        def recv(self):
            while True:
                command = self.inner.recv()
                if command[0] != "trace":
                    return command
                self.inner.send(_trace(command[1]))

    _load_server(Pipe(pipe), stacks, stack)


def _trace(action: str):
    if action == "start":
        tracemalloc.start(1)
        return tracemalloc.get_traced_memory()[0]
    if action == "now":
        return tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot()
    top = [(str(s.traceback[0]), s.size, s.count) for s in snapshot.statistics("lineno")[:8]]
    # asyncio's per-connection read buffer (sslproto, 256 KiB) is the one block this big
    big = sum(t.size for t in snapshot.traces if t.size >= 256 * 1024)
    ours = sum(t.size for t in snapshot.traces if "/milagro_tls/" in t.traceback[0].filename)
    tracemalloc.stop()
    return top, big, ours


# --- the clients (--client-procs children per pass) ----------------------------------------------
def _load_client(pipe, stacks: Stacks, stack: str, family) -> None:
    if stack == "milagro":
        context = stacks.milagro_client([_suite(family, BulkCipher.AES_128_GCM)], in_child=True)
    else:
        context = stacks.ssl_client(mutual=True)
    loop = asyncio.new_event_loop()
    held: list[tuple] = []
    while True:
        command, *args = pipe.recv()
        if command == "stop":
            return
        if command == "ramp":
            pipe.send(loop.run_until_complete(_ramp(context, held, *args)))
        elif command == "exchange":
            pipe.send(loop.run_until_complete(_exchange(held, *args)))
        elif command == "close":
            pipe.send(loop.run_until_complete(_close(held)))
        elif command == "rss":
            pipe.send(_rss())
        elif command == "cpu":
            pipe.send(time.process_time())


async def _ramp(context, held: list, port: int, count: int, concurrency: int):
    """Open ``count`` connections, at most ``concurrency`` handshakes at a time, keep them all.
    Returns (completion times (CLOCK_MONOTONIC, system-wide), failures, first failure)."""
    gate = asyncio.Semaphore(concurrency)
    done: list[float] = []
    failures: list[str] = []

    async def one():
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                               server_hostname=SERVER)
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            done.append(time.monotonic())
            held.append((reader, writer))

    await asyncio.gather(*(one() for _ in range(count)))
    return done, len(failures), failures[0] if failures else None


async def _exchange(held: list, seconds: float, size: int):
    """Every held connection echoes ``size`` bytes until the deadline; counts round trips."""
    deadline = time.monotonic() + seconds
    trips, bad = 0, 0

    async def one(reader, writer, seed):
        nonlocal trips, bad
        payload = seed.to_bytes(4, "big") * (size // 4)
        while time.monotonic() < deadline:
            writer.write(payload)
            await writer.drain()
            if await reader.readexactly(len(payload)) != payload:
                bad += 1
                return
            trips += 1

    start = time.monotonic()
    results = await asyncio.gather(*(one(r, w, i) for i, (r, w) in enumerate(held)), return_exceptions=True)
    errors = [f"{type(e).__name__}: {e}" for e in results if isinstance(e, BaseException)]
    return trips, time.monotonic() - start, bad, len(errors), errors[0] if errors else None


async def _close(held: list) -> int:
    for _, writer in held:
        writer.close()
    for _, writer in held:
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            pass
    count = len(held)
    held.clear()
    return count


# --- one pass --------------------------------------------------------------------------------
def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _wait_for(server: Child, key: str, value: int, timeout: float = 30.0) -> dict:
    """The server's handler runs a moment after the client's handshake returns: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        state = server.call("state")
        if state[key] == value or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def run_pass(stacks: Stacks, stack: str, args, family) -> dict:
    server = Child(_server_process, stacks, stack)
    clients = [Child(_load_client, stacks, stack, family) for _ in range(args.client_procs)]
    try:
        port = server.pipe.recv()
        # warm up: one connection opened, echoed and closed (lazy imports, caches, staple cache)
        clients[0].call("ramp", port, 1, 1)
        clients[0].call("exchange", 0.05, 64)
        clients[0].call("close")
        _wait_for(server, "open", 0)
        time.sleep(0.2)
        rss_before = server.call("rss")
        cpu_before = server.call("cpu")
        client_cpu = sum(client.call("cpu") for client in clients)
        shares = _shares(args.connections, args.client_procs)
        start = time.monotonic()
        for client, share in zip(clients, shares):
            client.pipe.send(("ramp", port, share, args.concurrency))
        ramp = [client.pipe.recv() for client in clients]
        times = sorted(t for done, _, _ in ramp for t in done)
        failures = sum(f for _, f, _ in ramp)
        first_failure = next((f for _, _, f in ramp if f), None)
        state = _wait_for(server, "open", len(times))
        cpu_ramp = server.call("cpu") - cpu_before
        client_cpu = sum(client.call("cpu") for client in clients) - client_cpu
        rss_ramp = server.call("rss")
        elapsed = times[-1] - start
        blocks = []
        previous = start
        for end in range(BLOCK, len(times) + 1, BLOCK):
            blocks.append(BLOCK / (times[end - 1] - previous))
            previous = times[end - 1]

        cpu_before = server.call("cpu")
        for client in clients:
            client.pipe.send(("exchange", args.exchange_seconds, args.message))
        exchange = [client.pipe.recv() for client in clients]
        cpu_exchange = server.call("cpu") - cpu_before
        trips = sum(e[0] for e in exchange)
        exchange_time = max(e[1] for e in exchange)
        bad = sum(e[2] for e in exchange)
        errors = sum(e[3] for e in exchange)
        first_error = next((e[4] for e in exchange if e[4]), None)
        rss_exchange = server.call("rss")
        held = server.call("state")["open"]
        client_rss = [client.call("rss") for client in clients]
        for client in clients:
            client.call("close")
        return {
            "handshakes": len(times), "failures": failures, "first_failure": first_failure,
            "max_open": state["max_open"], "held_after_exchange": held,
            "rate": len(times) / elapsed, "ramp_s": elapsed, "blocks": blocks,
            "cpu_ms": cpu_ramp / max(1, len(times)) * 1e3,
            "client_cpu_ms": client_cpu / max(1, len(times)) * 1e3,
            "trips": trips / exchange_time, "exchange_cpu_us": cpu_exchange / max(1, trips) * 1e6,
            "bad_echo": bad, "exchange_errors": errors, "first_error": first_error,
            "rss_before": rss_before, "rss_ramp": rss_ramp, "rss_exchange": rss_exchange,
            "per_conn_ramp": (rss_ramp - rss_before) / max(1, len(times)),
            "per_conn_exchange": (rss_exchange - rss_before) / max(1, len(times)),
            "client_rss": sum(client_rss),
        }
    finally:
        for child in (server, *clients):
            child.stop()


def trace_pass(stacks: Stacks, stack: str, count: int, family) -> dict:
    server = Child(_server_process, stacks, stack)
    client = Child(_load_client, stacks, stack, family)
    try:
        port = server.pipe.recv()
        client.call("ramp", port, 1, 1)
        client.call("exchange", 0.05, 64)
        client.call("close")
        _wait_for(server, "open", 0)
        before = server.call("trace", "start")
        done, failures, first = client.call("ramp", port, count, 8)
        client.call("exchange", 0.5, 1024)
        _wait_for(server, "open", len(done))
        after = server.call("trace", "now")
        top, big, ours = server.call("trace", "snapshot")
        client.call("close")
        n = max(1, len(done))
        return {"per_conn": (after - before) / n, "big_per_conn": big / n, "ours_per_conn": ours / n,
                "held": len(done), "failures": failures, "first_failure": first, "top": top}
    finally:
        server.stop()
        client.stop()


# --- main ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="handshakes in flight per client process")
    parser.add_argument("--exchange-seconds", type=float, default=5.0)
    parser.add_argument("--message", type=int, default=1024, help="bytes per echo (a multiple of 4)")
    parser.add_argument("--family", choices=sorted(FAMILIES.values()), default="ECDH-BTC")
    parser.add_argument("--repeats", type=int, default=3, help="passes per stack, order alternating")
    parser.add_argument("--trace-connections", type=int, default=100, help="0: no tracemalloc pass")
    args = parser.parse_args()
    family = next(kind for kind, name in FAMILIES.items() if name == args.family)
    limit = _raise_fd_limit(args.connections + 256)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        world = make_world(tmp, [(SERVER, "service"), (CLIENT, "pat")])
        try:
            # This process never starts a thread, so children can be forked at any time.
            stacks = Stacks(tmp, world)
            passes = {stack: [] for stack in STACKS}
            for index in range(args.repeats):
                for stack in (STACKS if index % 2 == 0 else STACKS[::-1]):
                    passes[stack].append(run_pass(stacks, stack, args, family))
            traces = ({stack: trace_pass(stacks, stack, args.trace_connections, family) for stack in STACKS}
                      if args.trace_connections else None)
        finally:
            world.source.close()
    _report(passes, traces, args, limit, started)


def _median(passes: list[dict], key: str) -> float:
    return statistics.median(p[key] for p in passes)


def _report(passes: dict, traces, args, limit: int, started: float) -> None:
    ours_label = f"milagro-tls {args.family} AES-128-GCM, mutual (stapled, regtest)"
    ssl_label = "ssl TLS 1.2 ECDHE-ECDSA P-256 AES-128-GCM, mutual"
    print(f"Load: one asyncio server process, {args.connections} concurrent connections on loopback; "
          f"{args.client_procs} client processes, {args.concurrency} handshakes in flight each; "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}; RLIMIT_NOFILE {limit}")
    print(f"ours: {ours_label}\nbase: {ssl_label}\nmedian of {args.repeats} passes per stack (fresh processes each)")
    for stack in STACKS:
        for p in passes[stack]:
            problems = [f"{k}={p[k]}" for k in ("failures", "bad_echo", "exchange_errors") if p[k]]
            if p["max_open"] < args.connections or problems:
                print(f"  !! {stack}: server held at most {p['max_open']}; {' '.join(problems)} "
                      f"{p['first_failure'] or ''} {p['first_error'] or ''}")
    rows = [
        ("server held at once (min over passes)", lambda s: min(p["max_open"] for p in passes[s]), "{:.0f}"),
        ("still held after the exchange (min)", lambda s: min(p["held_after_exchange"] for p in passes[s]), "{:.0f}"),
        ("ramp: handshakes/s (whole ramp)", lambda s: _median(passes[s], "rate"), "{:.0f}"),
        (f"ramp: handshakes/s first {BLOCK}", lambda s: statistics.median(p["blocks"][0] for p in passes[s]), "{:.0f}"),
        (f"ramp: handshakes/s last {BLOCK}", lambda s: statistics.median(p["blocks"][-1] for p in passes[s]), "{:.0f}"),
        ("ramp: server CPU ms per handshake", lambda s: _median(passes[s], "cpu_ms"), "{:.2f}"),
        ("ramp: clients' CPU ms per handshake", lambda s: _median(passes[s], "client_cpu_ms"), "{:.2f}"),
        (f"exchange: {args.message} B echoes/s, all at once", lambda s: _median(passes[s], "trips"), "{:.0f}"),
        ("exchange: server CPU us per echo", lambda s: _median(passes[s], "exchange_cpu_us"), "{:.0f}"),
        ("server RSS before, MiB", lambda s: _median(passes[s], "rss_before") / 2**20, "{:.1f}"),
        ("server RSS after the ramp, MiB", lambda s: _median(passes[s], "rss_ramp") / 2**20, "{:.1f}"),
        ("server RSS after the exchange, MiB", lambda s: _median(passes[s], "rss_exchange") / 2**20, "{:.1f}"),
        ("server RSS per connection, ramp, KiB", lambda s: _median(passes[s], "per_conn_ramp") / 1024, "{:.1f}"),
        ("server RSS per connection, +exchange, KiB", lambda s: _median(passes[s], "per_conn_exchange") / 1024,
         "{:.1f}"),
        ("clients' RSS (all processes), MiB", lambda s: _median(passes[s], "client_rss") / 2**20, "{:.1f}"),
    ]
    if traces:
        rows.append((f"server Python heap per connection (tracemalloc, {args.trace_connections}), KiB",
                     lambda s: traces[s]["per_conn"] / 1024, "{:.1f}"))
        rows.append(("  of which asyncio's read buffers (>= 256 KiB blocks), KiB",
                     lambda s: traces[s]["big_per_conn"] / 1024, "{:.1f}"))
        rows.append(("  the rest, KiB", lambda s: (traces[s]["per_conn"] - traces[s]["big_per_conn"]) / 1024,
                     "{:.1f}"))
        rows.append(("  allocated in milagro_tls/ code, KiB", lambda s: traces[s]["ours_per_conn"] / 1024, "{:.1f}"))
    width = max(len(r[0]) for r in rows)
    print(f"\n   {'':{width}} {'ssl':>9} {'ours':>9} {'ours/ssl':>9}")
    for label, get, fmt in rows:
        base, ours = get("ssl"), get("milagro")
        ratio = f"{ours / base:8.2f}x" if base else "      n/a"
        print(f"   {label:{width}} {fmt.format(base):>9} {fmt.format(ours):>9} {ratio}")
    for stack in STACKS:
        print(f"\n   {stack} ramp, handshakes/s per block of {BLOCK}: "
              + "; ".join(" ".join(f"{r:.0f}" for r in p["blocks"]) for p in passes[stack]))
    if traces:
        for stack in STACKS:
            trace = traces[stack]
            if trace["failures"]:
                print(f"   !! {stack} trace pass: {trace['failures']} failures, {trace['first_failure']}")
            print(f"\n   {stack}: top live allocations in the server after {trace['held']} connections (tracemalloc)")
            for where, size, count in trace["top"][:6]:
                print(f"     {size / 1024:9.1f} KiB {count:7d} blocks  {where}")
    print(f"\n(done in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
