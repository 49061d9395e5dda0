"""Signature-operation cost, as Core's GetTransactionSigOpCost.

The kernel enforces the block limit (80,000) only when a block is connected; the
mempool and the miner count it first so that a block they assemble is never
refused for it.
"""
from __future__ import annotations

from embit.transaction import Transaction

from ..script_text import OP_1, OP_16, core_type, iter_ops, witness_program
from .store import Utxo

WITNESS_SCALE = 4
MAX_BLOCK_SIGOPS_COST = 80_000
MAX_TX_SIGOPS_COST = MAX_BLOCK_SIGOPS_COST // 5          # Core's MAX_STANDARD_TX_SIGOPS_COST

OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY = 0xAC, 0xAD, 0xAE, 0xAF


def count_sigops(script: bytes, accurate: bool) -> int:
    """CScript::GetSigOpCount: multisig counts its key count only when ``accurate``;
    parsing stops at a truncated push, as Core's GetOp does."""
    total, last = 0, None
    for op, data in iter_ops(script):
        if data is ...:
            break
        if op in (OP_CHECKSIG, OP_CHECKSIGVERIFY):
            total += 1
        elif op in (OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY):
            total += last - OP_1 + 1 if accurate and last is not None and OP_1 <= last <= OP_16 else 20
        last = op
    return total


def _redeem_script(script_sig: bytes) -> bytes | None:
    """The last push of a push-only scriptSig (the P2SH redeem script), else None.
    Core: a truncated push or an opcode above OP_16 means no redeem script."""
    redeem = None
    for op, data in iter_ops(script_sig):
        if data is ... or op > OP_16:
            return None
        redeem = data or b""          # OP_1..OP_16 and OP_RESERVED push nothing in GetOp
    return redeem


def _witness_sigops(spk: bytes, script_sig: bytes, witness: list[bytes]) -> int:
    """Core's CountWitnessSigOps: a native or P2SH-wrapped version 0 program."""
    program = witness_program(spk)
    if program is None and core_type(spk) == "scripthash":
        redeem = _redeem_script(script_sig)
        program = witness_program(redeem) if redeem is not None else None
    if program is None or program[0] != 0:
        return 0
    if len(program[1]) == 20:
        return 1
    if len(program[1]) == 32 and witness:
        return count_sigops(witness[-1], True)
    return 0


def sigop_cost(tx: Transaction, coins: list[Utxo] | None) -> int:
    """Weighted sigop cost; ``coins`` are the spent outputs in input order (None: coinbase)."""
    legacy = sum(count_sigops(i.script_sig.data, False) for i in tx.vin)
    legacy += sum(count_sigops(o.script_pubkey.data, False) for o in tx.vout)
    cost = legacy * WITNESS_SCALE
    if coins is None:
        return cost
    for inp, coin in zip(tx.vin, coins):
        script_sig = inp.script_sig.data
        if core_type(coin.script_pubkey) == "scripthash":
            redeem = _redeem_script(script_sig)
            if redeem is not None:
                cost += count_sigops(redeem, True) * WITNESS_SCALE
        cost += _witness_sigops(coin.script_pubkey, script_sig, list(inp.witness.items))
    return cost
