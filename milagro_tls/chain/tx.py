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


#: Satoshis per bitcoin, and Core's MAX_MONEY (amount.h).
COIN = 100_000_000
MAX_MONEY = 21_000_000 * COIN

Outpoint = tuple[bytes, int]     # (txid wire order, vout)


def outpoint(tx_in) -> Outpoint:
    """What an embit input spends, with the txid in wire order (embit keeps display order)."""
    return (bytes(tx_in.txid)[::-1], tx_in.vout)


def tx_weight(raw: bytes, tx: Transaction) -> int:
    """BIP141 weight: 3 x the size without witness data + the full size."""
    if not tx.is_segwit:
        return 4 * len(raw)
    stripped = len(raw) - 2 - sum(len(i.witness.serialize()) for i in tx.vin)    # minus marker, flag
    return 3 * stripped + len(raw)


def vsize(raw: bytes) -> int:
    """BIP141 virtual size, ceil(weight / 4): what fee rates divide by."""
    return -(-tx_weight(raw, parse_tx(raw)) // 4)


def is_coinbase(tx: Transaction) -> bool:
    return len(tx.vin) == 1 and tx.vin[0].txid == b"\x00" * 32 and tx.vin[0].vout == 0xFFFFFFFF
