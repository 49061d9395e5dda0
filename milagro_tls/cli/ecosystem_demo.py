"""``milagro demo [--pats N] [--dir DIR] [--keep]``: the ecosystem on loopback, one command.

A chain node, a miner, an IdP, two D-TAs, a relying service and a TBS start as separate
processes; N PATs enrol through the TBS in one taproot batch, each logs in at both D-TAs with
the device grant (the demo approves the codes as the user), combines the shares, passes M-Pin
at the service over YAK-over-Bitcoin; the handshakes are written as pcap files and a summary
read back from the chain is printed. ``milagro demo tls`` is the TLS-suites demo
(demo_command.py). Progress goes to stderr, the summary to stdout.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from . import demo_command

    demo = sub.add_parser("demo", help="the ecosystem demo (TBS, PATs, IdP, D-TAs, M-Pin); `demo tls`: the TLS suites")
    demo.add_argument("--pats", type=int, default=5, help="PATs to enrol (default 5)")
    demo.add_argument("--dir", type=Path, default=None, help="working directory (default: a fresh temporary one)")
    demo.add_argument("--keep", action="store_true",
                      help="keep the working directory (a temporary one is removed after a success otherwise)")
    demo.add_argument("--max-batch", type=int, default=128, help="PATs per batch transaction (default 128)")
    demo.set_defaults(func=_demo)
    kinds = demo.add_subparsers(dest="demo_kind")
    demo_command.register(kinds)


class _RichProgress:
    """The pipeline's Progress on a rich console (stderr): a bar per phase, a line per step."""

    def __init__(self, progress, console) -> None:
        self.progress, self.console, self.tasks = progress, console, {}

    def phase(self, name: str, total: int) -> None:
        self.tasks[name] = self.progress.add_task(name, total=total)

    def advance(self, name: str, n: int = 1) -> None:
        self.progress.advance(self.tasks[name], n)

    def say(self, text: str) -> None:
        from rich.markup import escape
        self.progress.console.log(escape(text))


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt          # unwinds through the pipeline's finally: every child stopped


def _demo(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..demo.pipeline import Options, run_pipeline
    from ..demo.processes import DemoError

    if args.pats < 1:
        print("--pats must be at least 1", file=sys.stderr)
        return 2
    temporary = args.dir is None
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="milagro-ecosystem-"))
    out, err = Console(), Console(stderr=True, log_path=False)
    if not out.is_terminal:              # a file or a pipe: rich would cut the tables at 80 columns
        out = Console(width=200)
    signal.signal(signal.SIGTERM, _terminate)
    options = Options(pats=args.pats, workdir=workdir.resolve(), max_batch=args.max_batch)
    err.print(f"[bold]milagro ecosystem demo[/bold]: {args.pats} PAT(s), working directory {options.workdir}")
    try:
        with Progress(TextColumn("{task.description:16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err) as bars:
            summary = run_pipeline(options, _RichProgress(bars, err))
    except DemoError as exc:
        err.print(f"[bold red]demo failed[/bold red]: {escape(str(exc))}", highlight=False)
        err.print(f"every process it started is stopped; logs in {options.workdir / 'logs'}")
        return 1
    except KeyboardInterrupt:
        err.print("interrupted: every process the demo started is stopped")
        return 130
    except Exception as exc:             # a bug or an unforeseen failure: still a clear line, still cleaned up
        err.print(f"[bold red]demo failed[/bold red]: {type(exc).__name__}: {escape(str(exc))}", highlight=False)
        err.print(f"every process it started is stopped; logs in {options.workdir / 'logs'}")
        return 1
    summary.render(out)
    if summary.authenticated != len(summary.pats):
        err.print(f"[bold red]M-Pin passed for {summary.authenticated} of {len(summary.pats)} PATs[/bold red]")
        return 1
    out.print(f"demo finished in {summary.timings['total']:.1f} s: {len(summary.pats)} PATs enrolled, anchored "
              f"and authenticated")
    if temporary and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
        out.print(f"(removed {workdir}; run with --dir DIR or --keep to keep the pcaps and homes)")
    return 0
