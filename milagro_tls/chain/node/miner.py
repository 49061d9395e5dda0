"""Coinbases and block assembly for regtest.

The kernel judges every block this module builds; nothing here is trusted. The
encodings follow Core's miner (CreateNewBlock, GenerateCoinbaseCommitment).
"""
from __future__ import annotations

import os
import struct

from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from ..block import WITNESS_COMMITMENT_PREFIX, Block, commitment_for
from ..hashes import sha256d
from ..header import BlockHeader, bits_to_target
from ..merkle import merkle_root
from ..network import PARAMS, Network
from ..tx import COIN, outpoint, parse_tx, txid_of, wtxid_of
from .sigops import MAX_BLOCK_SIGOPS_COST

REGTEST = PARAMS[Network.REGTEST]
BLOCK_VERSION = 0x20000000          # BIP9 top bits, no deployment signalled
REGTEST_BITS = REGTEST.pow_limit_bits
MAX_FUTURE_DRIFT = 2 * 60 * 60      # Core rejects blocks more than 2 h ahead of its clock
MAX_BLOCK_WEIGHT = 4_000_000
#: Room left for the header and the coinbase (whose payee script is the caller's choice).
COINBASE_RESERVE_WEIGHT = 8_000
COINBASE_RESERVE_SIGOPS = 400


def subsidy(height: int) -> int:
    halvings = height // REGTEST.halving_interval
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


def script_num(n: int) -> bytes:
    """CScriptNum serialization: little-endian magnitude, sign in the top bit."""
    if n == 0:
        return b""
    neg, mag = n < 0, abs(n)
    out = bytearray()
    while mag:
        out.append(mag & 0xFF)
        mag >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0x00)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def push_int(n: int) -> bytes:
    """``CScript() << n``: OP_0, OP_1NEGATE and OP_1..OP_16 are single opcodes.

    BIP34 is checked against exactly this encoding, so a coinbase at height 1..16
    must start with OP_1..OP_16, not with a one-byte data push.
    """
    if n == 0:
        return b"\x00"
    if n == -1 or 1 <= n <= 16:
        return bytes([0x50 + n])
    data = script_num(n)
    return bytes([len(data)]) + data          # heights stay far below OP_PUSHDATA1 sizes


def coinbase_tx(height: int, value: int, script_pubkey: bytes, *, witness: bool) -> Transaction:
    """The coinbase; the caller appends the witness commitment output (it depends on the txids)."""
    # A random extranonce keeps coinbases of competing blocks at one height distinct,
    # so side branches never share a txid with the active chain.
    script_sig = push_int(height) + b"\x08" + os.urandom(8)
    vin = TransactionInput(b"\x00" * 32, 0xFFFFFFFF, Script(script_sig), 0xFFFFFFFF,
                           Witness([b"\x00" * 32]) if witness else None)
    return Transaction(version=2, vin=[vin], vout=[TransactionOutput(value, Script(script_pubkey))], locktime=0)


def add_witness_commitment(coinbase: Transaction, raw_txs: list[bytes]) -> None:
    """BIP141: commit to the wtxids (the coinbase's counts as zero) with a zero reserved value."""
    wtxids = [b"\x00" * 32] + [wtxid_of(raw) for raw in raw_txs]
    commitment = commitment_for(merkle_root(wtxids), b"\x00" * 32)
    coinbase.vout.append(TransactionOutput(0, Script(WITNESS_COMMITMENT_PREFIX + commitment)))


def grind(header: BlockHeader) -> BlockHeader:
    """Find a nonce under the target (regtest: about two tries)."""
    target = bits_to_target(header.bits)
    prefix = header.serialize()[:76]
    for nonce in range(1 << 32):
        raw = prefix + struct.pack("<I", nonce)
        if int.from_bytes(sha256d(raw), "little") <= target:
            return BlockHeader.parse(raw)
    raise RuntimeError("nonce space exhausted; change the time or the coinbase")


def select(entries) -> tuple[list[bytes], int]:
    """Mempool entries (in acceptance = dependency order) that fit one block: parents
    first, within the weight and sigop limits. Returns (raw txs, total fees)."""
    weight_left = MAX_BLOCK_WEIGHT - COINBASE_RESERVE_WEIGHT
    sigops_left = MAX_BLOCK_SIGOPS_COST - COINBASE_RESERVE_SIGOPS
    pending = {e.txid for e in entries}
    taken: set[bytes] = set()
    raws, fees = [], 0
    for e in entries:
        parents = {op[0] for op in e.prevouts if op[0] in pending}
        if e.weight > weight_left or e.sigops > sigops_left or not parents <= taken:
            continue            # its descendants are skipped too: their parent is not taken
        weight_left -= e.weight
        sigops_left -= e.sigops
        taken.add(e.txid)
        raws.append(e.raw)
        fees += e.fee
    return raws, fees


def fees_of(raws: list[bytes], lookup) -> int:
    """Best-effort fees of explicit transactions; ``lookup(txid, vout)`` gives a coin or
    None. A transaction with an unknown input counts as paying no fee: a coinbase that
    claims less than it may is still valid."""
    made: dict[tuple[bytes, int], int] = {}
    fees = 0
    for raw in raws:
        tx = parse_tx(raw)
        total_in: int | None = 0
        for inp in tx.vin:
            op = outpoint(inp)
            coin = lookup(*op)
            value = made.get(op, coin.value if coin is not None else None)
            if value is None:
                total_in = None
                break
            total_in += value
        txid = txid_of(tx)
        for i, out in enumerate(tx.vout):
            made[(txid, i)] = out.value
        if total_in is not None:
            fees += max(0, total_in - sum(o.value for o in tx.vout))
    return fees


def assemble(parent: bytes, height: int, time: int, raw_txs: list[bytes], fees: int,
             script_pubkey: bytes, coinbase_extra_value: int = 0) -> bytes:
    """A complete, mined block over ``parent``; ``raw_txs`` go in as given (dependency order)."""
    parsed = [parse_tx(raw) for raw in raw_txs]
    witness = any(tx.is_segwit for tx in parsed)
    cb = coinbase_tx(height, subsidy(height) + fees + coinbase_extra_value, script_pubkey, witness=witness)
    if witness:
        add_witness_commitment(cb, raw_txs)
    txids = [txid_of(cb)] + [txid_of(tx) for tx in parsed]
    header = grind(BlockHeader(BLOCK_VERSION, parent, merkle_root(txids), time, REGTEST_BITS, 0))
    return Block(header, (cb, *parsed), (cb.serialize(), *raw_txs)).serialize()
