"""The drop-in Context over real sockets beside Python ``ssl`` ECDHE-ECDSA, same process, same run.

    .venv/bin/python benchmarks/bench_context.py [--rounds 100] [--bulk-mib 96] [--bulk-repeats 5]
        [--cps-seconds 2] [--cps-clients 8] [--idle 200] [--only handshake,bulk,cps,memory]
    .venv/bin/python benchmarks/bench_context.py --profile [--only bulk|handshake] [--profile-top 25]

Baseline: Python ``ssl`` (the OpenSSL it links), TLS 1.2, ECDHE-ECDSA on P-256 with self-signed
certificates, the AEAD matching ours (AES-128-GCM unless said otherwise). Ours: ``milagro_tls.Context``
on the embedded regtest chain of tests/helpers (make_world: server "server.example", client "client").
Ratios are ours / ssl from the same run: this shared 2-vCPU VM's speed swings by 2x from one minute
to the next, so only same-run ratios (and the CPU columns) mean much; absolute numbers do not.

Where things run, identical for both stacks:
  servers   forked child processes (neither stack's server shares a GIL with its client): one
            threaded server (plain accept, then ``wrap_socket(server_side=True)`` and the handler
            in a thread per connection) for latency and bulk, and one asyncio server per stack
            (``asyncio.start_server(ssl=ctx)``) for connections/s and idle memory;
  clients   this process (latency, bulk, connections/s) or a forked child (idle memory).
All sockets are blocking with no timeout, TCP_NODELAY on both ends (asyncio sets it itself;
without it a resumed handshake + first write waits ~40 ms on Nagle and delayed ACK, ssl and ours
alike). Both ends send close_notify before closing: OpenSSL drops a session from its cache when a
connection ends without one, so ssl could not resume otherwise.

1 handshake  connect -> handshake -> 1-byte echo (wall time), median of --rounds, the variants
             interleaved round by round so that a slow phase hits them all alike; also the
             client's CPU time (this thread) and the server process's CPU time per connection.
             stapled  full handshake, header chains already synced. mutual: both parties anchored,
                      vs ssl with a client certificate; server auth only: anonymous client, vs ssl
                      server auth. "warm staple cache": long-lived Contexts that verified this
                      peer's staple before (VerifiedStapleCache: a hit re-checks only the block's
                      place and depth); "SPV every time": the cache is switched off on both sides
                      (what the first handshake with a peer costs)
             cached   resumed by session ID (``wrap_socket(session=previous.session)``); the ssl
                      server has OP_NO_TICKET so it resumes by session ID too
             cold     a new client Context per connection: its header chain starts empty and syncs
                      from the source (this regtest chain: height+1 headers; mainnet would start
                      from a checkpoint), then the handshake with full SPV verification
2 bulk       one direction, client -> server, 64 KiB ``sendall``s; the server reads with
             ``recv_into`` a 64 KiB buffer (``recv(262144)`` would slow ssl down: see
             ../shared/reference/tlslite-integration.md §2.3); timed from the first write to the
             server's 1-byte acknowledgement of the last; median of --bulk-repeats, stacks
             alternating. CPU ms per MiB: the sending thread's and the receiving server process's
3 conn/s     one asyncio server process; clients: one asyncio loop here with --cps-clients
             concurrent connect -> handshake -> 1-byte echo -> close loops for --cps-seconds, mutual
             authentication on both stacks; "server CPU" is the server process's CPU time per
             connection (what the server costs, whichever side saturates)
4 memory     --idle established, idle connections (each after a 1-byte echo): RSS growth of the
             asyncio server process and of the client process (each a fresh fork), per connection.
             asyncio's SSL transport allocates a 256 KiB read buffer per connection, whichever
             stack: that dominates the server column

--profile prints cProfile tables (CPU time per thread) of both sides of the bulk path (AES-128-GCM)
and of the handshake path (stapled with a warm staple cache, and resumed; both families) instead of
the table; benchmarks/PROFILE.md reads them.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import gc
import io
import multiprocessing
import os
import pstats
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.handshake import make_world  # noqa: E402  (the test suite's regtest world)

from milagro_tls.chain.headerchain import HeaderChain  # noqa: E402
from milagro_tls.ciphersuites.registry import SUITES, BulkCipher, KeyExchangeKind  # noqa: E402
from milagro_tls.context import Context  # noqa: E402

SERVER, CLIENT = "server.example", "client"
CHUNK = 64 * 1024
SSL_CIPHERS = {BulkCipher.AES_128_GCM: "ECDHE-ECDSA-AES128-GCM-SHA256",
               BulkCipher.AES_256_GCM: "ECDHE-ECDSA-AES256-GCM-SHA384",
               BulkCipher.CHACHA20_POLY1305: "ECDHE-ECDSA-CHACHA20-POLY1305"}
FAMILIES = {KeyExchangeKind.ECDH_BTC: "ECDH-BTC", KeyExchangeKind.YAK_BTC: "YAK-BTC"}
#: The record layer does not depend on the key exchange; bulk runs over YAK-BTC (the server's
#: preferred family).
BULK_FAMILY = KeyExchangeKind.YAK_BTC
SECTIONS = ("handshake", "bulk", "cps", "memory")


def _suite(kind: KeyExchangeKind, cipher: BulkCipher):
    return next(s for s in SUITES.values() if s.key_exchange is kind and s.cipher is cipher)


def _rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# --- the two stacks' contexts -------------------------------------------------------------
class Stacks:
    """Everything both stacks need, made before any child is forked (no threads exist yet)."""

    def __init__(self, tmp: Path, world) -> None:
        self.world = world
        self.network = world.source.network
        tip = world.source.tip().height
        self.raw_headers = world.source.headers(0, tip + 1)
        self.trust_server = world.trust(SERVER)          # what clients pin
        self.trust_client = world.trust(CLIENT)          # what the server pins
        self.server_cert, self.server_key = _certificate(tmp, SERVER)
        self.client_cert, self.client_key = _certificate(tmp, CLIENT)
        self.ssl_server = self._ssl_server(mutual=False)
        self.ssl_server_mutual = self._ssl_server(mutual=True)

    # ssl
    def _ssl_server(self, *, mutual: bool) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(":".join(SSL_CIPHERS.values()))
        context.options |= ssl.OP_NO_TICKET              # resume by session ID, as ours does
        if mutual:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_cert)
        return context

    def ssl_client(self, cipher: BulkCipher = BulkCipher.AES_128_GCM, *, mutual: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.server_cert)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(SSL_CIPHERS[cipher])
        if mutual:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    # ours
    def _frozen_headers(self) -> HeaderChain:
        """An in-memory header chain filled from the parent's copy (children never touch the
        parent's chain source, which owns the regtest directory)."""
        headers = HeaderChain(":memory:", self.network)
        headers.add_headers(self.raw_headers[1:])
        return headers

    def milagro_server(self, *, staple_cache: bool = True) -> Context:
        """Only called in a child: no chain source, a header chain nobody needs to update."""
        return _without_staple_cache(Context(identity=self.world.identities[SERVER], trust=self.trust_client,
                                             headers=self._frozen_headers()), staple_cache)

    def milagro_client(self, suites, *, mutual: bool = True, in_child: bool = False,
                       staple_cache: bool = True) -> Context:
        identity = self.world.identities[CLIENT] if mutual else None
        if in_child:
            context = Context(identity=identity, trust=self.trust_server, headers=self._frozen_headers(),
                              suites=suites)
        else:
            context = Context(identity=identity, trust=self.trust_server, chain=self.world.source,
                              headers=":memory:", suites=suites)
        return _without_staple_cache(context, staple_cache)


def _has_staple_cache(context: Context) -> bool:
    return getattr(context.config, "staple_cache", None) is not None


def _without_staple_cache(context: Context, keep: bool) -> Context:
    """A Context whose handshakes verify every staple by SPV (no cache of verified staples):
    what each handshake with a new peer costs. There is no public switch, so the benchmark
    replaces the config field."""
    if not keep and _has_staple_cache(context):
        context._replace(staple_cache=None)
    return context


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# --- child processes ------------------------------------------------------------------------
class Child:
    """A forked child answering commands on a pipe."""

    def __init__(self, target, *args) -> None:
        self.pipe, child_end = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("fork").Process(target=target, args=(child_end, *args),
                                                                   daemon=True)
        self.process.start()

    def call(self, *command):
        self.pipe.send(command)
        return self.pipe.recv()

    def stop(self) -> None:
        try:
            self.pipe.send(("stop",))
        except OSError:
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


class _Profiles:
    """cProfile of each server-side connection thread, while enabled."""

    def __init__(self) -> None:
        self.enabled = False
        self.stats: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def run(self, fn, *args) -> None:
        if not self.enabled:
            fn(*args)
            return
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            fn(*args)
        finally:
            profile.disable()
            with self.lock:
                self.stats.append(profile)

    def report(self, top: int) -> str:
        with self.lock:
            profiles, self.stats = self.stats, []
        return _format_profile(profiles, top)


def _format_profile(profiles, top: int) -> str:
    if not profiles:
        return "(nothing profiled)\n"
    out = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=out)
    for profile in profiles[1:]:
        stats.add(profile)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def _echo(conn) -> None:
    while data := conn.recv(CHUNK):
        conn.sendall(data)
    _close_politely(conn)


def _close_politely(tls) -> None:
    """close_notify before close. OpenSSL drops a session from its cache when the connection
    ends without one (ours sends it on close() by itself), so ssl needs this to resume at all."""
    try:
        tls.unwrap().close()
    except (OSError, ValueError, ssl.SSLError):
        pass
    tls.close()


def _sink(conn) -> None:
    """Read an 8-byte length, then that many bytes; acknowledge with one byte."""
    view = memoryview(bytearray(CHUNK))
    header = b""
    while len(header) < 8:
        more = conn.recv(8 - len(header))
        if not more:
            return
        header += more
    total, received = int.from_bytes(header, "big"), 0
    while received < total:
        n = conn.recv_into(view)
        if not n:
            return
        received += n
    conn.sendall(b"!")
    while conn.recv_into(view):
        pass


def _threaded_server(pipe, stacks: Stacks) -> None:
    """Blocking wrap_socket servers, a thread per connection: echo and sink, for each stack."""
    profiles = _Profiles()
    wraps = {"ssl": stacks.ssl_server, "ssl-mutual": stacks.ssl_server_mutual, "milagro": stacks.milagro_server(),
             "milagro-spv": stacks.milagro_server(staple_cache=False)}
    handlers = {"echo": _echo, "sink": _sink}

    def serve(raw, context, handler):
        def body():
            with context.wrap_socket(_nodelay(raw), server_side=True) as conn:
                handler(conn)
        try:
            profiles.run(body)
        except (OSError, ssl.SSLError):
            pass

    def accept_loop(listener, context, handler):
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(raw, context, handler), daemon=True).start()

    ports = {}
    for stack, context in wraps.items():
        for kind, handler in handlers.items():
            listener = socket.create_server(("127.0.0.1", 0), backlog=256)
            ports[stack, kind] = listener.getsockname()[1]
            threading.Thread(target=accept_loop, args=(listener, context, handler), daemon=True).start()
    pipe.send(ports)
    _command_loop(pipe, profiles)


def _asyncio_server(pipe, stacks: Stacks, stack: str) -> None:
    """One asyncio.start_server(ssl=ctx) echo server (for conn/s and idle memory)."""
    context = stacks.milagro_server() if stack == "milagro" else stacks.ssl_server_mutual
    loop = asyncio.new_event_loop()
    open_connections = set()

    async def handle(reader, writer):
        open_connections.add(writer)
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            open_connections.discard(writer)
            writer.close()

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=1024))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    pipe.send(server.sockets[0].getsockname()[1])
    _command_loop(pipe, None, extra={"open": lambda: len(open_connections)})


def _command_loop(pipe, profiles: _Profiles | None, extra=None) -> None:
    while True:
        command, *args = pipe.recv()
        if command == "stop":
            return
        if command == "rss":
            pipe.send(_rss())
        elif command == "cpu":
            pipe.send(time.process_time())
        elif command == "profile":
            profiles.enabled = bool(args[0])
            pipe.send(True)
        elif command == "profile-report":
            pipe.send(profiles.report(args[0]))
        elif extra and command in extra:
            pipe.send(extra[command]())


def _idle_client(pipe, stacks: Stacks, stack: str) -> None:
    """Holds idle established connections; reports this process's RSS around them."""
    command, *args = pipe.recv()
    if command != "go":
        return
    port, count = args
    if stack == "milagro":
        context = stacks.milagro_client("yak", in_child=True)
    else:
        context = stacks.ssl_client(mutual=True)

    def connect():
        tls = context.wrap_socket(_nodelay(socket.create_connection(("127.0.0.1", port))), server_hostname=SERVER)
        tls.sendall(b"x")
        assert tls.recv(1) == b"x"
        return tls

    held = [connect()]                            # warm: every lazy import and cache is in
    pipe.send(("warm",))
    pipe.recv()
    before = _rss()
    held += [connect() for _ in range(count)]
    after = _rss()
    pipe.send((before, after))
    pipe.recv()
    for tls in held:
        tls.close()
    pipe.send(True)
    pipe.recv()


# --- 1. handshake latency ------------------------------------------------------------------------
def _connect_echo(context, port: int, session=None):
    raw = _nodelay(socket.create_connection(("127.0.0.1", port)))
    tls = context.wrap_socket(raw, server_hostname=SERVER, session=session)
    tls.sendall(b"x")
    if tls.recv(1) != b"x":
        raise RuntimeError("echo failed")
    return tls


class Variant:
    def __init__(self, label: str, baseline: str | None, once) -> None:
        self.label, self.baseline, self.once, self.samples = label, baseline, once, []


def _handshake_variants(stacks: Stacks, ports, server: Child) -> list[Variant]:
    ssl_port, ssl_mutual_port, our_port = ports["ssl", "echo"], ports["ssl-mutual", "echo"], ports["milagro", "echo"]
    ssl_client, ssl_mutual = stacks.ssl_client(), stacks.ssl_client(mutual=True)
    variants: list[Variant] = []

    def timed(make, check=None, teardown=None):
        """(wall s, client CPU s, server CPU s) of one connection; the server's CPU time is
        its process's, read before and after (it includes the teardown)."""
        def once():
            server_cpu = server.call("cpu")
            cpu = time.thread_time()
            start = time.perf_counter()
            tls = make()
            elapsed = time.perf_counter() - start
            cpu = time.thread_time() - cpu
            if check is not None:
                check(tls)
            _close_politely(tls)
            if teardown is not None:
                teardown()
            time.sleep(0.0005)                 # let the server thread finish its teardown
            return elapsed, cpu, server.call("cpu") - server_cpu
        return once

    def must_resume(tls):
        if not tls.session_reused:
            raise RuntimeError(f"{type(tls).__name__}: the session was not resumed")

    first = _connect_echo(ssl_client, ssl_port)
    ssl_session = first.session
    _close_politely(first)

    def ssl_cold():
        return _connect_echo(stacks.ssl_client(mutual=True), ssl_mutual_port)

    variants += [
        Variant("ssl full, server auth", None, timed(lambda: _connect_echo(ssl_client, ssl_port))),
        Variant("ssl full, mutual (client certificate)", None,
                timed(lambda: _connect_echo(ssl_mutual, ssl_mutual_port))),
        Variant("ssl resumed (session ID)", None,
                timed(lambda: _connect_echo(ssl_client, ssl_port, ssl_session), must_resume)),
        Variant("ssl full, mutual, new SSLContext per connection", "ssl full, mutual (client certificate)",
                timed(ssl_cold)),
    ]
    spv_port = ports["milagro-spv", "echo"]
    for kind, family in FAMILIES.items():
        suites = kind.value
        mutual = stacks.milagro_client(suites)
        anonymous = stacks.milagro_client(suites, mutual=False)
        spv = stacks.milagro_client(suites, staple_cache=False)
        first = _connect_echo(mutual, our_port)
        session = first.session
        first.close()
        cold_contexts = []

        def cold(suites=suites):
            cold_contexts.append(stacks.milagro_client(suites))
            return _connect_echo(cold_contexts[-1], our_port)

        def close_cold(contexts=cold_contexts):
            while contexts:
                contexts.pop().close()

        warm = "warm staple cache" if _has_staple_cache(mutual) else "no staple cache here"
        variants += [
            Variant(f"{family} stapled, mutual, {warm}", "ssl full, mutual (client certificate)",
                    timed(lambda c=mutual: _connect_echo(c, our_port))),
            Variant(f"{family} stapled, mutual, SPV every time", "ssl full, mutual (client certificate)",
                    timed(lambda c=spv: _connect_echo(c, spv_port))),
            Variant(f"{family} stapled, server auth only, {warm}", "ssl full, server auth",
                    timed(lambda c=anonymous: _connect_echo(c, our_port))),
            Variant(f"{family} cached (resumed by session ID)", "ssl resumed (session ID)",
                    timed(lambda c=mutual, s=session: _connect_echo(c, our_port, s), must_resume)),
            Variant(f"{family} cold: new Context, sync {len(stacks.raw_headers)} headers, SPV",
                    "ssl full, mutual (client certificate)",
                    timed(cold, teardown=close_cold)),
        ]
    return variants


def bench_handshakes(stacks: Stacks, ports, server: Child, rounds: int) -> list[tuple]:
    variants = _handshake_variants(stacks, ports, server)
    for variant in variants:                   # warm up every path once
        variant.once()
    for index in range(rounds):
        shift = index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            variant.samples.append(variant.once())
    medians = {v.label: statistics.median(s[0] for s in v.samples) for v in variants}
    rows = []
    for v in variants:
        deciles = statistics.quantiles([s[0] for s in v.samples], n=10)
        baseline = v.baseline or v.label
        client_cpu = statistics.median(s[1] for s in v.samples)
        server_cpu = statistics.median(s[2] for s in v.samples)
        rows.append((v.label, medians[v.label] * 1e3, deciles[0] * 1e3, deciles[-1] * 1e3,
                     medians[v.label] / medians[baseline], baseline if v.baseline else "",
                     client_cpu * 1e3, server_cpu * 1e3))
    return rows


# --- 2. bulk throughput ------------------------------------------------------------------
def _bulk_once(context, port: int, total: int, server: Child | None = None) -> tuple:
    """(MiB/s, suite name, sender CPU s, receiver CPU s) of one transfer of ``total`` bytes."""
    payload = os.urandom(CHUNK)
    with _connect(context, port) as tls:
        tls.sendall(total.to_bytes(8, "big"))
        server_cpu = server.call("cpu") if server else 0.0
        cpu = time.thread_time()
        start = time.perf_counter()
        for _ in range(total // CHUNK):
            tls.sendall(payload)
        if tls.recv(1) != b"!":
            raise RuntimeError("the sink did not acknowledge")
        elapsed = time.perf_counter() - start
        cpu = time.thread_time() - cpu
        server_cpu = server.call("cpu") - server_cpu if server else 0.0
        name = tls.cipher()[0]
    return total / elapsed / (1 << 20), name, cpu, server_cpu


def _connect(context, port: int):
    return context.wrap_socket(_nodelay(socket.create_connection(("127.0.0.1", port))), server_hostname=SERVER)


def bench_bulk(stacks: Stacks, ports, server: Child, total: int, repeats: int) -> list[tuple]:
    rows = []
    mib = total / (1 << 20)
    for cipher in BulkCipher:
        suite = _suite(BULK_FAMILY, cipher)
        contexts = {"ssl": stacks.ssl_client(cipher), "milagro": stacks.milagro_client([suite])}
        rates, cpus, names = {"ssl": [], "milagro": []}, {"ssl": [], "milagro": []}, {}
        for stack in ("ssl", "milagro"):          # warm up
            _bulk_once(contexts[stack], ports[stack, "sink"], CHUNK * 16)
        for index in range(repeats):
            order = ("ssl", "milagro") if index % 2 == 0 else ("milagro", "ssl")
            for stack in order:
                rate, names[stack], send_cpu, receive_cpu = _bulk_once(contexts[stack], ports[stack, "sink"],
                                                                       total, server)
                rates[stack].append(rate)
                cpus[stack].append((send_cpu / mib * 1e3, receive_cpu / mib * 1e3))
        contexts["milagro"].close()
        ssl_rate, ours = statistics.median(rates["ssl"]), statistics.median(rates["milagro"])
        ssl_cpu = tuple(statistics.median(c[i] for c in cpus["ssl"]) for i in (0, 1))
        our_cpu = tuple(statistics.median(c[i] for c in cpus["milagro"]) for i in (0, 1))
        rows.append((cipher.name, names["ssl"], ssl_rate, names["milagro"], ours, ours / ssl_rate,
                     min(rates["milagro"]), max(rates["milagro"]), ssl_cpu, our_cpu))
    return rows


# --- 3. connections per second --------------------------------------------------------------
async def _cps_clients(context, port: int, clients: int, seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal done
        while time.perf_counter() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=SERVER)
            writer.write(b"x")
            await reader.readexactly(1)
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
            done += 1

    await asyncio.gather(*(worker() for _ in range(clients)))
    return done


def bench_cps(stacks: Stacks, servers: dict, clients: int, seconds: float) -> list[tuple]:
    variants = [("ssl ECDHE-ECDSA, mutual (client certificate)", "ssl", stacks.ssl_client(mutual=True))]
    for kind, family in FAMILIES.items():
        variants.append((f"{family}, mutual", "milagro", stacks.milagro_client(kind.value)))
    rows = []
    for label, stack, context in variants:
        server, port = servers[stack]
        asyncio.run(_cps_clients(context, port, clients, min(0.3, seconds)))      # warm up
        cpu_before = server.call("cpu")
        start = time.perf_counter()
        count = asyncio.run(_cps_clients(context, port, clients, seconds))
        elapsed = time.perf_counter() - start
        cpu = server.call("cpu") - cpu_before
        rows.append((label, count / elapsed, cpu / count * 1e3))
    base = rows[0]
    return [(label, rate, cpu, rate / base[1], cpu / base[2]) for label, rate, cpu in rows]


# --- 4. memory per idle connection ------------------------------------------------------------
def bench_memory(servers: dict, idle_clients: dict, count: int) -> list[tuple]:
    rows = []
    for stack in ("ssl", "milagro"):
        server, port = servers[stack]
        client = idle_clients[stack]
        client.pipe.send(("go", port, count))
        client.pipe.recv()                          # warm
        server_before = server.call("rss")
        client.pipe.send(("measure",))
        client_before, client_after = client.pipe.recv()
        server_after = server.call("rss")
        held = server.call("open")
        client.call("close")
        rows.append((stack, (server_after - server_before) / count, (client_after - client_before) / count, held))
    return rows


# --- profiling ------------------------------------------------------------------------------
def profile(stacks: Stacks, threaded: Child, ports, total: int, rounds: int, top: int, only: set) -> None:
    """cProfile (CPU time per thread) of the client here and of the server's connection threads."""
    if "bulk" in only:
        suite = _suite(BULK_FAMILY, BulkCipher.AES_128_GCM)
        context = stacks.milagro_client([suite])
        _bulk_once(context, ports["milagro", "sink"], CHUNK * 16)
        threaded.call("profile", True)
        client = cProfile.Profile(time.thread_time)
        client.enable()
        rate, *_ = _bulk_once(context, ports["milagro", "sink"], total)
        client.disable()
        time.sleep(0.2)                             # let the server thread finish its profile
        threaded.call("profile", False)
        print(f"==== bulk {suite.short_name}, {total >> 20} MiB at {rate:.0f} MiB/s (under cProfile)")
        print("---- client (send path)")
        print(_format_profile([client], top))
        print("---- server (receive path)")
        print(threaded.call("profile-report", top))
        context.close()
    if "handshake" not in only:
        return
    for kind, family in FAMILIES.items():
        context = stacks.milagro_client(kind.value)
        first = _connect_echo(context, ports["milagro", "echo"])
        session = first.session
        _close_politely(first)
        for mode, offer in (("stapled mutual, warm staple cache", None), ("resumed by session ID", session)):
            threaded.call("profile", True)
            client = cProfile.Profile(time.thread_time)
            start = time.perf_counter()
            for _ in range(rounds):
                client.enable()
                tls = _connect_echo(context, ports["milagro", "echo"], offer)
                client.disable()
                _close_politely(tls)
            elapsed = time.perf_counter() - start
            time.sleep(0.2)
            threaded.call("profile", False)
            print(f"==== handshake {family} {mode}, {rounds} connections, "
                  f"{elapsed / rounds * 1e3:.2f} ms each (under cProfile)")
            print("---- client")
            print(_format_profile([client], top))
            print("---- server (connection threads, from accept to close)")
            print(threaded.call("profile-report", top))
        context.close()


# --- main ------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100, help="handshakes per variant")
    parser.add_argument("--bulk-mib", type=int, default=96, help="MiB per bulk transfer")
    parser.add_argument("--bulk-repeats", type=int, default=5)
    parser.add_argument("--cps-seconds", type=float, default=2.0)
    parser.add_argument("--cps-clients", type=int, default=8)
    parser.add_argument("--idle", type=int, default=200, help="idle connections for the memory figure")
    parser.add_argument("--only", help=f"comma-separated sections to run: {','.join(SECTIONS)}")
    parser.add_argument("--profile", action="store_true", help="cProfile the bulk and handshake paths instead")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()
    total = max(1, args.bulk_mib) << 20
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        world = make_world(tmp, [(SERVER, "service"), (CLIENT, "pat")])
        try:
            stacks = Stacks(tmp, world)
            # Every child is forked now, before this process starts any thread (client
            # Contexts run a header-sync thread each).
            threaded = Child(_threaded_server, stacks)
            asyncio_servers = {s: Child(_asyncio_server, stacks, s) for s in ("ssl", "milagro")}
            idle_clients = {s: Child(_idle_client, stacks, s) for s in ("ssl", "milagro")}
            children = [threaded, *asyncio_servers.values(), *idle_clients.values()]
            try:
                ports = threaded.pipe.recv()
                servers = {s: (child, child.pipe.recv()) for s, child in asyncio_servers.items()}
                if args.profile:
                    profile(stacks, threaded, ports, total, args.rounds, args.profile_top,
                            set(args.only.split(",")) if args.only else set(SECTIONS))
                    return
                _report(stacks, threaded, ports, servers, idle_clients, args, total, started)
            finally:
                for child in children:
                    child.stop()
        finally:
            world.source.close()


def _report(stacks, threaded, ports, servers, idle_clients, args, total, started) -> None:
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    print(f"milagro_tls.Context vs Python ssl ({ssl.OPENSSL_VERSION}), Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; regtest chain height {len(stacks.raw_headers) - 1}")
    print("servers in forked child processes, clients in this process; TCP loopback, TCP_NODELAY")

    # The memory figure wants fresh processes: it runs first, and is printed last.
    memory = bench_memory(servers, idle_clients, args.idle) if "memory" in only else None
    if "handshake" in only:
        rows = bench_handshakes(stacks, ports, threaded, args.rounds)
        print(f"\n1. Handshake latency: connect -> handshake -> 1-byte echo, median of {args.rounds} "
              "(p10-p90), ms")
        width = max(len(row[0]) for row in rows)
        print(f"   {'':{width}} {'median':>7} {'p10':>6} {'p90':>6}  {'ratio':>6}  {'CPU client':>10} "
              f"{'server':>6}  vs")
        for label, median, p10, p90, ratio, baseline, client_cpu, server_cpu in rows:
            print(f"   {label:{width}} {median:7.2f} {p10:6.2f} {p90:6.2f}  {ratio:5.2f}x  {client_cpu:10.2f} "
                  f"{server_cpu:6.2f}  {baseline}")

    if "bulk" in only:
        rows = bench_bulk(stacks, ports, threaded, total, args.bulk_repeats)
        print(f"\n2. Bulk throughput, one direction, {CHUNK >> 10} KiB sendall, {total >> 20} MiB, "
              f"median of {args.bulk_repeats}, MiB/s (threaded server process, recv_into 64 KiB);")
        print("   CPU ms per MiB: sender (this thread) + receiver (server process)")
        print(f"   {'AEAD':18} {'ssl':>5} {'ours':>5} {'ratio':>6} {'(ours min-max)':>15}   "
              f"{'CPU ssl':>11} {'CPU ours':>11} {'ratio':>6}   suites")
        for cipher, ssl_name, ssl_rate, our_name, ours, ratio, low, high, ssl_cpu, our_cpu in rows:
            print(f"   {cipher:18} {ssl_rate:5.0f} {ours:5.0f} {ratio:5.2f}x {f'({low:.0f}-{high:.0f})':>15}   "
                  f"{ssl_cpu[0]:5.2f}+{ssl_cpu[1]:<5.2f} {our_cpu[0]:5.2f}+{our_cpu[1]:<5.2f} "
                  f"{sum(our_cpu) / sum(ssl_cpu):5.2f}x   {ssl_name} / {our_name}")

    if "cps" in only:
        rows = bench_cps(stacks, servers, args.cps_clients, args.cps_seconds)
        print(f"\n3. Connections per second, one asyncio.start_server(ssl=ctx) process, {args.cps_clients} "
              f"concurrent asyncio clients here, {args.cps_seconds:g} s each")
        print(f"   {'':46} {'conn/s':>7} {'ratio':>6}   {'server CPU ms/conn':>18} {'ratio':>6}")
        for label, rate, cpu, rate_ratio, cpu_ratio in rows:
            print(f"   {label:46} {rate:7.0f} {rate_ratio:5.2f}x   {cpu:18.2f} {cpu_ratio:5.2f}x")

    if memory is not None:
        print(f"\n4. Memory per idle connection ({args.idle} established and idle), RSS delta per connection, KiB")
        print(f"   {'':10} {'asyncio server process':>24} {'client process (wrap_socket)':>30}")
        base = memory[0]
        for stack, server, client, held in memory:
            print(f"   {stack:10} {server / 1024:16.1f} ({_ratio(server, base[1])}) "
                  f"{client / 1024:22.1f} ({_ratio(client, base[2])})   [server held {held}]")
    print(f"\n(done in {time.perf_counter() - started:.0f} s)")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:4.2f}x" if base > 0 else "  n/a"


if __name__ == "__main__":
    main()
