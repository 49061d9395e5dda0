"""Build the world, run every case in order, and write the table."""
from __future__ import annotations

import time
import traceback
from pathlib import Path

from .peers import MissingTool, openssl_binary
from .report import Row, markdown
from .world import temporary_world

DEFAULT_OUT = Path(__file__).resolve().parent / "results.md"


def run_cases(world, cases) -> list[Row]:
    rows = []
    for case in cases:
        row = case.row()
        started = time.monotonic()
        try:
            case.run(world, row)
        except Exception as exc:        # a crash fails this row only; the table still gets written
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            row.failures.append(f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno})")
        finally:
            world.close_contexts()
        row.seconds = time.monotonic() - started
        rows.append(row)
    return rows


def run(out: str | Path | None = DEFAULT_OUT, *, select: str | None = None) -> list[Row]:
    """Run the cases (those whose group or name contains ``select``); write the table to ``out``."""
    from .cases import CASES
    cases = [c for c in CASES if select is None or select.lower() in f"{c.group} {c.name}".lower()]
    try:
        openssl_binary()
    except MissingTool as missing:
        # Fail loudly, never skip: CI must install the binary. Rows without OpenSSL still run.
        rows = [Row("setup", "the OpenSSL binary", "`openssl` on PATH", failures=[str(missing)])]
    else:
        rows = []
    with temporary_world() as world:
        rows += run_cases(world, cases)
    if out is not None:
        Path(out).write_text(markdown(rows))
    return rows
