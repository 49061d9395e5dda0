"""Strict transaction parsing on top of embit, and the ids Bitcoin gives a transaction.

embit parses leniently (a short read yields zeros); every byte string that comes
from outside goes through ``parse_tx``, which demands an exact round trip.
"""
from __future__ import annotations

import io

from embit.transaction import Transaction

from ..errors import MalformedInput
from .hashes import sha256d


def parse_tx(raw: bytes) -> Transaction:
    try:
        tx = Transaction.read_from(io.BytesIO(raw))
    except Exception as exc:  # embit raises a mix of its own and builtin errors
        raise MalformedInput(f"transaction does not parse: {exc}") from None
    if tx.serialize() != raw:
        raise MalformedInput("transaction is not in canonical serialization (truncated, trailing or non-minimal bytes)")
    return tx


def read_tx(stream: io.BytesIO) -> tuple[Transaction, bytes]:
    """Parse one transaction from a stream and return it with its exact bytes."""
    start = stream.tell()
    try:
        tx = Transaction.read_from(stream)
    except Exception as exc:
        raise MalformedInput(f"transaction does not parse: {exc}") from None
    end = stream.tell()
    stream.seek(start)
    raw = stream.read(end - start)
    if tx.serialize() != raw:
        raise MalformedInput("transaction is not in canonical serialization")
    return tx, raw


def txid_of(tx: Transaction) -> bytes:
    """The txid in wire order: double SHA256 of the serialization without witness."""
    return tx.hash()


def wtxid_of(raw: bytes) -> bytes:
    """The wtxid in wire order (BIP141): double SHA256 of the full serialization."""
    return sha256d(raw)


def is_coinbase(tx: Transaction) -> bool:
    return len(tx.vin) == 1 and tx.vin[0].txid == b"\x00" * 32 and tx.vin[0].vout == 0xFFFFFFFF
