"""Identity verification (cold and cached) and block validation per block, on the embedded chain.

    .venv/bin/python benchmarks/bench_identity.py [--rounds 20]

cold    : a fresh in-memory header chain synced from the source, the proof fetched, then verified
cached  : header chain already synced and the proof already at hand (what a stapled handshake does)
block   : mine one block carrying one anchor-sized transaction through the kernel, per block
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.verify import resolve_anchor, verify_anchor
from milagro_tls.identity.party import Party


def _timed(fn, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _report(label: str, samples: list[float]) -> None:
    print(f"{label:34} median {statistics.median(samples) * 1e3:8.2f} ms   "
          f"min {min(samples) * 1e3:8.2f} ms   ({len(samples)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedSource.open(Path(tmp) / "chain") as source:
        source.mine(110)
        party = Party.create(Path(tmp) / "home", source, role="service", name="bench.example")
        print(f"chain height {source.tip().height}")

        def cold():
            resolve_anchor(party.locator, party.certificate, source, HeaderChain(":memory:", source.network))

        headers = HeaderChain(":memory:", source.network)
        _, proof = resolve_anchor(party.locator, party.certificate, source, headers)

        def cached():
            verify_anchor(party.locator, party.certificate, proof, headers)

        _report("verify identity, cold (sync+fetch)", _timed(cold, args.rounds))
        _report("verify identity, cached proof", _timed(cached, args.rounds * 10))

        def one_block():
            source.faucet(party.key.p2wpkh_script, 10_000)
            source.mine(1)

        _report("faucet tx + mine/validate 1 block", _timed(one_block, args.rounds))
        _report("mine/validate 1 empty block", _timed(lambda: source.mine(1), args.rounds))


if __name__ == "__main__":
    main()
