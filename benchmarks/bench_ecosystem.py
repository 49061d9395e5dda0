"""The ecosystem demo's pipeline at scale: N PATs (default 1000) enrolled through one TBS in
taproot batches of at most 128, each then logging in at two D-TAs with the device grant and
passing M-Pin at the relying service over YAK, every role a separate process on loopback.

    .venv/bin/python benchmarks/bench_ecosystem.py [--pats 1000] [--max-batch 128] [--dir DIR]

Prints the time of each phase and the TBS's peak memory: VmHWM from /proc/PID/status of the
TBS's gunicorn master and its workers, read at the end of the run (VmHWM is the peak resident
set over the process's life). No pcap is written (the recording proxies would hold every byte
of 1000 PATs' traffic in memory); everything else is the demo's code path (milagro_tls.demo).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from milagro_tls.demo.pipeline import Options, Progress, run_pipeline
from milagro_tls.demo.processes import DemoError


class PlainProgress(Progress):
    """A line per step, and a count every 10 s per phase."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.done: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._last = 0.0

    def _stamp(self) -> str:
        return f"[{time.perf_counter() - self.started:7.1f} s]"

    def phase(self, name: str, total: int) -> None:
        self.done[name] = [0, total]
        print(f"{self._stamp()} {name}: {total}", flush=True)

    def advance(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.done[name][0] += n
            count, total = self.done[name]
            now = time.perf_counter()
            if count == total or now - self._last > 10:
                self._last = now
                print(f"{self._stamp()} {name}: {count}/{total}", flush=True)

    def say(self, text: str) -> None:
        print(f"{self._stamp()} {text}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pats", type=int, default=1000)
    parser.add_argument("--max-batch", type=int, default=128)
    parser.add_argument("--enrol-threads", type=int, default=128, help="PATs enrolling at once")
    parser.add_argument("--login-threads", type=int, default=48, help="PATs logging in at once")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="bench-ecosystem-"))
    options = Options(pats=args.pats, workdir=workdir.resolve(), capture=False, max_batch=args.max_batch,
                      enrol_threads=args.enrol_threads, login_threads=args.login_threads, timeout=3600.0)
    try:
        summary = run_pipeline(options, PlainProgress())
    except DemoError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(f"\n== {args.pats} PATs, batches of at most {args.max_batch}, workdir {options.workdir}")
    print(f"batches: {len(summary.batches)}; vB per PAT: "
          + ", ".join(f"{b['vbytes_per_pat']:.1f} ({b['pats']} PATs)" for b in summary.batches))
    print(f"M-Pin passed: {summary.authenticated}/{len(summary.pats)}")
    for phase, seconds in summary.timings.items():
        print(f"  {phase:28} {seconds:8.1f} s")
    for role in ("tbs", "idp", "dta-a", "dta-b", "service"):
        peak = summary.peak_memory_kib.get(role)
        if peak:
            print(f"  peak memory {role:8} {peak['sum_kib'] / 1024:7.1f} MiB over {len(peak['processes'])} processes "
                  f"(largest {peak['max_kib'] / 1024:.1f} MiB)")
    enrol = sorted(p["enrol_seconds"] for p in summary.pats)
    login = sorted(p["login_seconds"] for p in summary.pats)
    print(f"  per PAT enrol: median {enrol[len(enrol) // 2]:.1f} s, max {enrol[-1]:.1f} s; "
          f"login (two D-TAs): median {login[len(login) // 2]:.1f} s, max {login[-1]:.1f} s")
    return 0 if summary.authenticated == len(summary.pats) else 1


if __name__ == "__main__":
    sys.exit(main())
