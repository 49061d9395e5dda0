"""The ecosystem demo's pipeline: deploy the roles, enrol the PATs, log them in, authenticate
them, capture and summarise. ``run_pipeline`` is what ``milagro demo`` and the benchmark run;
it returns the summary (summary.py) and raises DemoError on any failure. Every child process
is stopped when it returns or raises.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .deployment import DTA_NAMES, PASSWORD, SERVICE_NAME, USER, Deployment
from .pats import PatOutcome, enrol_pat, login_and_authenticate
from .person import DeviceApprover
from .processes import DemoError, Processes
from .summary import Summary, chain_facts

#: The depth the D-TAs and the service want for a client's anchor (Context's default).
CLIENT_CONFIRMATIONS = 6
PIN = "2468"


@dataclass
class Options:
    pats: int = 5
    workdir: Path = Path("milagro-demo")
    capture: bool = True
    workers: int = 1
    max_batch: int = 128
    gather: float = 4.0
    every: float = 1.0              # the miner's clock
    enrol_threads: int = 128        # PATs enrolling at once (all of a batch must be waiting)
    login_threads: int = 16         # PATs logging in at once
    timeout: float = 900.0


class Progress:
    """What the pipeline reports: ``phase(name, total)`` opens a phase, ``advance(name)`` counts
    one item done, ``say(text)`` logs a line. The CLI renders it with rich; the benchmark and the
    tests can pass a plain one."""

    def phase(self, name: str, total: int) -> None: ...

    def advance(self, name: str, n: int = 1) -> None: ...

    def say(self, text: str) -> None: ...


def _timed(timings: dict, name: str):
    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = round(time.perf_counter() - self.start, 2)
    return _Timer()


def _wait_depth(deployment: Deployment, txids: set[str], depth: int, timeout: float) -> None:
    """With the miner running, until every batch transaction is ``depth`` blocks deep."""
    from ..chain.hashes import from_display_hex
    deadline = time.monotonic() + timeout
    while True:
        tip = deployment.source.tip().height
        heights = [deployment.source.tx_status(from_display_hex(t)).height for t in txids]
        if all(h is not None and tip - h + 1 >= depth for h in heights):
            return
        deployment.processes.check_alive()
        if time.monotonic() > deadline:
            raise DemoError(f"the batches did not reach {depth} confirmations within {timeout:.0f} s")
        time.sleep(0.3)


def _run_all(items, work: Callable, threads: int, progress: Progress, phase: str, processes: Processes):
    """``work(item)`` for every item on ``threads`` threads; the first failure stops the
    demo with the PAT's name and what went wrong, without waiting for the other PATs (their
    threads end on their own once the servers are stopped)."""
    results = []
    pool = ThreadPoolExecutor(max_workers=max(1, min(threads, len(items))), thread_name_prefix=phase)
    futures = {pool.submit(work, item): item for item in items}
    try:
        for future in as_completed(futures):
            item = futures[future]
            try:
                results.append(future.result())
            except Exception as exc:
                processes.check_alive()          # a dead server explains more than its client
                raise DemoError(f"{phase}: {item.name}: {type(exc).__name__}: {exc}") from exc
            progress.advance(phase)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return sorted(results, key=lambda o: o.index)


def run_pipeline(options: Options, progress: Progress) -> Summary:
    workdir = options.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    processes = Processes(workdir / "logs")
    deployment = Deployment(workdir, processes, capture=options.capture, workers=options.workers,
                            gather=options.gather, max_batch=options.max_batch, say=progress.say)
    approver = None
    try:
        progress.phase("start roles", 7)
        with _timed(timings, "start roles"):
            deployment.start_chain()
            progress.advance("start roles")
            deployment.start_miner(options.every)
            progress.advance("start roles")
            idp = deployment.start_idp()
            progress.advance("start roles")
            for name in DTA_NAMES:
                deployment.start_dta(name)
                progress.advance("start roles")
            deployment.start_service()
            progress.advance("start roles")
            tbs = deployment.start_tbs()
            progress.advance("start roles")
            deployment.configure_group()

        # --- enrolment: one batch of up to max_batch PATs --------------------------------------
        pats = [PatOutcome(i, f"pat-{i:04d}", workdir / "pats" / f"pat-{i:04d}") for i in range(1, options.pats + 1)]
        host, port = deployment.address("tbs")
        interval = max(1.0, options.pats / 100)          # the TBS answers every PAT's polls
        progress.phase("enrol PATs", len(pats))
        deployment.miner.auto()                 # a block whenever a batch (or anything) waits
        with _timed(timings, "enrol"):
            pats = _run_all(pats, lambda pat: enrol_pat(pat, f"{host}:{port}", tbs.locator, deployment.checkpoint,
                                                        interval=interval, timeout=options.timeout),
                            options.enrol_threads, progress, "enrol PATs", processes)
        txids = {pat.locator["txid"] for pat in pats}
        shown = ", ".join(sorted(txids)[:4]) + (f", … ({len(txids) - 4} more)" if len(txids) > 4 else "")
        progress.say(f"{len(pats)} PATs anchored in {len(txids)} batch transaction(s): {shown}")
        deployment.miner.run()                  # a block a second until the batches are deep enough
        with _timed(timings, f"wait for {CLIENT_CONFIRMATIONS} confirmations"):
            _wait_depth(deployment, txids, CLIENT_CONFIRMATIONS, options.timeout)
        deployment.miner.pause()

        # --- logins at both D-TAs (device grant), shares, M-Pin over YAK -------------------------
        approver = DeviceApprover(USER, PASSWORD, idp.ca_file)
        dtas = {deployment.url(name): name for name in DTA_NAMES}
        service = (deployment.url("service"), SERVICE_NAME)
        keylog = workdir / "pcap" / "pats.keylog" if options.capture else None
        if keylog is not None:
            keylog.parent.mkdir(parents=True, exist_ok=True)
        progress.phase("login + M-Pin", len(pats))
        with _timed(timings, "logins + M-Pin"):
            pats = _run_all(pats, lambda pat: login_and_authenticate(
                pat, dtas=dtas, service=service, issuer=idp.url, approve=approver.approve, pin=PIN, keylog=keylog,
                poll_interval=max(1.0, options.pats / 200), login_timeout=options.timeout),
                options.login_threads, progress, "login + M-Pin", processes)

        pcaps = deployment.write_pcaps(workdir / "pcap") if options.capture else {}
        facts = chain_facts(deployment.source, pats)
        timings["total"] = round(time.perf_counter() - started, 2)
        summary = Summary(workdir=str(workdir), pats=[p.to_json() for p in pats], batches=facts,
                          pcaps=pcaps, keylog=str(keylog) if keylog else None, timings=timings,
                          roles={k: {"url": r.url, "pid": r.pid, "locator": r.locator}
                                 for k, r in deployment.roles.items()},
                          peak_memory_kib=peak_memory(processes))
        summary.save(workdir / "summary.json")
        return summary
    finally:
        if approver is not None:
            approver.close()
        deployment.close()


def peak_memory(processes: Processes) -> dict[str, dict]:
    """Per role: VmHWM (peak resident set, KiB) of its process and each descendant (gunicorn's
    master and workers), read while they still run; ``sum_kib`` adds them up."""
    peaks = {}
    for child in processes.children:
        each = {pid: _vmhwm(pid) for pid in [child.pid, *_descendants(child.pid)]}
        peaks[child.label] = {"sum_kib": sum(each.values()), "max_kib": max(each.values(), default=0),
                              "processes": {str(pid): kib for pid, kib in each.items()}}
    return peaks


def _vmhwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found
