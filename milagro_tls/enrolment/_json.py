"""Strict JSON for the enrolment formats: one parse rule for every document a peer sends."""
from __future__ import annotations

import json
from typing import Any


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:               # two values for one field: which one did the signer mean?
            raise _Duplicate(f"duplicate field {key!r}")
        doc[key] = value
    return doc


def loads_strict(raw: bytes, error: type[Exception], what: str) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes, refusing duplicate fields, NaN/Infinity and non-objects."""
    def _constant(name: str):
        raise error(f"{what}: {name} is not JSON")
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_constant)
    except _Duplicate as exc:
        raise error(f"{what}: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise error(f"{what} is not JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise error(f"{what} is not a JSON object")
    return doc


def exact_fields(doc: dict[str, Any], fields: set[str], error: type[Exception], what: str) -> None:
    if set(doc) != fields:
        missing, unknown = sorted(fields - set(doc)), sorted(set(doc) - fields)
        raise error(f"{what}: " + "; ".join(
            part for part in (f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else "") if part))


def integer(value: Any, error: type[Exception], what: str, *, low: int = 0, high: int = 2**63 - 1) -> int:
    # type() rather than isinstance: JSON true is an int in Python.
    if type(value) is not int or not low <= value <= high:
        raise error(f"{what} must be an integer in [{low}, {high}]")
    return value


def hex_bytes(value: Any, error: type[Exception], what: str, *, length: int | None = None) -> bytes:
    if not isinstance(value, str) or value != value.lower():
        raise error(f"{what} must be a lowercase hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise error(f"{what} is not hex") from None
    if raw.hex() != value:           # bytes.fromhex skips whitespace: one spelling only
        raise error(f"{what} is not plain hex")
    if length is not None and len(raw) != length:
        raise error(f"{what} must be {length} bytes, not {len(raw)}")
    return raw
