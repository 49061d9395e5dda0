"""Shared settings and strategies for the property tests of every parser.

Each parser's contract: any bytes or JSON a peer or a source can send either parse, or fail with
the parser's own precise exception (MalformedInput, MerkleProofError, SourceError, ...). Anything
else (KeyError, TypeError, RecursionError, OverflowError, ...) escaping a parser is a finding: in a
handshake it becomes internal_error and a traceback in the log instead of decode_error.

Bounded for `make test`: a small, derandomized run per parser (a few seconds each). Set
MILAGRO_FUZZ_EXAMPLES=2000 (and MILAGRO_FUZZ_RANDOM=1 for fresh random seeds) for longer runs,
e.g. `MILAGRO_FUZZ_EXAMPLES=2000 MILAGRO_FUZZ_RANDOM=1 pytest tests/fuzz`.
"""
from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("MILAGRO_FUZZ_EXAMPLES", "60"))
RANDOM = os.environ.get("MILAGRO_FUZZ_RANDOM") == "1"

#: The settings every fuzz test uses (no deadline: the 2-core CI machine is shared).
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
#: Roundtrip properties are cheap and need fewer examples.
roundtrip = settings(fuzz, max_examples=max(20, EXAMPLES // 2))


def parses_or_refuses(parse, data, refusals):
    """``parse(data)``: its result, or None when it raises one of ``refusals``. Any other
    exception propagates and fails the test with hypothesis's minimal example."""
    try:
        return parse(data)
    except refusals:
        return None


# --- strategies ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
#: Any JSON value, nested a few levels.
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=25)


def hex_of(size: int | None = None):
    if size is None:
        return st.binary(max_size=64).map(bytes.hex)
    return st.binary(min_size=size, max_size=size).map(bytes.hex)


@st.composite
def mutated(draw, seed: bytes):
    """``seed`` with a few random edits: flips, truncation, insertion, deletion, length-field
    smashing. Near-valid inputs reach the parser's deeper branches that random bytes never do."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "set", "truncate", "insert", "delete", "extend")))
        if op in ("flip", "set") and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = data[i] ^ (1 << draw(st.integers(0, 7))) if op == "flip" else draw(
                st.sampled_from((0, 1, 0x7F, 0x80, 0xFF)))
        elif op == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 8))]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@st.composite
def mutated_json(draw, doc):
    """``doc`` (a JSON object) with one field replaced by any JSON value, removed, or a field
    added; nested objects and lists are reached too."""
    def edit(value, depth):
        if isinstance(value, dict) and value and depth < 4 and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(value)))
            out = dict(value)
            action = draw(st.sampled_from(("replace", "remove", "add", "descend", "descend")))
            if action == "replace":
                out[key] = draw(json_values)
            elif action == "remove":
                del out[key]
            elif action == "add":
                out[draw(st.text(max_size=8))] = draw(json_values)
            else:
                out[key] = edit(value[key], depth + 1)
            return out
        if isinstance(value, list) and value and depth < 4 and draw(st.booleans()):
            out = list(value)
            i = draw(st.integers(0, len(out) - 1))
            out[i] = edit(out[i], depth + 1)
            return out
        return draw(json_values)
    return edit(doc, 0)


def json_bytes(value) -> bytes:
    return json.dumps(value).encode()
