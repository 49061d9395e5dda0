"""The M-Pin 2-pass protocol with the PIN extracted, sans-IO.

Setup (milagro-mpin.md 2.3): the client holds CS = s·H(ID) (the sum of its D-TAs' shares) and
stores only the token T = CS − PIN·H(ID) (``extract_pin``), so the token alone is not the key and
the PIN is not stored. For day d it also holds TP = s·H_T(d, H(ID)); A = H(ID) + H_T(d, H(ID)).
The service holds SS = s·Q (the sum of the server shares).

    client                                         server
    x random, U = x·A          (ID, d, U)  -->     d == today? else ExpiredPermit
                               <--  y              y random
    V = −(x+y)·(T + PIN·H(ID) + TP)   V  -->       accept iff e(V, Q)·e(U + y·A, SS) = 1

With the right PIN, T + PIN·H(ID) + TP = s·A, and e(−(x+y)·s·A, Q)·e((x+y)·A, s·Q) = 1. A wrong
PIN, a missing share, a share from a D-TA the service does not use, a permit for another day or
identity all break the equation the same way: the server learns only "no" (AuthenticationFailed),
never the PIN. All products with x, the PIN and x+y go through curve.secret_mul.

Messages are JSON objects with hex fields (Pass1, Challenge, Pass2, and PendingAuth for a server
that keeps the state between HTTP requests). A PendingAuth must be used once: the caller deletes
it when ``finish`` returns or raises (a replayed V would otherwise pass again).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .curve import (
    GT, G1Point, G2Point, ORDER, Scalar, decode_g1, decode_g2, decode_scalar, encode_g1,
    encode_scalar, g2_generator, random_scalar, secret_mul,
)
from .errors import (
    AuthenticationFailed, ExpiredPermit, InvalidPin, MalformedIdentity, MalformedMessage,
    MalformedPoint, MalformedScalar, ProtocolStateError,
)
from .identity import (
    MpinIdentity, check_date, decode_identity, hash_identity, hash_time_permit, today as utc_today,
)

__all__ = ["extract_pin", "Pass1", "Challenge", "Pass2", "PendingAuth", "MpinClient", "MpinServer"]


def _pin_scalar(pin: int | str) -> Scalar:
    """A PIN as a scalar: an int in [0, q) or a string of ASCII decimal digits."""
    if isinstance(pin, str):
        if not pin or not (pin.isascii() and pin.isdigit()):
            raise InvalidPin("a PIN is a string of decimal digits")
        pin = int(pin)
    if isinstance(pin, bool) or not isinstance(pin, int) or not 0 <= pin < ORDER:
        raise InvalidPin("a PIN is a non-negative integer below the group order")
    return Scalar(pin)


def _g1(value: Any) -> G1Point:
    if not isinstance(value, G1Point):
        raise TypeError(f"expected a G1Point, got {type(value).__name__}")
    return value


def extract_pin(client_secret: G1Point, id_point: G1Point, pin: int | str) -> G1Point:
    """The token T = CS − PIN·H(ID) the client stores instead of CS."""
    return _g1(client_secret) - secret_mul(_pin_scalar(pin), _g1(id_point))


def _fields(doc: Any, names: set[str], what: str) -> dict:
    if not isinstance(doc, dict) or set(doc) != names:
        raise MalformedMessage(f"{what} is a JSON object with exactly {', '.join(sorted(names))}")
    return doc


def _hex_id(value: Any) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
        if raw is None:
            raise ValueError
        decode_identity(raw)
    except (ValueError, MalformedIdentity):
        raise MalformedMessage("id is the hex of an encoded M-Pin identity") from None
    return raw


def _date(value: Any) -> int:
    try:
        return check_date(value)
    except MalformedIdentity:
        raise MalformedMessage("date is a day number (u32)") from None


def _point(value: Any, label: str) -> G1Point:
    try:
        return decode_g1(value if isinstance(value, str) else b"")
    except MalformedPoint as exc:
        raise MalformedMessage(f"{label}: {exc}") from None


def _scalar(value: Any, label: str) -> Scalar:
    try:
        return decode_scalar(value if isinstance(value, str) else b"")
    except MalformedScalar as exc:
        raise MalformedMessage(f"{label}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Pass1:
    """Client → server: the identity, the permit's date and U = x·A."""
    identity: bytes
    date: int
    u: G1Point

    def to_json(self) -> dict[str, Any]:
        return {"id": self.identity.hex(), "date": self.date, "u": encode_g1(self.u).hex()}

    @classmethod
    def from_json(cls, doc: Any) -> "Pass1":
        doc = _fields(doc, {"id", "date", "u"}, "pass 1")
        return cls(_hex_id(doc["id"]), _date(doc["date"]), _point(doc["u"], "u"))


@dataclass(frozen=True, slots=True)
class Challenge:
    """Server → client: y."""
    y: Scalar

    def to_json(self) -> dict[str, Any]:
        return {"y": encode_scalar(self.y).hex()}

    @classmethod
    def from_json(cls, doc: Any) -> "Challenge":
        return cls(_scalar(_fields(doc, {"y"}, "challenge")["y"], "y"))


@dataclass(frozen=True, slots=True)
class Pass2:
    """Client → server: V = −(x+y)·s·A."""
    v: G1Point

    def to_json(self) -> dict[str, Any]:
        return {"v": encode_g1(self.v).hex()}

    @classmethod
    def from_json(cls, doc: Any) -> "Pass2":
        return cls(_point(_fields(doc, {"v"}, "pass 2")["v"], "v"))


@dataclass(frozen=True, slots=True)
class PendingAuth:
    """The server's state between the passes (public values only; single use)."""
    identity: bytes
    date: int
    u: G1Point
    y: Scalar

    @property
    def challenge(self) -> Challenge:
        return Challenge(self.y)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.identity.hex(), "date": self.date, "u": encode_g1(self.u).hex(),
                "y": encode_scalar(self.y).hex()}

    @classmethod
    def from_json(cls, doc: Any) -> "PendingAuth":
        doc = _fields(doc, {"id", "date", "u", "y"}, "pending authentication")
        return cls(_hex_id(doc["id"]), _date(doc["date"]), _point(doc["u"], "u"),
                   _scalar(doc["y"], "y"))


class MpinClient:
    """One authentication attempt by a client holding a token and the day's combined permit.

    ``pass1()`` then ``pass2(challenge, pin)``, each once. The PIN is given only to pass 2 and
    not kept. repr shows the identity only (token, permit and x are secrets).
    """

    def __init__(self, token: G1Point, time_permit: G1Point, identity: bytes, date: int) -> None:
        decode_identity(identity)
        self._token = _g1(token)
        self._permit = _g1(time_permit)
        self.identity = bytes(identity)
        self.date = check_date(date)
        self._id_point = hash_identity(self.identity)
        self._a = self._id_point + hash_time_permit(self.date, self._id_point)
        self._x: Scalar | None = None
        self._state = "new"

    def pass1(self) -> Pass1:
        if self._state != "new":
            raise ProtocolStateError("pass 1 was already sent")
        self._x = random_scalar()
        self._state = "sent-pass1"
        return Pass1(self.identity, self.date, secret_mul(self._x, self._a))

    def pass2(self, challenge: Challenge, pin: int | str) -> Pass2:
        if self._state != "sent-pass1" or self._x is None:
            raise ProtocolStateError("pass 2 needs pass 1 first, and runs once")
        if not isinstance(challenge, Challenge):
            raise TypeError("pass2 takes a Challenge (parse with Challenge.from_json)")
        pin_scalar = _pin_scalar(pin)
        factor = -(self._x + challenge.y)
        self._x, self._state = None, "done"
        key = self._token + secret_mul(pin_scalar, self._id_point) + self._permit
        return Pass2(secret_mul(factor, key))

    def __repr__(self) -> str:
        return f"<MpinClient id={self.identity.hex()} date={self.date} {self._state}>"

    __str__ = __repr__


class MpinServer:
    """The relying service's side: holds SS = Σ SS_i (a secret: never logged or shown).

    ``today``: the server's day number; None means the UTC day by the clock at each ``begin``.
    """

    def __init__(self, server_secret: G2Point, today: int | None = None) -> None:
        if not isinstance(server_secret, G2Point) or server_secret == G2Point.identity():
            raise TypeError("the server secret is a non-identity G2Point")
        self._ss = server_secret
        self._today = None if today is None else check_date(today)

    def begin(self, pass1: Pass1, *, today: int | None = None) -> PendingAuth:
        """Check the permit's date and draw the challenge y. ExpiredPermit if the client's
        permit is not for the server's today."""
        if not isinstance(pass1, Pass1):
            raise TypeError("begin takes a Pass1 (parse with Pass1.from_json)")
        day = today if today is not None else (self._today if self._today is not None else utc_today())
        if pass1.date != day:
            raise ExpiredPermit(f"the time permit is for day {pass1.date}, the server's today is "
                                f"day {day}: fetch a new permit")
        return PendingAuth(pass1.identity, pass1.date, pass1.u, random_scalar())

    def finish(self, pending: PendingAuth, pass2: Pass2) -> MpinIdentity:
        """Accept iff e(V, Q)·e(U + y·A, SS) = 1; returns the authenticated identity."""
        if not isinstance(pending, PendingAuth) or not isinstance(pass2, Pass2):
            raise TypeError("finish takes a PendingAuth and a Pass2")
        id_point = hash_identity(pending.identity)
        a = id_point + hash_time_permit(pending.date, id_point)
        # y and A are public: a plain multiplication is fine here.
        if not GT.pairing_check([pass2.v, pending.u + a * pending.y], [g2_generator(), self._ss]):
            raise AuthenticationFailed("M-Pin proof rejected: wrong PIN, missing or foreign key "
                                       "share, or a permit for another identity")
        return MpinIdentity.decode(pending.identity)

    def __repr__(self) -> str:
        return "<MpinServer (server secret hidden)>"

    __str__ = __repr__
