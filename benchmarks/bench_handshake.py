"""Handshake time of each milagro suite beside Python ``ssl`` ECDHE-ECDSA, same process, same run.

    .venv/bin/python benchmarks/bench_handshake.py [--rounds 200]

Both stacks run client and server in memory (our sans-IO Connection pair; ``ssl.SSLObject``
over MemoryBIOs), so the numbers are the CPU cost of one complete handshake for both sides,
without sockets. Ours includes verifying each stapled anchor against the local header chain
(SPV: Merkle branches, witness commitment, exact R) and the trust-store check; nothing is
cached between handshakes.
"""
from __future__ import annotations

import argparse
import datetime
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.ciphersuites.registry import SUITES
from milagro_tls.handshake import NEED_DATA, Connection, HandshakeComplete, HandshakeConfig, Role
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party
from milagro_tls.trust import TrustEntry, TrustStore


def _median_ms(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def _milagro_handshake(client_config, server_config) -> None:
    client = Connection(Role.CLIENT, client_config, server_hostname="server.example")
    server = Connection(Role.SERVER, server_config)
    client.start()
    done = 0
    while done < 2:
        for sender, receiver in ((client, server), (server, client)):
            data = sender.data_to_send()
            if data:
                receiver.receive_data(data)
                while (event := receiver.next_event()) is not NEED_DATA:
                    if not isinstance(event, HandshakeComplete):
                        raise RuntimeError(f"handshake failed: {event}")
                    done += 1


def _ssl_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("server.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(tmp / "cert.pem")
    for context in (client, server):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    return client, server


def _ssl_handshake(client_context, server_context) -> None:
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(c_in, c_out, server_hostname="server.example")
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    done = set()
    while len(done) < 2:
        for name, obj, out, peer_in in (("c", client, c_out, s_in), ("s", server, s_out, c_in)):
            if name not in done:
                try:
                    obj.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
            data = out.read()
            if data:
                peer_in.write(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedSource.open(Path(tmp) / "chain") as source:
        tmp = Path(tmp)
        source.mine(110)
        parties = {n: Party.create(tmp / "home", source, role=r, name=n)
                   for n, r in (("server.example", "service"), ("client", "pat"))}
        identities = {n: LocalIdentity.from_party(p, source) for n, p in parties.items()}
        trust = TrustStore([TrustEntry.from_json(p.trust_entry()) for p in parties.values()])
        headers = HeaderChain(":memory:", source.network)
        headers.sync_from(source)

        ssl_client, ssl_server = _ssl_contexts(tmp)
        _ssl_handshake(ssl_client, ssl_server)                     # warm up
        baseline = _median_ms(lambda: _ssl_handshake(ssl_client, ssl_server), args.rounds)
        print(f"{'Python ssl ECDHE-ECDSA-AES128-GCM-SHA256 (P-256)':52} {baseline:7.2f} ms   1.00 x")
        server_config = HandshakeConfig(headers=headers, trust=trust, identity=identities["server.example"])
        for suite in SUITES.values():
            for mode, client_identity in (("full", identities["client"]), ("server-only", None)):
                client_config = HandshakeConfig(headers=headers, trust=trust, identity=client_identity,
                                                suites=(suite,))
                _milagro_handshake(client_config, server_config)
                ours = _median_ms(lambda: _milagro_handshake(client_config, server_config), args.rounds)
                print(f"{suite.name + ' ' + mode:52} {ours:7.2f} ms   {ours / baseline:4.2f} x")


if __name__ == "__main__":
    main()
