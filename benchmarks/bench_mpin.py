"""M-Pin shares and authentication (milagro_tls.mpin), no network.

    .venv/bin/python benchmarks/bench_mpin.py [--rounds 300] [--timing-rounds 2000]

issuance  : one D-TA issuing signed shares (CS_i, TP_i, SS_i, and CS_i + TP_i together as
            POST /shares/client does): shares per second, pure maths + BIP340 signature + JSON
auth      : the 2-pass M-Pin (2 D-TAs' shares combined): client pass 1, server begin, client
            pass 2, server finish (one multi-pairing), and the whole exchange
timing    : client-secret issuance with a master secret of ONE set bit (s = 1) against one of
            254 set bits (s = 2^254 - 1), interleaved sample by sample so that the VM's drift hits
            both. The library's multiplication is not constant time; secret_mul splits every
            product, so the two must not differ beyond noise. Printed: both medians, their ratio
            with a bootstrap 95% interval, the same ratio for two independent random secrets
            (the noise floor), and for reference the unsplit multiplication that secret_mul avoids.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

from py_arkworks_bls12381 import Scalar

from milagro_tls.chain.network import Network
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.identity.locator import Locator, LocatorKind
from milagro_tls.mpin import identity, shares
from milagro_tls.mpin.protocol import MpinClient, MpinServer, extract_pin

DAY = 20_000
PIN = 1234
ID = identity.encode_identity("https://idp.example", "alice")


def _locator(n: int) -> Locator:
    return Locator(network=Network.REGTEST, kind=LocatorKind.P2WPKH, txid=bytes([n]) * 32,
                   input_index=0, block_hash=bytes([n]) * 32)


def _timed(fn, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _report(label: str, samples: list[float], per_second: bool = False) -> None:
    median = statistics.median(samples)
    extra = f"   {1 / median:9.0f} /s" if per_second else ""
    print(f"{label:44} median {median * 1e3:8.3f} ms   p90 "
          f"{sorted(samples)[int(len(samples) * 0.9)] * 1e3:8.3f} ms{extra}   ({len(samples)} runs)")


def _interleaved(fn_a, fn_b, rounds: int) -> tuple[list[float], list[float]]:
    a, b = [], []
    for i in range(rounds):
        # Alternate which goes first so that neither always runs on a warm cache.
        order = ((fn_a, a), (fn_b, b)) if i % 2 == 0 else ((fn_b, b), (fn_a, a))
        for fn, out in order:
            start = time.perf_counter_ns()
            fn()
            out.append(time.perf_counter_ns() - start)
    return a, b


def _ratio_interval(a: list[float], b: list[float], resamples: int = 1000) -> tuple[float, float, float]:
    """median(a)/median(b) and a bootstrap 95% interval."""
    rng = random.Random(1)
    ratios = sorted(statistics.median(rng.choices(a, k=len(a))) /
                    statistics.median(rng.choices(b, k=len(b))) for _ in range(resamples))
    return (statistics.median(a) / statistics.median(b), ratios[int(resamples * 0.025)],
            ratios[int(resamples * 0.975)])


def bench_issuance(rounds: int) -> None:
    print("== issuance (one D-TA) ==")
    master, key = shares.MasterSecret.generate(), IdentityKey.generate()
    common = dict(dta="dta.example", dta_locator=_locator(1), recipient=_locator(2))
    h = identity.hash_identity(ID)
    _report("H(ID) hash_to_g1", _timed(lambda: identity.hash_identity(ID), rounds), True)
    _report("CS_i = s_i*H(ID) (split, unsigned)", _timed(lambda: shares.client_secret_share(master, h), rounds), True)
    _report("client-secret share, signed", _timed(
        lambda: shares.issue_client_secret(master, key, identity=ID, **common), rounds), True)
    _report("time permit, signed", _timed(
        lambda: shares.issue_time_permit(master, key, identity=ID, date=DAY, **common), rounds), True)
    _report("server-secret share (G2), signed", _timed(
        lambda: shares.issue_server_secret(master, key, **common), rounds), True)

    def client_pair():
        shares.issue_client_secret(master, key, identity=ID, **common)
        shares.issue_time_permit(master, key, identity=ID, date=DAY, **common)

    _report("CS_i + TP_i signed (one /shares/client)", _timed(client_pair, rounds), True)


def bench_auth(rounds: int) -> None:
    print("== M-Pin 2-pass authentication (2 D-TAs) ==")
    masters = [shares.MasterSecret.generate() for _ in range(2)]
    h = identity.hash_identity(ID)
    token = extract_pin(shares.combine_g1(shares.client_secret_share(m, h) for m in masters), h, PIN)
    permit = shares.combine_g1(shares.time_permit_share(m, h, DAY) for m in masters)
    server = MpinServer(shares.combine_g2(shares.server_secret_share(m) for m in masters), today=DAY)
    steps = {"client pass 1": [], "server begin": [], "client pass 2": [], "server finish": [],
             "whole exchange (client + server)": []}
    for _ in range(rounds):
        t0 = time.perf_counter()
        client = MpinClient(token, permit, ID, DAY)
        p1 = client.pass1()
        t1 = time.perf_counter()
        pending = server.begin(p1)
        t2 = time.perf_counter()
        p2 = client.pass2(pending.challenge, PIN)
        t3 = time.perf_counter()
        server.finish(pending, p2)
        t4 = time.perf_counter()
        for label, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            steps[label].append(value)
    for label, samples in steps.items():
        _report(label, samples)


def bench_timing(rounds: int) -> None:
    print("== issuance time vs the master secret's set bits ==")
    h = identity.hash_identity(ID)
    few = shares.MasterSecret.from_bytes((1).to_bytes(32, "big"))                 # 1 set bit
    many = shares.MasterSecret.from_bytes(((1 << 254) - 1).to_bytes(32, "big"))   # 254 set bits
    rand_a, rand_b = shares.MasterSecret.generate(), shares.MasterSecret.generate()

    a, b = _interleaved(lambda: shares.client_secret_share(few, h),
                        lambda: shares.client_secret_share(many, h), rounds)
    ratio, low, high = _ratio_interval(b, a)
    print(f"split (secret_mul), s = 1          (1 bit)   median {statistics.median(a) / 1e3:9.1f} us")
    print(f"split (secret_mul), s = 2^254 - 1 (254 bits) median {statistics.median(b) / 1e3:9.1f} us")
    print(f"  ratio many/few {ratio:.3f}   bootstrap 95% [{low:.3f}, {high:.3f}]")
    c, d = _interleaved(lambda: shares.client_secret_share(rand_a, h),
                        lambda: shares.client_secret_share(rand_b, h), rounds)
    n_ratio, n_low, n_high = _ratio_interval(d, c)
    print(f"  noise floor: two random secrets, ratio {n_ratio:.3f}   [{n_low:.3f}, {n_high:.3f}]")
    verdict = "within noise" if low <= 1.0 <= high or abs(ratio - 1) <= max(abs(n_ratio - 1), 0.02) \
        else "DIFFERS beyond noise"
    print(f"  -> {verdict}")
    one, ones = Scalar(1), Scalar((1 << 254) - 1)
    e, f = _interleaved(lambda: h * one, lambda: h * ones, max(rounds // 4, 50))
    print(f"reference, UNSPLIT h*s (what secret_mul avoids): s = 1 {statistics.median(e) / 1e3:.1f} us, "
          f"254 bits {statistics.median(f) / 1e3:.1f} us, ratio {statistics.median(f) / statistics.median(e):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--timing-rounds", type=int, default=2000)
    args = parser.parse_args()
    bench_issuance(args.rounds)
    bench_auth(args.rounds)
    bench_timing(args.timing_rounds)


if __name__ == "__main__":
    main()
