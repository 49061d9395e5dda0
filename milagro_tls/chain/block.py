"""Whole blocks: parsing, the transaction Merkle root and the BIP141 witness commitment."""
from __future__ import annotations

import io
from dataclasses import dataclass

from embit import compact
from embit.transaction import Transaction

from ..errors import MalformedInput
from .hashes import sha256d
from .header import HEADER_SIZE, BlockHeader
from .merkle import merkle_root
from .tx import read_tx, tx_weight, txid_of, wtxid_of

#: BIP141: the commitment output's script starts with OP_RETURN, a 36-byte push and this tag.
WITNESS_COMMITMENT_PREFIX = bytes.fromhex("6a24aa21a9ed")


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    txs: tuple[Transaction, ...]
    raw_txs: tuple[bytes, ...]

    @classmethod
    def parse(cls, raw: bytes) -> "Block":
        if len(raw) < HEADER_SIZE + 1:
            raise MalformedInput("block too short")
        header = BlockHeader.parse(raw[:HEADER_SIZE])
        stream = io.BytesIO(raw[HEADER_SIZE:])
        try:
            count = compact.read_from(stream)
        except Exception:
            raise MalformedInput("block transaction count does not parse") from None
        if count == 0 or count > len(raw) // 60:
            raise MalformedInput(f"implausible transaction count {count}")
        txs, raws = [], []
        for _ in range(count):
            tx, tx_raw = read_tx(stream)
            txs.append(tx)
            raws.append(tx_raw)
        if stream.read(1):
            raise MalformedInput("trailing bytes after the last transaction")
        return cls(header, tuple(txs), tuple(raws))

    def serialize(self) -> bytes:
        return self.header.serialize() + compact.to_bytes(len(self.txs)) + b"".join(self.raw_txs)

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def txids(self) -> list[bytes]:
        return [txid_of(tx) for tx in self.txs]

    def wtxids(self) -> list[bytes]:
        """BIP141: the coinbase's wtxid counts as 32 zero bytes."""
        return [b"\x00" * 32] + [wtxid_of(raw) for raw in self.raw_txs[1:]]

    def computed_merkle_root(self) -> bytes:
        return merkle_root(self.txids())

    def has_witness(self) -> bool:
        return any(tx.is_segwit for tx in self.txs)


def block_weight(block: Block) -> int:
    """BIP141 weight of a block: header and transaction count weigh 4 per byte, each transaction its own."""
    overhead = HEADER_SIZE + len(compact.to_bytes(len(block.txs)))
    return 4 * overhead + sum(tx_weight(raw, tx) for raw, tx in zip(block.raw_txs, block.txs))


def witness_commitment(coinbase: Transaction) -> bytes | None:
    """The 32-byte commitment of a coinbase, or None. BIP141: the last matching output wins."""
    found = None
    for out in coinbase.vout:
        script = out.script_pubkey.data
        if len(script) >= 38 and script[:6] == WITNESS_COMMITMENT_PREFIX:
            found = script[6:38]
    return found


def witness_reserved_value(coinbase: Transaction) -> bytes | None:
    """BIP141: the coinbase's input witness must be exactly one 32-byte item."""
    items = coinbase.vin[0].witness.items
    if len(items) != 1 or len(items[0]) != 32:
        return None
    return bytes(items[0])


def commitment_for(witness_root: bytes, reserved: bytes) -> bytes:
    return sha256d(witness_root + reserved)
