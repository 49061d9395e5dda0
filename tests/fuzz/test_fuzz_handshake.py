"""The atheris harness of the sans-IO handshake (benchmarks/fuzz_handshake.py), for a bounded time.

It runs in a subprocess because libFuzzer ends the process when its time is up. A finding
(internal_error or an exception out of the Connection) exits non-zero and leaves the input as
crash-* in the working directory, which this test names in its failure."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).parents[2] / "benchmarks" / "fuzz_handshake.py"
SECONDS = int(os.environ.get("MILAGRO_FUZZ_HANDSHAKE_SECONDS", "10"))


def test_handshake_survives_coverage_guided_fuzzing(tmp_path):
    run = subprocess.run([sys.executable, str(HARNESS), "--seconds", str(SECONDS), "--workdir", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 240)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    tail = "\n".join(line for line in (run.stdout + run.stderr).splitlines()
                     if not line.startswith("INFO: Instrumenting"))[-4000:]
    assert run.returncode == 0 and not crashes, f"findings {crashes}:\n{tail}"
    assert re.search(r"seeds: [2-9] client flights", run.stdout), tail
    done = re.search(r"Done (\d+) runs in (\d+) second", run.stderr)
    assert done, tail
    # The harness really ran (a few thousand inputs per second here) and grew its corpus.
    assert int(done.group(1)) >= 100 * SECONDS, done.group(0)
    added = re.search(r"stat::new_units_added:\s+(\d+)", run.stderr)
    assert added and int(added.group(1)) > 0, tail
