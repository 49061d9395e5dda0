"""``milagro demo tls``: the embedded regtest chain, two anchored identities, each verified by the
other, then TLS 1.2 between them over TCP with each of the six Bitcoin suites, recorded as
``demo.pcap`` with its key log ``demo.keylog`` for Wireshark."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import coincurve

from ..chain.embedded import EmbeddedSource
from ..chain.errors import VerificationError
from ..chain.hashes import to_display_hex
from ..chain.headerchain import HeaderChain
from ..chain.verify import resolve_anchor
from ..identity.certificate import BirthCertificate
from ..identity.party import Party


def register(sub: argparse._SubParsersAction) -> None:
    """``tls`` under ``milagro demo`` (ecosystem_demo.py registers ``demo``)."""
    demo = sub.add_parser("tls", help="the TLS demo: two identities, the six Bitcoin suites, demo.pcap")
    demo.add_argument("--dir", type=Path, default=None, help="working directory (default: a fresh temporary one)")
    demo.set_defaults(func=_demo)


def _step(text: str) -> None:
    print(f"\n== {text}")


def _demo(args) -> int:
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="milagro-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _step(f"embedded regtest chain in {workdir / 'chain'} (every block validated by Bitcoin Core's kernel)")
    with EmbeddedSource.open(workdir / "chain") as source:
        if source.tip().height < 110:
            source.mine(110 - source.tip().height)
        print(f"tip height {source.tip().height}, hash {to_display_hex(source.tip().block_hash)}")

        _step("anchoring two identities (fee key funds the identity key; anchor = marker + seal + change)")
        parties = []
        for home, role, name in (("server-home", "service", "echo.example"), ("idp-home", "idp", "idp.example")):
            party = Party.create(workdir / home, source, role=role, name=name,
                                 urls=(f"https://{name}/",), confirm_blocks=1)
            parties.append(party)
            print(f"{name:13} role={role:8} txid={party.locator.txid_hex} "
                  f"cert sha256={party.certificate.digest().hex()[:16]}...")
        source.mine(5)
        print(f"mined 5 more blocks: tip height {source.tip().height}")

        _step("each party verifies the other from chain data alone (its own header chain)")
        verified = {}
        for me, other in ((parties[0], parties[1]), (parties[1], parties[0])):
            headers = HeaderChain(":memory:", source.network)
            identity, proof = resolve_anchor(other.locator, other.certificate, source, headers)
            verified[me.name] = identity
            print(f"{me.certificate.name} -> {identity.name}: height {identity.height}, "
                  f"{identity.confirmations} confirmations, proof {len(proof.encode())} bytes")
            print("   checked: header chain (linkage, PoW, MTP), depth >= 6, txid branch, coinbase branch "
                  "of equal depth, BIP141 witness commitment (wtxid branch), MILAGRO 0x01 marker = "
                  "SHA256(certificate), witness key = certificate key, SIGHASH_ALL ECDSA signature, seal output")
            print(f"   exact nonce point R = {identity.nonce_point.hex()}")

        _step("the owners' nonces match the exact R the peer computed, and ECDH over Bitcoin agrees")
        server, idp = parties
        k_server, k_idp = server.nonce_key(), idp.nonce_key()
        assert k_server.public_key.format() == verified[idp.name].nonce_point
        assert k_idp.public_key.format() == verified[server.name].nonce_point
        shared_a = coincurve.PublicKey(verified[server.name].nonce_point).multiply(k_server.secret).format()[1:]
        shared_b = coincurve.PublicKey(verified[idp.name].nonce_point).multiply(k_idp.secret).format()[1:]
        print(f"k_server·G == R_server: yes; k_idp·G == R_idp: yes; x(k_server·R_idp) == x(k_idp·R_server): "
              f"{'yes' if shared_a == shared_b else 'NO'}")

        _step("a forged certificate (same key, another name) is refused")
        forged = BirthCertificate.from_json({**idp.certificate.to_json(), "name": "your-bank.example"})
        try:
            resolve_anchor(idp.locator, forged, source, HeaderChain(":memory:", source.network))
            print("forged certificate ACCEPTED: this is a bug")
            return 1
        except VerificationError as exc:
            print(f"refused: {type(exc).__name__}: {exc}")

        if _tls_demo(workdir, source, server, idp) != 0:
            return 1
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; files in {workdir}")
    return 0


def _tls_demo(workdir: Path, source, server: Party, client: Party) -> int:
    import socket
    import threading

    from ..adapters.errors import MilagroSSLError
    from ..capture.recorder import RecordingProxy
    from ..ciphersuites.registry import SUITES
    from ..context import Context
    from ..identity.local import LocalIdentity
    from ..trust import TrustEntry

    def pin(party: Party) -> list:
        return [TrustEntry.from_json(party.trust_entry())]

    _step("TLS 1.2 over TCP on 127.0.0.1 with each Bitcoin suite (milagro_tls.Context, an ssl.SSLContext), "
          "recorded for Wireshark")
    server_context = Context(identity=LocalIdentity.from_party(server, source), trust=pin(client),
                             chain=source, headers=":memory:")
    listener = server_context.wrap_socket(socket.create_server(("127.0.0.1", 0)), server_side=True)
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except MilagroSSLError:
                continue                   # the client reports what it was told
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    status = 0
    pcap, keylog = workdir / "demo.pcap", workdir / "demo.keylog"
    keylog.unlink(missing_ok=True)              # this run's connections only
    try:
        client_identity = LocalIdentity.from_party(client, source)
        # The client connects through a loopback proxy that records the bytes: no capture
        # privileges needed, and the pcap holds exactly these connections.
        with RecordingProxy(("127.0.0.1", port)) as proxy, \
                Context(identity=client_identity, trust=pin(server), chain=source, headers=":memory:",
                        keylog_filename=keylog) as context:
            for suite in SUITES.values():
                context.set_ciphers(suite.name)          # one suite per connection, as with ssl
                with context.wrap_socket(socket.create_connection(proxy.address),
                                         server_hostname=server.certificate.name) as tls:
                    peer = tls.getpeercert()
                    tls.sendall(b"hello over bitcoin")
                    reply = tls.recv(100)
                    print(f"{tls.cipher()[0]:34} peer={peer['name']} (pinned, {peer['confirmations']} "
                          f"confirmations)  echo={reply.decode()}")
        packets = proxy.write_pcap(pcap, server_port=443)
        _print_wireshark_commands(pcap, keylog, len(proxy.conversations), packets)
        _step("a new, unpinned client: first its block is news to the server, then it is refused")
        stranger = Party.create(workdir / "stranger-home", source, role="service", name="stranger.example")
        with Context(identity=LocalIdentity.from_party(stranger, source), trust=pin(server), chain=source,
                     headers=":memory:") as context:
            for attempt in (1, 2):
                try:
                    with context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                             server_hostname=server.certificate.name) as tls:
                        tls.recv(10)
                    print("stranger ACCEPTED: this is a bug")
                    status = 1
                except MilagroSSLError as exc:
                    print(f"attempt {attempt}: {exc}")
                if attempt == 1:
                    print("   (the handshake never waits on the chain: the server answered at once and "
                          "asked its header sync to catch up)")
                    _wait_for_sync(server_context)
    finally:
        listener.close()
        server_context.close()
    return status


def _print_wireshark_commands(pcap: Path, keylog: Path, connections: int, packets: int) -> None:
    repo = Path(__file__).resolve().parents[2]          # a source checkout has interop/ beside the package
    lua, demo_copy = repo / "interop" / "wireshark" / "milagro.lua", repo / "interop" / "wireshark" / "demo_copy.py"
    copy = pcap.with_name("demo-copy.pcapng")
    _step("Wireshark: the connections above as a pcap (server port 443) and their NSS key log")
    print(f"{pcap}: {connections} connections, {packets} packets")
    print(f"{keylog}: CLIENT_RANDOM lines; anyone who reads this file can decrypt those connections")
    print(f"   tshark -r {pcap}                  # stock: 'Unknown (0xff20)', undecryptable even with the key log")
    if lua.exists():
        print(f"   tshark -r {pcap} -X lua_script:{lua} -Y milagro.txid -T fields -e milagro.suite -e milagro.txid"
              f"   # the Lua dissector (-V: the whole tree)")
    if demo_copy.exists():
        print(f"   cd {repo} && {sys.executable} -m interop.wireshark.demo_copy {pcap} {copy}")
        print(f"   tshark -r {copy} -o tls.keylog_file:{keylog} -Y tls.app_data -x   "
              f"# DEMO TRANSFORMATION: suites relabelled, decrypted")
    print(f"   python: milagro_tls.capture.scapy_suites.decrypt_capture('{pcap}', '{keylog}')   # scapy, true capture")


def _wait_for_sync(context, timeout: float = 10.0) -> None:
    done = context.sync.syncs
    deadline = time.monotonic() + timeout
    while context.sync.syncs == done and time.monotonic() < deadline:
        time.sleep(0.05)
