"""One bounds-checked reader for the binary formats this package parses from peers and sources."""
from __future__ import annotations

from ..errors import MalformedInput

#: Core's MAX_SIZE (serialize.h): no CompactSize may claim more than 32 MiB.
MAX_COMPACT_SIZE = 0x02000000


class ByteReader:
    """Reads ``data`` front to back; every shortfall raises MalformedInput naming ``what``."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedInput(f"{self.what} is truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, width: int) -> int:
        """A big-endian unsigned integer of ``width`` bytes (this project's own formats)."""
        return int.from_bytes(self.take(width), "big")

    def compact_size(self, limit: int) -> int:
        """Core's ReadCompactSize: shortest encoding only, at most MAX_SIZE (and ``limit``)."""
        first = self.take(1)[0]
        if first < 0xFD:
            value, smallest = first, 0
        else:
            width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
            value = int.from_bytes(self.take(width), "little")
            smallest = {2: 0xFD, 4: 0x10000, 8: 0x100000000}[width]
        if value < smallest:
            raise MalformedInput(f"non-canonical CompactSize in {self.what}")
        if value > min(MAX_COMPACT_SIZE, limit):
            raise MalformedInput(f"CompactSize {value} exceeds what the {self.what} can hold")
        return value

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise MalformedInput(f"trailing bytes after {self.what}")
