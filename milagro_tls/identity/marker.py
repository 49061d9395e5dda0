"""The OP_RETURN marker: every OP_RETURN this project writes is exactly 40 bytes.

    "MILAGRO" (7 ASCII bytes) ‖ type (1 byte) ‖ SHA256 hash (32 bytes)

The output script is therefore ``6a 28`` followed by those 40 bytes (42 bytes),
standard under every relay policy (the pre-v30 limit was an 83-byte script).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from ..chain.errors import MalformedAnchor, UnknownMarkerType

MAGIC = b"MILAGRO"
PAYLOAD_SIZE = 40
OP_RETURN = 0x6A


class MarkerType(enum.IntEnum):
    #: SHA256 of one canonical Birth Certificate: a single anchor.
    BIRTH_CERTIFICATE = 0x01
    #: Merkle root of the certificate digests of a taproot batch.
    BATCH_ROOT = 0x02
    #: Merkle root of a role's activity log for one period.
    ACTIVITY_LOG_ROOT = 0x03
    #: Merkle root of a sorted list of revoked certificate digests.
    REVOCATION_LIST_ROOT = 0x04


@dataclass(frozen=True, slots=True)
class Marker:
    type: MarkerType
    digest: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != 32:
            raise ValueError("a marker commits to a 32-byte hash")

    def payload(self) -> bytes:
        return MAGIC + bytes([self.type]) + self.digest

    def script(self) -> bytes:
        return bytes([OP_RETURN, PAYLOAD_SIZE]) + self.payload()

    @classmethod
    def parse_script(cls, script: bytes) -> "Marker":
        """Parse an output script; raises MalformedAnchor / UnknownMarkerType."""
        if len(script) != PAYLOAD_SIZE + 2 or script[0] != OP_RETURN or script[1] != PAYLOAD_SIZE:
            raise MalformedAnchor("output is not a 40-byte OP_RETURN marker")
        payload = script[2:]
        if payload[:7] != MAGIC:
            raise MalformedAnchor("OP_RETURN does not carry the MILAGRO magic")
        try:
            kind = MarkerType(payload[7])
        except ValueError:
            raise UnknownMarkerType(f"unknown marker type {payload[7]:#04x}") from None
        return cls(kind, payload[8:])


def find_markers(output_scripts: list[bytes]) -> list[tuple[int, Marker]]:
    """Every MILAGRO marker among a transaction's outputs, with its output index.

    Foreign OP_RETURNs are ignored; a MILAGRO OP_RETURN of an unknown type raises.
    """
    found = []
    for index, script in enumerate(output_scripts):
        if script[:1] == bytes([OP_RETURN]) and script[2:9] == MAGIC:
            found.append((index, Marker.parse_script(script)))
    return found
