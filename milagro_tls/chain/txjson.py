"""JSON renderings of transactions and headers in Bitcoin Core's and Esplora's shapes.

Pure functions of the bytes plus the chain context the caller looked up (height,
confirmations, prevouts...), so that they can be checked against real response
bodies without a node. Key order follows the originals: clients may not care,
humans comparing output do.
"""
from __future__ import annotations

import io
from typing import NamedTuple

from embit import compact
from embit.transaction import Transaction

from .block import Block
from .hashes import sha256d, to_display_hex
from .header import HEADER_SIZE, BlockHeader
from .network import Network
from .script_text import core_asm, core_type, descriptor, address, esplora_asm, esplora_type, iter_ops
from .block import block_weight
from .tx import COIN, is_coinbase, parse_tx, tx_weight, txid_of

ZERO_HASH = b"\x00" * 32


class Prevout(NamedTuple):
    value: int               # satoshis
    script_pubkey: bytes
    height: int | None = None
    is_coinbase: bool = False


def btc(sats: int) -> float:
    """Core's ValueFromAmount: a JSON number in BTC (8 decimals; a double holds them exactly enough)."""
    return sats / COIN


def difficulty(bits: int) -> float:
    """Core's GetDifficulty (double arithmetic step by step), printed as UniValue prints a double:
    16 significant digits (so regtest's is 4.656542373906925e-10, not ...247e-10)."""
    shift = (bits >> 24) & 0xFF
    diff = float(0x0000FFFF) / float(bits & 0x00FFFFFF)
    while shift < 29:
        diff *= 256.0
        shift += 1
    while shift > 29:
        diff /= 256.0
        shift -= 1
    return float(f"{diff:.16g}")


def script_pubkey_json(script: bytes, network: Network) -> dict:
    """Core's ScriptToUniv(include_hex, include_address): asm, desc, hex, address?, type."""
    out = {"asm": core_asm(script), "desc": descriptor(script, network), "hex": script.hex()}
    addr = address(script, network)
    if addr is not None:
        out["address"] = addr
    out["type"] = core_type(script)
    return out


def core_tx(raw: bytes, network: Network, prevouts: list[Prevout | None] | None = None,
            prevout_detail: bool = False) -> dict:
    """Core's TxToUniv with include_hex. ``fee`` only when every prevout is known (Core: with undo data)."""
    tx = parse_tx(raw)
    coinbase = is_coinbase(tx)
    weight = tx_weight(raw, tx)
    out = {"txid": to_display_hex(txid_of(tx)), "hash": to_display_hex(sha256d(raw)),
           "version": tx.version, "size": len(raw), "vsize": (weight + 3) // 4,
           "weight": weight, "locktime": tx.locktime}
    vin = []
    for i, txin in enumerate(tx.vin):
        entry: dict = {}
        if coinbase:
            entry["coinbase"] = txin.script_sig.data.hex()
        else:
            entry["txid"] = txin.txid.hex()          # embit keeps input txids in display order
            entry["vout"] = txin.vout
            entry["scriptSig"] = {"asm": core_asm(txin.script_sig.data, sighash_decode=True),
                                  "hex": txin.script_sig.data.hex()}
        if txin.witness.items:
            entry["txinwitness"] = [bytes(w).hex() for w in txin.witness.items]
        if prevout_detail and not coinbase and prevouts and prevouts[i] is not None:
            p = prevouts[i]
            entry["prevout"] = {"generated": p.is_coinbase, "height": p.height,
                                "value": btc(p.value), "scriptPubKey": script_pubkey_json(p.script_pubkey, network)}
        entry["sequence"] = txin.sequence
        vin.append(entry)
    out["vin"] = vin
    out["vout"] = [{"value": btc(o.value), "n": n, "scriptPubKey": script_pubkey_json(o.script_pubkey.data, network)}
                   for n, o in enumerate(tx.vout)]
    fee = tx_fee(tx, prevouts)
    if fee is not None and not coinbase:
        out["fee"] = btc(fee)
    out["hex"] = raw.hex()
    return out


def tx_fee(tx: Transaction, prevouts: list[Prevout | None] | None) -> int | None:
    if is_coinbase(tx):
        return 0
    if not prevouts or any(p is None for p in prevouts):
        return None
    return sum(p.value for p in prevouts) - sum(o.value for o in tx.vout)


class HeaderContext(NamedTuple):
    """What a header alone does not say; the server looks it up."""
    height: int
    confirmations: int           # -1 when not on the active chain (Core's convention)
    mediantime: int
    chainwork: int
    n_tx: int
    next_hash: bytes | None


def core_header(header: bytes, ctx: HeaderContext) -> dict:
    """Core's blockheaderToJSON."""
    h = BlockHeader.parse(header)
    out = {"hash": h.hash_hex, "confirmations": ctx.confirmations, "height": ctx.height,
           "version": h.version, "versionHex": f"{h.version & 0xFFFFFFFF:08x}",
           "merkleroot": to_display_hex(h.merkle_root), "time": h.time, "mediantime": ctx.mediantime,
           "nonce": h.nonce, "bits": f"{h.bits:08x}", "target": f"{h.target:064x}",
           "difficulty": difficulty(h.bits), "chainwork": f"{ctx.chainwork:064x}", "nTx": ctx.n_tx}
    if h.prev_hash != ZERO_HASH:
        out["previousblockhash"] = to_display_hex(h.prev_hash)
    if ctx.next_hash is not None:
        out["nextblockhash"] = to_display_hex(ctx.next_hash)
    return out


def block_tx_count(raw: bytes) -> int:
    return compact.read_from(io.BytesIO(raw[80:89]))


def core_block(raw: bytes, ctx: HeaderContext, network: Network, verbosity: int,
               prevouts_for=None) -> dict:
    """Core's blockToJSON for verbosity 1 (txids), 2 (decoded txs with fee), 3 (plus prevouts).

    ``prevouts_for(raw_tx) -> list[Prevout | None]`` supplies spent outputs for the fee.
    """
    block = Block.parse(raw)
    txs, raw_txs = block.txs, block.raw_txs
    weight = block_weight(block)
    out = core_header(raw[:HEADER_SIZE], ctx)
    out.update({"strippedsize": (weight - len(raw)) // 3, "size": len(raw), "weight": weight})
    cb = txs[0]
    coinbase_tx = {"version": cb.version, "locktime": cb.locktime, "sequence": cb.vin[0].sequence,
                   "coinbase": cb.vin[0].script_sig.data.hex()}
    if cb.vin[0].witness.items:
        coinbase_tx["witness"] = bytes(cb.vin[0].witness.items[0]).hex()
    out["coinbase_tx"] = coinbase_tx
    if verbosity <= 1:
        out["tx"] = [to_display_hex(t) for t in block.txids()]
    else:
        out["tx"] = [core_tx(r, network, prevouts_for(r) if prevouts_for and i else None, verbosity >= 3)
                     for i, r in enumerate(raw_txs)]
    return out


def esplora_status(block_hash: bytes | None, height: int | None, block_time: int | None) -> dict:
    if block_hash is None or height is None:
        return {"confirmed": False}
    return {"confirmed": True, "block_height": height, "block_hash": to_display_hex(block_hash),
            "block_time": block_time}


def esplora_txout(script: bytes, value: int, network: Network) -> dict:
    out = {"scriptpubkey": script.hex(), "scriptpubkey_asm": esplora_asm(script),
           "scriptpubkey_type": esplora_type(script)}
    addr = address(script, network)
    if addr is not None:
        out["scriptpubkey_address"] = addr
    out["value"] = value
    return out


def _last_push(script: bytes) -> bytes | None:
    ops = list(iter_ops(script))
    if ops and isinstance(ops[-1][1], bytes):
        return ops[-1][1]
    return None


def esplora_tx(raw: bytes, network: Network, prevouts: list[Prevout | None] | None,
               status: dict) -> dict:
    """electrs' TransactionValue: txid, version, locktime, vin, vout, size, weight, fee, status."""
    tx = parse_tx(raw)
    coinbase = is_coinbase(tx)
    vin = []
    for i, txin in enumerate(tx.vin):
        prev = None if coinbase or not prevouts else prevouts[i]
        script_sig = txin.script_sig.data
        entry = {"txid": txin.txid.hex(), "vout": txin.vout,
                 "prevout": esplora_txout(prev.script_pubkey, prev.value, network) if prev else None,
                 "scriptsig": script_sig.hex(), "scriptsig_asm": esplora_asm(script_sig)}
        witness = [bytes(w) for w in txin.witness.items]
        if witness:
            entry["witness"] = [w.hex() for w in witness]
        entry["is_coinbase"] = coinbase
        entry["sequence"] = txin.sequence
        # electrs' get_innerscripts: the P2SH redeem script and the P2WSH witness script.
        redeem = None
        if prev is not None and esplora_type(prev.script_pubkey) == "p2sh":
            redeem = _last_push(script_sig)
            if redeem is not None:
                entry["inner_redeemscript_asm"] = esplora_asm(redeem)
        if prev is not None and witness and (esplora_type(prev.script_pubkey) == "v0_p2wsh"
                                             or (redeem is not None and esplora_type(redeem) == "v0_p2wsh")):
            entry["inner_witnessscript_asm"] = esplora_asm(witness[-1])
        vin.append(entry)
    out = {"txid": to_display_hex(txid_of(tx)), "version": tx.version, "locktime": tx.locktime,
           "vin": vin, "vout": [esplora_txout(o.script_pubkey.data, o.value, network) for o in tx.vout],
           "size": len(raw), "weight": tx_weight(raw, tx)}
    fee = tx_fee(tx, prevouts)
    if fee is not None:
        out["fee"] = fee
    out["status"] = status
    return out
