"""One loader for tests/vectors/*.json, feeding pytest.mark.parametrize with named ids."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load_vectors(name: str) -> dict:
    return json.loads((VECTORS / name).read_text())


def valid_cases(name: str):
    doc = load_vectors(name)
    return [pytest.param(case, id=f"{name}[{i}]") for i, case in enumerate(doc["valid"])]


def invalid_cases(name: str):
    doc = load_vectors(name)
    return [pytest.param(case, id=f"{name}[{case.get('name', i)}]") for i, case in enumerate(doc["invalid"])]
