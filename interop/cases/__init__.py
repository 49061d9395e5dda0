"""The harness's cases: one ``Case`` per table row, registered in ``CASES`` in table order.

A case gets the world and its row; it records what it observed (``row.note``) and every
expectation that failed (``row.check``). An exception escaping a case fails its row.
"""
from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from milagro_tls.adapters.errors import MilagroSSLError

from ..report import Row

#: TLS alert descriptions the cases expect (RFC 5246 §7.2).
HANDSHAKE_FAILURE = 40


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    expected: str
    run: Callable          # (world, row) -> None

    def row(self) -> Row:
        return Row(self.group, self.name, self.expected)


CASES: list[Case] = []


def case(group: str, name: str, expected: str):
    def register(function):
        CASES.append(Case(group, name, expected, function))
        return function
    return register


def attempt(function):
    """(result, None) or (None, the exception): a refusal is an outcome, not a crash."""
    try:
        return function(), None
    except (OSError, ssl.SSLError) as exc:
        return None, exc


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def check_alert(row: Row, error: BaseException | None, *, alert: int, sent: bool, who: str) -> None:
    """``error`` must be our MilagroSSLError carrying ``alert``, sent by us or received from the peer."""
    if not row.check(error is not None, f"{who}: no error, the handshake succeeded"):
        return
    row.note(f"{who}: {describe(error)}")
    if row.check(isinstance(error, MilagroSSLError), f"{who}: not a MilagroSSLError"):
        row.check(error.alert == alert, f"{who}: alert {error.alert}, expected {alert}")
        row.check(error.alert_sent == sent, f"{who}: alert_sent={error.alert_sent}, expected {sent}")


def offered_suites(record: bytes) -> list[int]:
    """The cipher suites of a ClientHello record (RFC 5246 §7.4.1.2); [] if it is not one."""
    if len(record) < 5 + 4 + 2 + 32 + 1 or record[0] != 22 or record[5] != 1:
        return []
    offset = 5 + 4 + 2 + 32
    offset += 1 + record[offset]                       # session_id
    length = int.from_bytes(record[offset:offset + 2], "big")
    body = record[offset + 2:offset + 2 + length]
    return [int.from_bytes(body[i:i + 2], "big") for i in range(0, len(body), 2)]


# Registration order is table order.
from . import openssl_peers, python_ssl_peers, tlslite_peers, native  # noqa: E402,F401
