"""A D-TA's master secret, the shares it issues, and the signed form they travel in.

Each D-TA i holds s_i. It issues, always through curve.secret_mul (never a plain s_i·P):

* client secret share   CS_i = s_i·H(ID)                 (G1; secret: the user's key share)
* time permit           TP_i = s_i·H_T(date, H(ID))      (G1; useless without CS, may be public)
* server secret share   SS_i = s_i·Q                     (G2; secret: with a stolen token it lets
                                                          anyone search the PIN offline, so it
                                                          goes only to registered services)

A client adds the shares of all its D-TAs (combine_g1), a service adds the server shares
(combine_g2): only the sums are the keys, and no single D-TA holds them.

Every share travels as a ``SignedShare``: an RFC 8785 canonical JSON statement signed BIP340 by
the D-TA's anchored identity key (StatementType.SHARE), so a client can prove where a share came
from and check it against the D-TA's anchor (PeerIdentity.certificate.pubkey).
"""
from __future__ import annotations

import enum
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import rfc8785

from ..errors import IdentityError
from ..identity.keys import IdentityKey, StatementType, read_key_file, write_key_file
from ..identity.locator import Locator
from .curve import (
    G1Point, G2Point, Scalar, decode_g1, decode_g2, encode_g1, encode_g2, g2_generator,
    random_scalar, secret_mul, sum_points,
)
from .errors import (
    InvalidMasterSecret, MalformedPoint, MalformedShare, ShareMismatch, ShareSignatureError,
)
from .identity import check_date, decode_identity, hash_identity, hash_time_permit

__all__ = [
    "MasterSecret", "client_secret_share", "time_permit_share", "server_secret_share",
    "ShareKind", "SignedShare", "sign_share", "verify_share", "issue_client_secret",
    "issue_time_permit", "issue_server_secret", "combine_g1", "combine_g2",
]


class MasterSecret:
    """s_i: a non-zero scalar, kept in a 0600 key file of 32 bytes (hex), never shown.

    repr/str hide it, it does not pickle, and it has no accessor: the only way to use it is
    through the issuing functions below, which multiply with curve.secret_mul.
    """

    __slots__ = ("_scalar",)

    def __init__(self, scalar: Scalar) -> None:
        if not isinstance(scalar, Scalar):
            raise TypeError("a master secret is a Scalar")
        if scalar.is_zero():
            raise InvalidMasterSecret("the master secret is zero modulo the group order")
        self._scalar = scalar

    @classmethod
    def generate(cls) -> "MasterSecret":
        return cls(random_scalar())

    @classmethod
    def from_bytes(cls, secret: bytes) -> "MasterSecret":
        """32 bytes big-endian, reduced modulo the group order; zero is refused."""
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
            raise InvalidMasterSecret("a master secret is 32 bytes")
        return cls(Scalar.from_be_bytes_mod_order(bytes(secret)))

    @classmethod
    def create(cls, path: Path) -> "MasterSecret":
        """Generate one and write it to a new key file (mode 0600; an existing file is refused)."""
        secret = cls.generate()
        write_key_file(Path(path), secret._scalar.to_be_bytes())
        return secret

    @classmethod
    def load(cls, path: Path) -> "MasterSecret":
        """Read a key file (refused if group/other can read it: IdentityError)."""
        return cls.from_bytes(read_key_file(Path(path)))

    @classmethod
    def ensure(cls, path: Path) -> "MasterSecret":
        """Load the key file, creating it first if there is none (create is O_EXCL, so two
        processes starting together end up with the same secret)."""
        try:
            return cls.create(path)
        except FileExistsError:
            return cls.load(path)

    def _mul(self, point):
        return secret_mul(self._scalar, point)

    def __repr__(self) -> str:
        return "<MasterSecret (hidden)>"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a MasterSecret is not serialisable; it lives in its key file")


def client_secret_share(master: MasterSecret, id_point: G1Point) -> G1Point:
    """CS_i = s_i·H(ID)."""
    if not isinstance(id_point, G1Point):
        raise TypeError("id_point is H(ID), a G1Point")
    return master._mul(id_point)


def time_permit_share(master: MasterSecret, id_point: G1Point, date: int) -> G1Point:
    """TP_i = s_i·H_T(date, H(ID))."""
    if not isinstance(id_point, G1Point):
        raise TypeError("id_point is H(ID), a G1Point")
    return master._mul(hash_time_permit(date, id_point))


def server_secret_share(master: MasterSecret) -> G2Point:
    """SS_i = s_i·Q. A server secret: only for services registered with the D-TA."""
    return master._mul(g2_generator())


def combine_g1(points: Iterable[G1Point]) -> G1Point:
    """CS = Σ CS_i or TP = Σ TP_i. Refuses no shares and a sum that is the identity."""
    points = list(points)
    if not points:
        raise ValueError("combine_g1 needs at least one share")
    total = sum_points(points, G1Point)
    if total == G1Point.identity():
        raise MalformedPoint("the shares sum to the identity")
    return total


def combine_g2(points: Iterable[G2Point]) -> G2Point:
    """SS = Σ SS_i. Refuses no shares and a sum that is the identity."""
    points = list(points)
    if not points:
        raise ValueError("combine_g2 needs at least one share")
    total = sum_points(points, G2Point)
    if total == G2Point.identity():
        raise MalformedPoint("the shares sum to the identity")
    return total


class ShareKind(str, enum.Enum):
    CLIENT_SECRET = "client-secret"
    TIME_PERMIT = "time-permit"
    SERVER_SECRET = "server-secret"


_FIELDS = ("kind", "dta", "dta_locator", "id", "date", "point", "recipient", "issued")


def _locator_json(value: Any, label: str) -> dict:
    """The canonical JSON form of a Locator (given as a Locator or its JSON)."""
    if isinstance(value, Locator):
        return value.to_json()
    try:
        return Locator.from_json(value).to_json()
    except IdentityError as exc:
        raise MalformedShare(f"share {label}: {exc}") from None


@dataclass(frozen=True, slots=True, repr=False)
class SignedShare:
    """A share and the D-TA's BIP340 signature over its canonical statement.

    ``point`` is a G1Point (client secret, time permit) or G2Point (server secret). repr hides it:
    client and server shares are secrets. Build with sign_share/issue_*, parse with from_json.
    """
    kind: ShareKind
    dta: str
    dta_locator: dict
    identity: bytes | None
    date: int | None
    point: G1Point | G2Point
    recipient: dict
    issued: int
    signature: bytes

    def statement(self) -> dict[str, Any]:
        """The signed JSON object (before canonicalisation)."""
        encode = encode_g2 if self.kind is ShareKind.SERVER_SECRET else encode_g1
        return {
            "kind": self.kind.value,
            "dta": self.dta,
            "dta_locator": self.dta_locator,
            "id": None if self.identity is None else self.identity.hex(),
            "date": self.date,
            "point": encode(self.point).hex(),
            "recipient": self.recipient,
            "issued": self.issued,
        }

    def canonical(self) -> bytes:
        """RFC 8785 bytes of the statement: what the signature covers."""
        return rfc8785.dumps(self.statement())

    def digest(self) -> bytes:
        """SHA-256 of the canonical statement (the activity log's share digest)."""
        return hashlib.sha256(self.canonical()).digest()

    @property
    def recipient_locator(self) -> Locator:
        return Locator.from_json(self.recipient)

    @property
    def dta_locator_obj(self) -> Locator:
        return Locator.from_json(self.dta_locator)

    def to_json(self) -> dict[str, Any]:
        """{"share": statement, "signature": hex64}."""
        return {"share": self.statement(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> "SignedShare":
        """Strict parse: exactly the fields, the right types, points decoded (subgroup, not the
        identity). Does not verify the signature: call verify_share."""
        if not isinstance(doc, dict) or set(doc) != {"share", "signature"}:
            raise MalformedShare('a signed share is {"share": {...}, "signature": hex}')
        statement, signature = doc["share"], doc["signature"]
        if not isinstance(statement, dict) or set(statement) != set(_FIELDS):
            raise MalformedShare(f"a share statement has exactly the fields {', '.join(_FIELDS)}")
        try:
            sig = bytes.fromhex(signature) if isinstance(signature, str) else None
        except ValueError:
            sig = None
        if sig is None or len(sig) != 64:
            raise MalformedShare("a share signature is 64 bytes of hex")
        try:
            kind = ShareKind(statement["kind"])
        except (ValueError, TypeError):
            raise MalformedShare(f"unknown share kind {statement['kind']!r}") from None
        raw_id = statement["id"]
        identity = None
        if raw_id is not None:
            try:
                identity = bytes.fromhex(raw_id) if isinstance(raw_id, str) else None
            except ValueError:
                identity = None
            if identity is None:
                raise MalformedShare("share id is hex or null")
        point_hex = statement["point"]
        if not isinstance(point_hex, str):
            raise MalformedShare("share point is hex")
        try:
            point = (decode_g2 if kind is ShareKind.SERVER_SECRET else decode_g1)(point_hex)
        except MalformedPoint as exc:
            raise MalformedShare(f"share point: {exc}") from None
        issued = statement["issued"]
        if isinstance(issued, bool) or not isinstance(issued, int) or issued < 0:
            raise MalformedShare("share issued is a non-negative integer (unix seconds)")
        return _build(kind=kind, dta=statement["dta"], dta_locator=statement["dta_locator"],
                      identity=identity, date=statement["date"], point=point,
                      recipient=statement["recipient"], issued=issued, signature=sig)

    def __repr__(self) -> str:
        return (f"<SignedShare {self.kind.value} from {self.dta!r} date={self.date} "
                f"issued={self.issued} (point hidden)>")

    __str__ = __repr__


def _build(*, kind: ShareKind, dta: Any, dta_locator: Any, identity: bytes | None, date: Any,
           point: Any, recipient: Any, issued: int, signature: bytes) -> SignedShare:
    """Check a share's fields against its kind and normalise the locators."""
    if not isinstance(dta, str) or not dta:
        raise MalformedShare("share dta is a non-empty name")
    if kind is ShareKind.SERVER_SECRET:
        if identity is not None or date is not None:
            raise MalformedShare("a server-secret share has null id and date")
        if not isinstance(point, G2Point):
            raise MalformedShare("a server-secret share is a G2 point")
    else:
        if identity is None:
            raise MalformedShare(f"a {kind.value} share names the identity")
        try:
            decode_identity(identity)
        except Exception as exc:
            raise MalformedShare(f"share id: {exc}") from None
        if not isinstance(point, G1Point):
            raise MalformedShare(f"a {kind.value} share is a G1 point")
        if kind is ShareKind.TIME_PERMIT:
            try:
                check_date(date)
            except Exception:
                raise MalformedShare("a time permit's date is a day number (u32)") from None
        elif date is not None:
            raise MalformedShare("a client-secret share has a null date")
    return SignedShare(kind=kind, dta=dta, dta_locator=_locator_json(dta_locator, "dta_locator"),
                       identity=identity, date=date, point=point,
                       recipient=_locator_json(recipient, "recipient"), issued=issued,
                       signature=signature)


def sign_share(key: IdentityKey, *, kind: ShareKind, dta: str, dta_locator: Locator | dict,
               point: G1Point | G2Point, recipient: Locator | dict, identity: bytes | None = None,
               date: int | None = None, issued: int | None = None) -> SignedShare:
    """Sign a share with the D-TA's identity key (StatementType.SHARE over the canonical JSON)."""
    kind = ShareKind(kind)
    if issued is None:
        issued = int(time.time())
    unsigned = _build(kind=kind, dta=dta, dta_locator=dta_locator,
                      identity=None if identity is None else bytes(identity), date=date,
                      point=point, recipient=recipient, issued=issued, signature=b"")
    signature = key.sign_statement(StatementType.SHARE, unsigned.canonical())
    return _build(kind=kind, dta=unsigned.dta, dta_locator=unsigned.dta_locator,
                  identity=unsigned.identity, date=date, point=point, recipient=unsigned.recipient,
                  issued=issued, signature=signature)


def verify_share(signed: SignedShare, dta_pubkey: bytes, *, kind: ShareKind | None = None,
                 identity: bytes | None = None, date: int | None = None,
                 recipient: Locator | None = None, dta_locator: Locator | None = None) -> SignedShare:
    """Check the signature under ``dta_pubkey`` (the D-TA's anchored key,
    PeerIdentity.certificate.pubkey), then each expectation given. Returns ``signed``.

    ShareSignatureError: tampered, or signed by another key. ShareMismatch: a genuine share that
    is not the one asked for (another kind, identity, date, recipient or D-TA locator).
    """
    if not isinstance(signed, SignedShare):
        raise TypeError("verify_share takes a SignedShare (parse with SignedShare.from_json)")
    try:
        good = IdentityKey.verify_statement(bytes(dta_pubkey), StatementType.SHARE,
                                            signed.canonical(), signed.signature)
    except Exception:          # a malformed key or signature is a failed verification
        good = False
    if not good:
        raise ShareSignatureError(f"the {signed.kind.value} share's signature does not verify "
                                  f"under the D-TA key {bytes(dta_pubkey).hex()}")
    if kind is not None and signed.kind is not ShareKind(kind):
        raise ShareMismatch(f"expected a {ShareKind(kind).value} share, got {signed.kind.value}")
    if identity is not None and signed.identity != bytes(identity):
        raise ShareMismatch("the share was issued for another identity")
    if date is not None and signed.date != date:
        raise ShareMismatch(f"the share is for date {signed.date}, expected {date}")
    if recipient is not None and signed.recipient != recipient.to_json():
        raise ShareMismatch("the share was issued to another recipient locator")
    if dta_locator is not None and signed.dta_locator != dta_locator.to_json():
        raise ShareMismatch("the share names another D-TA locator")
    return signed


def issue_client_secret(master: MasterSecret, key: IdentityKey, *, identity: bytes, dta: str,
                        dta_locator: Locator | dict, recipient: Locator | dict,
                        issued: int | None = None) -> SignedShare:
    """CS_i for ``identity``, signed."""
    point = client_secret_share(master, hash_identity(identity))
    return sign_share(key, kind=ShareKind.CLIENT_SECRET, dta=dta, dta_locator=dta_locator,
                      point=point, recipient=recipient, identity=identity, issued=issued)


def issue_time_permit(master: MasterSecret, key: IdentityKey, *, identity: bytes, date: int,
                      dta: str, dta_locator: Locator | dict, recipient: Locator | dict,
                      issued: int | None = None) -> SignedShare:
    """TP_i for ``identity`` on day ``date``, signed."""
    point = time_permit_share(master, hash_identity(identity), date)
    return sign_share(key, kind=ShareKind.TIME_PERMIT, dta=dta, dta_locator=dta_locator,
                      point=point, recipient=recipient, identity=identity, date=date, issued=issued)


def issue_server_secret(master: MasterSecret, key: IdentityKey, *, dta: str,
                        dta_locator: Locator | dict, recipient: Locator | dict,
                        issued: int | None = None) -> SignedShare:
    """SS_i for a registered service (``recipient``), signed."""
    return sign_share(key, kind=ShareKind.SERVER_SECRET, dta=dta, dta_locator=dta_locator,
                      point=server_secret_share(master), recipient=recipient, issued=issued)
