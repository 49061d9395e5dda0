"""The 80-byte block header: parsing, hashing, targets and work."""
from __future__ import annotations

import functools
import struct
from typing import NamedTuple

from .errors import HeaderRejected
from .hashes import sha256d, to_display_hex

HEADER_SIZE = 80
#: The wire layout of a header; the header chain unpacks with it directly during sync.
HEADER_STRUCT = struct.Struct("<i32s32sIII")


@functools.lru_cache(maxsize=4096)  # a chain uses few distinct nBits; headers sync at 50k/s
def bits_to_target(bits: int) -> int:
    """nBits (compact) to the 256-bit target, as Core's arith_uint256::SetCompact.

    A negative or overflowing compact value is invalid; callers reject it.
    """
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if exponent <= 3:
        target = mantissa >> (8 * (3 - exponent))
    else:
        target = mantissa << (8 * (exponent - 3))
    negative = mantissa != 0 and (bits & 0x00800000) != 0
    overflow = mantissa != 0 and (
        exponent > 34 or (mantissa > 0xFF and exponent > 33) or (mantissa > 0xFFFF and exponent > 32))
    if negative or overflow:
        raise ValueError(f"invalid compact target {bits:#010x}")
    return target


def target_to_bits(target: int) -> int:
    """The 256-bit target to nBits, as Core's arith_uint256::GetCompact."""
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        compact = target << (8 * (3 - size))
    else:
        compact = target >> (8 * (size - 3))
    if compact & 0x00800000:
        compact >>= 8
        size += 1
    return compact | (size << 24)


def work_from_bits(bits: int) -> int:
    """Expected hashes for a block at this target: 2**256 / (target + 1), as Core's GetBlockProof."""
    target = bits_to_target(bits)
    if target == 0:
        return 0
    return (1 << 256) // (target + 1)


class BlockHeader(NamedTuple):
    """An immutable header. A NamedTuple rather than a frozen dataclass: header sync builds
    one per header, and a frozen dataclass's __init__ costs ten times the struct unpack."""
    version: int
    prev_hash: bytes       # wire order
    merkle_root: bytes     # wire order
    time: int
    bits: int
    nonce: int

    @classmethod
    def parse(cls, raw: bytes) -> "BlockHeader":
        if len(raw) != HEADER_SIZE:
            raise ValueError(f"a block header is {HEADER_SIZE} bytes, got {len(raw)}")
        return cls._make(HEADER_STRUCT.unpack(raw))

    def serialize(self) -> bytes:
        return HEADER_STRUCT.pack(*self)

    @property
    def hash(self) -> bytes:
        return sha256d(self.serialize())

    @property
    def hash_hex(self) -> str:
        return to_display_hex(self.hash)

    @property
    def target(self) -> int:
        return bits_to_target(self.bits)

    @property
    def work(self) -> int:
        return work_from_bits(self.bits)

    def check_proof_of_work(self, pow_limit_bits: int, block_hash: bytes | None = None) -> None:
        """Raise HeaderRejected unless hash <= target <= pow limit (Core's CheckProofOfWork).

        ``.rule`` is the bare reject reason ("high-hash", "bad-diffbits") so callers can
        compare it. Core reports all of these as "high-hash"; an unusable target is
        kept apart here as "bad-diffbits" because it is a fault of nBits, not of the hash.
        """
        try:
            target = bits_to_target(self.bits)
        except ValueError:
            raise HeaderRejected("bad-diffbits", self.hash_hex) from None
        if target == 0 or target > bits_to_target(pow_limit_bits):
            raise HeaderRejected("bad-diffbits", self.hash_hex)
        # The header chain passes the hash it already computed: hashing twice was 15% of sync.
        if int.from_bytes(block_hash or self.hash, "little") > target:
            raise HeaderRejected("high-hash", self.hash_hex)
