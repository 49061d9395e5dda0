"""Signature-operation cost, as Core's GetTransactionSigOpCost.

The kernel enforces the block limit (80,000) only when a block is connected; the
mempool and the miner count it first so that a block they assemble is never
refused for it.
"""
from __future__ import annotations

from embit.transaction import Transaction

from .store import Utxo

WITNESS_SCALE = 4
MAX_BLOCK_SIGOPS_COST = 80_000
MAX_TX_SIGOPS_COST = MAX_BLOCK_SIGOPS_COST // 5          # Core's MAX_STANDARD_TX_SIGOPS_COST

OP_0, OP_PUSHDATA1, OP_PUSHDATA2, OP_PUSHDATA4 = 0x00, 0x4C, 0x4D, 0x4E
OP_1, OP_16 = 0x51, 0x60
OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY = 0xAC, 0xAD, 0xAE, 0xAF


def _ops(script: bytes):
    """(opcode, pushed data) pairs; stops at a truncated push, as Core's GetOp does."""
    i, n = 0, len(script)
    while i < n:
        op = script[i]
        i += 1
        size = 0
        if op < OP_PUSHDATA1:
            size = op
        elif op in (OP_PUSHDATA1, OP_PUSHDATA2, OP_PUSHDATA4):
            width = {OP_PUSHDATA1: 1, OP_PUSHDATA2: 2, OP_PUSHDATA4: 4}[op]
            if i + width > n:
                return
            size = int.from_bytes(script[i:i + width], "little")
            i += width
        if i + size > n:
            return
        yield op, script[i:i + size]
        i += size


def count_sigops(script: bytes, accurate: bool) -> int:
    """CScript::GetSigOpCount: multisig counts its key count only when ``accurate``."""
    total, last = 0, None
    for op, _ in _ops(script):
        if op in (OP_CHECKSIG, OP_CHECKSIGVERIFY):
            total += 1
        elif op in (OP_CHECKMULTISIG, OP_CHECKMULTISIGVERIFY):
            total += last - OP_1 + 1 if accurate and last is not None and OP_1 <= last <= OP_16 else 20
        last = op
    return total


def _last_push(script_sig: bytes) -> bytes | None:
    """The last push of a push-only scriptSig (the P2SH redeem script), else None."""
    data = None
    for op, pushed in _ops(script_sig):
        if op > OP_16:
            return None
        data = pushed
    return data


def _is_p2sh(spk: bytes) -> bool:
    return len(spk) == 23 and spk[0] == 0xA9 and spk[1] == 0x14 and spk[22] == 0x87


def _witness_program(spk: bytes) -> tuple[int, bytes] | None:
    if 4 <= len(spk) <= 42 and (spk[0] == OP_0 or OP_1 <= spk[0] <= OP_16) and spk[1] == len(spk) - 2:
        return (0 if spk[0] == OP_0 else spk[0] - OP_1 + 1), spk[2:]
    return None


def _witness_sigops(spk: bytes, script_sig: bytes, witness: list[bytes]) -> int:
    program = _witness_program(spk)
    if program is None and _is_p2sh(spk):
        redeem = _last_push(script_sig)
        program = _witness_program(redeem) if redeem is not None else None
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
        if _is_p2sh(coin.script_pubkey):
            redeem = _last_push(script_sig)
            if redeem is not None:
                cost += count_sigops(redeem, True) * WITNESS_SCALE
        cost += _witness_sigops(coin.script_pubkey, script_sig, list(inp.witness.items))
    return cost
