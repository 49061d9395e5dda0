"""The mempool: unconfirmed transactions the kernel's script check accepted.

Policy is deliberately thin (this is a regtest node): consensus checks in Core's
order with Core's reject reasons, no replacement (the first spend wins), no fee floor.
Entries are kept in acceptance order, which is a dependency order: a child can only
be accepted after its parents.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from embit.transaction import Transaction

from ...errors import MalformedInput
from ..errors import TxRejected
from ..hashes import to_display_hex
from ..network import PARAMS, Network
from ..script_text import is_unspendable
from ..tx import is_coinbase, parse_tx, txid_of
from ..tx import MAX_MONEY, Outpoint, outpoint, tx_weight
from .kernel import verify_scripts
from .sigops import MAX_TX_SIGOPS_COST, sigop_cost
from .store import Store, Utxo

COINBASE_MATURITY = PARAMS[Network.REGTEST].coinbase_maturity
MAX_TX_WEIGHT = 400_000          # Core's MAX_STANDARD_TX_WEIGHT: keeps every entry minable
MIN_TX_BASE_SIZE = 65            # Core's MIN_STANDARD_TX_NONWITNESS_SIZE
LOCKTIME_THRESHOLD = 500_000_000
SEQUENCE_FINAL = 0xFFFFFFFF
SEQ_DISABLE = 1 << 31
SEQ_TYPE_TIME = 1 << 22
SEQ_MASK = 0x0000FFFF



class ChainView(Protocol):
    """What validation needs from the confirmed chain (the node implements it)."""
    def coin(self, txid: bytes, vout: int) -> Utxo | None: ...
    def tx_confirmed(self, txid: bytes) -> bool: ...
    def tip_height(self) -> int: ...
    def mtp_at(self, height: int) -> int: ...          # median time past of the block at height


@dataclass(frozen=True, slots=True)
class Entry:
    txid: bytes
    raw: bytes
    tx: Transaction
    fee: int
    weight: int
    sigops: int
    prevouts: tuple[Outpoint, ...]


class Mempool:
    def __init__(self) -> None:
        self.entries: dict[bytes, Entry] = {}
        self.spenders: dict[Outpoint, bytes] = {}

    def __contains__(self, txid: bytes) -> bool:
        return txid in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def output(self, txid: bytes, vout: int) -> Utxo | None:
        entry = self.entries.get(txid)
        if entry is None or vout >= len(entry.tx.vout):
            return None
        out = entry.tx.vout[vout]
        if is_unspendable(out.script_pubkey.data):
            return None
        return Utxo(out.value, out.script_pubkey.data, None, False)

    def add(self, entry: Entry) -> None:
        self.entries[entry.txid] = entry
        for op in entry.prevouts:
            self.spenders[op] = entry.txid

    def remove(self, txid: bytes, *, with_descendants: bool = True) -> list[bytes]:
        """Remove an entry (and whatever spends its outputs); returns the removed txids."""
        removed: list[bytes] = []
        stack = [txid]
        while stack:
            t = stack.pop()
            entry = self.entries.pop(t, None)
            if entry is None:
                continue
            removed.append(t)
            for op in entry.prevouts:
                if self.spenders.get(op) == t:
                    del self.spenders[op]
            if with_descendants:
                stack.extend(s for (ptxid, _), s in list(self.spenders.items()) if ptxid == t)
        return removed

    def clear(self) -> None:
        self.entries.clear()
        self.spenders.clear()

    def check(self, raw: bytes, chain: ChainView) -> Entry:
        """Every check for acceptance; raises TxRejected. Nothing is stored."""
        try:
            if not isinstance(raw, (bytes, bytearray)):
                raise MalformedInput("not bytes")
            tx = parse_tx(bytes(raw))
        except MalformedInput:
            raise TxRejected("tx-decode-failed") from None
        raw = bytes(raw)
        txid = txid_of(tx)
        hexid = to_display_hex(txid)

        def reject(reason: str):
            return TxRejected(reason, hexid)

        # CheckTransaction (context-free consensus)
        if not tx.vin:
            raise reject("bad-txns-vin-empty")
        if not tx.vout:
            raise reject("bad-txns-vout-empty")
        weight = tx_weight(raw, tx)
        if weight > MAX_TX_WEIGHT:
            raise reject("tx-size")
        if (weight - len(raw)) // 3 < MIN_TX_BASE_SIZE:
            # Core's policy: a 64-byte transaction can pose as an inner Merkle node, and
            # anchors are proven with Merkle branches.
            raise reject("tx-size-small")
        total_out = 0
        for out in tx.vout:
            if out.value >= 1 << 63:
                raise reject("bad-txns-vout-negative")
            if out.value > MAX_MONEY:
                raise reject("bad-txns-vout-toolarge")
            total_out += out.value
            if total_out > MAX_MONEY:
                raise reject("bad-txns-txouttotal-toolarge")
        prevouts = tuple(outpoint(i) for i in tx.vin)
        if len(set(prevouts)) != len(prevouts):
            raise reject("bad-txns-inputs-duplicate")
        if is_coinbase(tx):
            raise reject("coinbase")
        if any(op == (b"\x00" * 32, 0xFFFFFFFF) for op in prevouts):
            raise reject("bad-txns-prevout-null")

        # Contextual checks against the next block
        next_height = chain.tip_height() + 1
        tip_mtp = chain.mtp_at(next_height - 1)
        if not _is_final(tx, next_height, tip_mtp):
            raise reject("non-final")
        if txid in self.entries:
            raise reject("txn-already-in-mempool")
        for op in prevouts:
            if op in self.spenders:
                raise reject("txn-mempool-conflict")
        coins: list[Utxo] = []
        for op in prevouts:
            coin = self.output(*op) or chain.coin(*op)
            if coin is None:
                if chain.tx_confirmed(txid):
                    raise reject("txn-already-known")
                raise reject("bad-txns-inputs-missingorspent")
            coins.append(coin)
        total_in = 0
        for coin in coins:
            if coin.is_coinbase and next_height - coin.height < COINBASE_MATURITY:
                raise reject("bad-txns-premature-spend-of-coinbase")
            total_in += coin.value
            if coin.value > MAX_MONEY or total_in > MAX_MONEY:
                raise reject("bad-txns-inputvalues-outofrange")
        if total_in < total_out:
            raise reject("bad-txns-in-belowout")
        if not _sequence_locks_ok(tx, coins, next_height, tip_mtp, chain):
            raise reject("non-BIP68-final")
        sigops = sigop_cost(tx, coins)
        if sigops > MAX_TX_SIGOPS_COST:
            raise reject("bad-txns-too-many-sigops")
        try:
            failed = verify_scripts(raw, [(c.script_pubkey, c.value) for c in coins])
        except ValueError:          # the kernel cannot parse what embit did
            raise reject("tx-decode-failed") from None
        if failed is not None:
            raise reject("mandatory-script-verify-flag-failed")
        return Entry(txid, raw, tx, total_in - total_out, weight, sigops, prevouts)

    # --- following the chain (the node calls these inside its index transaction) ---

    def rebuild(self, raws: list[bytes], chain: ChainView, store: Store) -> None:
        """Re-admit ``raws`` in order, silently dropping what no longer validates."""
        self.clear()
        for raw in raws:
            try:
                self.add(self.check(raw, chain))
            except TxRejected:
                pass
        store.mempool_replace([(e.txid, e.raw) for e in self.entries.values()])

    def confirmed(self, txs: list[Transaction], store: Store) -> None:
        """Blocks connected without a reorg: drop what they confirmed and what now conflicts."""
        removed: list[bytes] = []
        for tx in txs:
            txid = txid_of(tx)
            # its mempool children stay: they now spend a confirmed output
            removed += self.remove(txid, with_descendants=False)
            for inp in tx.vin:
                rival = self.spenders.get(outpoint(inp))
                if rival is not None and rival != txid:
                    removed += self.remove(rival)
        store.mempool_remove(removed)


def _is_final(tx: Transaction, height: int, mtp: int) -> bool:
    """Core's IsFinalTx for the next block (BIP113: time locks compare with the MTP)."""
    if tx.locktime == 0:
        return True
    limit = height if tx.locktime < LOCKTIME_THRESHOLD else mtp
    if tx.locktime < limit:
        return True
    return all(i.sequence == SEQUENCE_FINAL for i in tx.vin)


def _sequence_locks_ok(tx: Transaction, coins: list[Utxo], next_height: int, tip_mtp: int,
                       chain: ChainView) -> bool:
    """BIP68 relative lock-times, as Core's CalculateSequenceLocks + EvaluateSequenceLocks.

    Unconfirmed coins count as mined in the next block, as in Core's mempool.
    """
    if tx.version < 2:
        return True
    min_height, min_time = -1, -1
    for inp, coin in zip(tx.vin, coins):
        if inp.sequence & SEQ_DISABLE:
            continue
        coin_height = next_height if coin.height is None else coin.height
        if inp.sequence & SEQ_TYPE_TIME:
            base = chain.mtp_at(max(coin_height - 1, 0))
            min_time = max(min_time, base + ((inp.sequence & SEQ_MASK) << 9) - 1)
        else:
            min_height = max(min_height, coin_height + (inp.sequence & SEQ_MASK) - 1)
    return min_height < next_height and min_time < tip_mtp
