"""M-Pin identities and the points they hash to.

ID = u16be(len issuer) || issuer || u16be(len sub) || sub (UTF-8): the OpenID Connect issuer and
subject together, length-prefixed so that no two (issuer, sub) pairs share an encoding.
H(ID) = hash_to_g1(ID, DST_ID). A time permit for day d (days since the Unix epoch, UTC) is bound
to H(ID) through H_T(d, H(ID)) = hash_to_g1(u32be(d) || compressed(H(ID)), DST_TP); a client
authenticates on day d as A = H(ID) + H_T(d, H(ID)). The two tags keep the two hashes apart and
apart from every other use of the suite.
"""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from .curve import G1Point, encode_g1, hash_to_g1
from .errors import MalformedIdentity

__all__ = [
    "DST_ID", "DST_TP", "SECONDS_PER_DAY", "MpinIdentity", "encode_identity", "decode_identity",
    "hash_identity", "hash_time_permit", "authentication_point", "day_number", "today",
    "check_date",
]

DST_ID = b"MILAGRO-TLS-V1-MPIN-ID_BLS12381G1_XMD:SHA-256_SSWU_RO_"
DST_TP = b"MILAGRO-TLS-V1-MPIN-TP_BLS12381G1_XMD:SHA-256_SSWU_RO_"
SECONDS_PER_DAY = 86400
_MAX_FIELD = 0xFFFF


def _field(value: str, label: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise MalformedIdentity(f"the {label} is a non-empty string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedIdentity(f"the {label} is not encodable as UTF-8") from None
    if len(raw) > _MAX_FIELD:
        raise MalformedIdentity(f"the {label} is longer than {_MAX_FIELD} bytes")
    return struct.pack(">H", len(raw)) + raw


def encode_identity(issuer: str, sub: str) -> bytes:
    """ID = u16be(len issuer) || issuer || u16be(len sub) || sub."""
    return _field(issuer, "issuer") + _field(sub, "sub")


def decode_identity(data: bytes) -> tuple[str, str]:
    """(issuer, sub) from an encoded ID; exact (no trailing bytes), UTF-8, non-empty fields."""
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedIdentity("an identity is bytes")
    data = bytes(data)
    fields = []
    offset = 0
    for label in ("issuer", "sub"):
        if len(data) < offset + 2:
            raise MalformedIdentity(f"identity truncated before the {label} length")
        (length,) = struct.unpack_from(">H", data, offset)
        offset += 2
        if length == 0 or len(data) < offset + length:
            raise MalformedIdentity(f"identity {label} is empty or truncated")
        try:
            fields.append(data[offset:offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise MalformedIdentity(f"identity {label} is not UTF-8") from None
        offset += length
    if offset != len(data):
        raise MalformedIdentity("identity has trailing bytes")
    return fields[0], fields[1]


@dataclass(frozen=True, slots=True)
class MpinIdentity:
    """An (issuer, sub) pair and its encoding; public data."""
    issuer: str
    sub: str

    def __post_init__(self) -> None:
        encode_identity(self.issuer, self.sub)      # refuse what cannot be encoded

    @property
    def encoded(self) -> bytes:
        return encode_identity(self.issuer, self.sub)

    @classmethod
    def decode(cls, data: bytes) -> "MpinIdentity":
        return cls(*decode_identity(data))

    def point(self) -> G1Point:
        return hash_identity(self.encoded)


def hash_identity(identity: bytes) -> G1Point:
    """H(ID) in G1. ``identity`` is an encoded ID (checked to parse)."""
    decode_identity(identity)
    return hash_to_g1(bytes(identity), DST_ID)


def check_date(date: int) -> int:
    """A day number fits u32 (and is an int, not a bool)."""
    if isinstance(date, bool) or not isinstance(date, int) or not 0 <= date <= 0xFFFFFFFF:
        raise MalformedIdentity("a permit date is a day number in [0, 2^32)")
    return date


def hash_time_permit(date: int, id_point: G1Point) -> G1Point:
    """H_T(date, H(ID)) = hash_to_g1(u32be(date) || compressed(H(ID)), DST_TP)."""
    return hash_to_g1(struct.pack(">I", check_date(date)) + encode_g1(id_point), DST_TP)


def authentication_point(identity: bytes, date: int) -> G1Point:
    """A = H(ID) + H_T(date, H(ID)): the point a client proves knowledge of s·A for."""
    id_point = hash_identity(identity)
    return id_point + hash_time_permit(date, id_point)


def day_number(unix_seconds: float) -> int:
    """Days since the Unix epoch (UTC) at ``unix_seconds``."""
    return int(unix_seconds // SECONDS_PER_DAY)


def today() -> int:
    """Today's day number (UTC) by the local clock."""
    return day_number(time.time())
