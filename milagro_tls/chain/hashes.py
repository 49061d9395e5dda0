"""Bitcoin's hash functions and byte-order helpers.

Hashes are bytes in wire (internal) order everywhere in this package; only the
``*_hex`` helpers and JSON forms use Bitcoin's reversed display order.
"""
from __future__ import annotations

import hashlib


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340's tagged hash: SHA256(SHA256(tag) || SHA256(tag) || data)."""
    tag_digest = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(tag_digest + tag_digest + data).digest()


def to_display_hex(h: bytes) -> str:
    """Wire-order hash to the reversed hex that explorers and RPC print."""
    return h[::-1].hex()


def from_display_hex(s: str) -> bytes:
    """Reversed hex (RPC, explorers) to a wire-order 32-byte hash."""
    raw = bytes.fromhex(s)
    if len(raw) != 32:
        raise ValueError(f"expected a 32-byte hash, got {len(raw)} bytes")
    return raw[::-1]
