"""Where the shared real-data fixtures live: ``../shared/fixtures`` beside the repository.

They are read in place and never copied into the repository (their README says why).
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = (REPO_ROOT.parent / "shared" / "fixtures").resolve()


def fixture_path(*parts: str) -> Path:
    """The path of a shared fixture file; raises FileNotFoundError naming what is missing."""
    if not FIXTURES.is_dir():
        raise FileNotFoundError(
            f"shared fixtures not found at {FIXTURES}: they are expected in ../shared/fixtures "
            f"relative to the repository root {REPO_ROOT}")
    path = FIXTURES.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"fixture {'/'.join(parts)} not found in {FIXTURES} (see its README.md)")
    return path
