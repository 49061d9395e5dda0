"""What ``Connection.next_event()`` returns. Frozen values; don't subclass them (h11's rule)."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ..ciphersuites.registry import SuiteSpec
from ..trust import AuthenticatedPeer
from .errors import HandshakeError


class NeedData(enum.Enum):
    """More bytes from the peer are needed before there is another event."""
    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeComplete:
    #: The Bitcoin suite; None when a standard-suite fallback was negotiated instead.
    suite: SuiteSpec | None
    #: The verified peer; None for an anonymous client as seen by the server.
    peer: AuthenticatedPeer | None
    alpn_protocol: str | None = None
    session_reused: bool = False
    #: Fallback only: ``ssl``'s (name, protocol, bits) of the standard suite.
    standard_cipher: tuple | None = None


@dataclass(frozen=True, slots=True)
class ApplicationData:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    #: True after the peer's close_notify; False for an EOF without one (truncation:
    #: RFC 5246 §7.2.1 — a caller that needs all data must treat it as an error).
    clean: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFailed:
    error: HandshakeError
    #: True when we sent the alert (our verdict on the peer), False when the peer sent it.
    alert_sent: bool
