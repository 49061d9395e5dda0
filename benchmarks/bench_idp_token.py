"""Token-endpoint requests per second of the IdP as deployed: ``milagro idp serve`` under
gunicorn, on SQLite (the default) and on PostgreSQL, same run.

    .venv/bin/python benchmarks/bench_idp_token.py [--seconds 10] [--clients 8] [--workers 2]
        [--backends sqlite,postgresql] [--no-milagro]

Setup, all real and all in a temporary directory: a fresh regtest chain (``milagro chain init``,
then ``milagro chain serve``), one IdP home (its identity anchored on that chain on first start)
served by ``milagro idp serve --workers N`` once per backend (PostgreSQL: Debian's server started
by tests/helpers/postgres.py, a fresh database). A confidential client registers (RFC 7591) and
gets one refresh token per benchmark client through a real code flow with PKCE: the
requests-oauthlib relying party of interop/oidc/rp.py, alice at the HTML pages as
interop/oidc/person.py.

Rows, each --seconds long, --clients threads here, each with its own keep-alive HTTPS
connection (httpx, opened before the clock starts, so no handshake is timed):
  refresh         grant_type=refresh_token with client_secret_basic; the IdP rotates refresh
                  tokens, so each thread follows its own chain (a failure ends that thread's chain)
  invalid_client  the same request with a wrong client secret: 401 invalid_client expected
                  (anything else counts as an error)
Transport "x509": the IdP's X.509 fallback certificate, trusted as a CA (ordinary HTTPS, OpenSSL
on both ends). Transport "milagro": a milagro-tls client Context per thread pinning the IdP's
anchored identity (Bitcoin suite, verified from the chain), httpx with
``extensions={"sni_hostname": <pinned name>}``; the ratio row is milagro / x509 req/s of the
refresh row on the same backend in the same run.

CPU columns, per request: the gunicorn workers' CPU time (from /proc), PostgreSQL's (all its
processes; SQLite runs inside the workers), and this process's (the clients). This shared
2-vCPU VM's speed swings from minute to minute, and the clients share its cores with the
server: same-run ratios mean more than absolute numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from helpers.postgres import PostgresServer  # noqa: E402
from interop.oidc.person import Person  # noqa: E402
from interop.oidc.rp import RelyingParty  # noqa: E402
from roles.idp.served import start_idp  # noqa: E402  (milagro idp user add + milagro idp serve)

from milagro_tls.context import Context  # noqa: E402
from milagro_tls.identity.party import Party  # noqa: E402
from milagro_tls.trust import TrustEntry, TrustStore  # noqa: E402

PASSWORD = "correct horse"          # what start_idp gives alice
REDIRECT_URI = "https://client.example/callback"   # never fetched: the person stops at the redirect
PINNED = "idp.pinned"               # the name milagro-tls clients pin the IdP under
TICK = os.sysconf("SC_CLK_TCK")


# --- processes and their CPU -------------------------------------------------------------
def _cpu_times(pids) -> dict[int, float]:
    """CPU seconds (user + system) of each live process in ``pids``."""
    times = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) / TICK          # utime, stime
    return times


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    # A process born during the run (a new PostgreSQL backend) counts from zero.
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(p) for p in children.read().split()]


def _postgres_pids(server: PostgresServer) -> list[int]:
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    return [postmaster, *_children(postmaster)]


class ChainProcess:
    """``milagro chain init`` + ``milagro chain serve`` for a fresh regtest directory."""

    def __init__(self, chain_dir: Path) -> None:
        cli = [sys.executable, "-m", "milagro_tls.cli", "chain"]
        subprocess.run([*cli, "init", "--chain-dir", str(chain_dir)], check=True, capture_output=True, timeout=300)
        self.process = subprocess.Popen([*cli, "serve", "--chain-dir", str(chain_dir)], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.info = json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


# --- refresh tokens through a real code flow ----------------------------------------------
def register_client(idp) -> RelyingParty:
    rp = RelyingParty(idp.ca_file)
    rp.issuer = idp.issuer
    rp.discover()
    rp.register({"client_name": "Token Benchmark", "redirect_uris": [REDIRECT_URI],
                 "grant_types": ["authorization_code", "refresh_token"]})
    return rp


def refresh_tokens(idp, rp: RelyingParty, count: int) -> list[str]:
    """``count`` code flows (alice logs in and consents on the first, then her session and
    consent carry the rest); each ends in the ID-token checks of rp.exchange."""
    person = Person("alice", PASSWORD, idp.ca_file)
    try:
        tokens = []
        for _ in range(count):
            callback = person.authorize(rp.authorization_url(REDIRECT_URI), REDIRECT_URI)
            tokens.append(rp.exchange(callback).raw["refresh_token"])
        return tokens
    finally:
        person.close()


# --- the load ------------------------------------------------------------------------------
@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    worker_cpu: float = 0.0
    db_cpu: float | None = None
    client_cpu: float = 0.0
    cipher: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class Transport:
    def __init__(self, name: str, idp, trust: TrustStore | None, chain_spec: str) -> None:
        self.name, self.idp, self.trust, self.chain_spec = name, idp, trust, chain_spec
        self.contexts: list[Context] = []

    def client(self, auth) -> httpx.Client:
        if self.trust is None:
            verify = ssl.create_default_context(cafile=self.idp.ca_file)
        else:
            # One Context per thread: each keeps its own header chain and sessions.
            verify = Context(trust=self.trust, chain=self.chain_spec, headers=":memory:")
            self.contexts.append(verify)
        return httpx.Client(base_url=self.idp.issuer, verify=verify, auth=auth, timeout=30,
                            limits=httpx.Limits(max_connections=1))

    @property
    def extensions(self) -> dict:
        return {"sni_hostname": PINNED} if self.trust is not None else {}

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


def _cipher(response: httpx.Response) -> str:
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream else None
    ssl_object = stream.get_extra_info("ssl_object") if stream else None
    for candidate in (sock, ssl_object):
        cipher = getattr(candidate, "cipher", None)
        if callable(cipher) and cipher():
            return cipher()[0]
    return "?"


def load(kind: str, transport: Transport, client_id: str, secret: str, chains: list[str], seconds: float,
         worker_pids: list[int], db_pids) -> Run:
    """--clients threads hammering /token for ``seconds``; kind 'refresh' or 'invalid_client'."""
    run = Run()
    auth = (client_id, secret if kind == "refresh" else "wrong-" + secret)
    clients = [transport.client(auth) for _ in chains]
    for http in clients:                       # connect (and handshake) before the clock starts
        warm = http.get("/jwks", extensions=transport.extensions)
        assert warm.status_code == 200, warm.text
        run.cipher = _cipher(warm)
    start = threading.Barrier(len(clients) + 1)
    deadline = [0.0]

    def hammer(http: httpx.Client, refresh: str) -> None:
        mine: list[float] = []
        start.wait()
        while time.perf_counter() < deadline[0]:
            began = time.perf_counter()
            try:
                answer = http.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh},
                                   extensions=transport.extensions)
                body = answer.json()
            except (httpx.HTTPError, ValueError) as error:
                with run.lock:
                    run.errors.append(f"{type(error).__name__}: {error}")
                return
            mine.append(time.perf_counter() - began)
            if kind == "refresh" and answer.status_code == 200 and "refresh_token" in body:
                refresh = body["refresh_token"]
            elif kind == "invalid_client" and answer.status_code == 401 and body.get("error") == "invalid_client":
                pass
            else:
                with run.lock:
                    run.errors.append(f"HTTP {answer.status_code} {body}")
                if kind == "refresh":
                    break                       # this thread's refresh chain is broken
        with run.lock:
            run.latencies.extend(mine)

    threads = [threading.Thread(target=hammer, args=(http, refresh)) for http, refresh in zip(clients, chains)]
    for thread in threads:
        thread.start()
    cpu = (_cpu_times(worker_pids), _cpu_times(db_pids() if db_pids else ()), time.process_time())
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    run.elapsed = time.perf_counter() - began
    run.worker_cpu = _cpu_used(cpu[0], _cpu_times(worker_pids))
    run.db_cpu = _cpu_used(cpu[1], _cpu_times(db_pids())) if db_pids else None
    run.client_cpu = time.process_time() - cpu[2]
    for http in clients:
        http.close()
    transport.close()
    return run


# --- one backend ---------------------------------------------------------------------------
def bench_backend(backend: str, home: Path, chain_dir: Path, db: str | None, postgres: PostgresServer | None,
                  args) -> list[tuple]:
    idp = start_idp(home, chain_dir, workers=args.workers, db=db)
    rows = []
    try:
        # gunicorn announces the socket before it forks the workers: wait for them.
        deadline = time.monotonic() + 60
        while len(workers := _children(idp.announced["pid"])) < args.workers:
            if time.monotonic() > deadline:
                sys.exit(f"{args.workers} gunicorn workers did not start:\n{idp.log()[-2000:]}")
            time.sleep(0.2)
        db_pids = (lambda: _postgres_pids(postgres)) if postgres else None
        rp = register_client(idp)
        client_id, secret = rp.client["client_id"], rp.client["client_secret"]
        party = Party.load(home, "idp")
        trust = TrustStore([TrustEntry.from_json({**party.trust_entry(), "name": PINNED})])
        transports = [Transport("x509", idp, None, "")]
        if args.milagro:
            transports.append(Transport("milagro", idp, trust, f"regtest://{chain_dir}"))
        for transport in transports:
            chains = refresh_tokens(idp, rp, args.clients)
            kinds = ("refresh", "invalid_client") if transport.name == "x509" else ("refresh",)
            for kind in kinds:
                run = load(kind, transport, client_id, secret, chains, args.seconds, workers, db_pids)
                rows.append((backend, transport.name, kind, run))
                print(f"  {backend:10} {transport.name:7} {kind:14} {len(run.latencies) / run.elapsed:8.1f} req/s"
                      f"  ({run.cipher})", flush=True)
        rp.close()
    finally:
        idp.stop()
    return rows


def _percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_table(rows, args) -> None:
    print()
    print(f"token endpoint, gunicorn gthread x {args.workers} workers (4 threads each), {args.clients} keep-alive "
          f"clients, {args.seconds:g} s per row")
    head = (f"{'backend':10} {'transport':9} {'request':14} {'workers':>7} {'clients':>7} {'requests':>8} "
            f"{'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}  {'CPU ms/req: gunicorn':>20} {'db':>5} "
            f"{'client':>6}  cipher")
    print(head)
    print("-" * len(head))
    for backend, transport, kind, run in rows:
        n = len(run.latencies) or 1
        db = f"{run.db_cpu * 1e3 / n:5.2f}" if run.db_cpu is not None else "    -"
        print(f"{backend:10} {transport:9} {kind:14} {args.workers:7} {args.clients:7} {len(run.latencies):8} "
              f"{len(run.latencies) / run.elapsed:8.1f} {_percentile(run.latencies, .5) * 1e3:7.1f} "
              f"{_percentile(run.latencies, .99) * 1e3:7.1f} {len(run.errors):6}  {run.worker_cpu * 1e3 / n:20.2f} "
              f"{db} {run.client_cpu * 1e3 / n:6.2f}  {run.cipher}")
    by = {(b, t, k): r for b, t, k, r in rows}
    for backend in dict.fromkeys(b for b, *_ in rows):
        ours, theirs = by.get((backend, "milagro", "refresh")), by.get((backend, "x509", "refresh"))
        if ours and theirs:
            ratio = (len(ours.latencies) / ours.elapsed) / (len(theirs.latencies) / theirs.elapsed)
            p50s = _percentile(ours.latencies, .5) * 1e3, _percentile(theirs.latencies, .5) * 1e3
            print(f"{backend:10} ratio milagro/x509 refresh req/s: {ratio:4.2f}x"
                  f"  (p50 {p50s[0]:.1f} vs {p50s[1]:.1f} ms)")
    for backend, transport, kind, run in rows:
        for error in sorted(set(run.errors))[:3]:
            print(f"error ({backend} {transport} {kind}): {error[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each row's run (default 10)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-milagro", dest="milagro", action="store_false",
                        help="skip the milagro-tls client rows")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-idp-") as tmp:
        tmp = Path(tmp)
        print("creating a regtest chain and starting its server ...", flush=True)
        chain = ChainProcess(tmp / "chain")
        postgres = None
        try:
            for backend in backends:
                db = None
                if backend == "postgresql":
                    try:
                        postgres = postgres or PostgresServer().start()
                    except pytest.fail.Exception as missing:          # the helper's message says what to install
                        sys.exit(f"PostgreSQL: {missing}")
                    db = postgres.create_database("bench")
                elif backend != "sqlite":
                    sys.exit(f"unknown backend {backend!r}: sqlite or postgresql")
                # One home: the identity is made once; each backend gets its own database.
                print(f"serving the IdP on {backend} ...", flush=True)
                rows += bench_backend(backend, tmp / "idp", tmp / "chain", db, postgres if db else None, args)
        finally:
            if postgres:
                postgres.stop()
            chain.stop()
    print_table(rows, args)


if __name__ == "__main__":
    main()
