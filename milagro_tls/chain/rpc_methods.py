"""The bitcoind-compatible JSON-RPC methods the chain server answers.

Same names, parameters (positional or named), result shapes, error codes and, where
a client might match on them, error messages as Bitcoin Core. Methods prefixed
``milagro_`` are ours, not bitcoind's: regtest conveniences (mine to the node's own
key, faucet) and the one question bitcoind cannot answer without scanning
(``milagro_outspend``: which transaction spent an output).
"""
from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

from .block import Block
from .chainview import ChainView
from .errors import BlockNotFound, NodeError, TxNotFound, TxRejected
from .hashes import sha256d, to_display_hex
from .merkleblock import build_merkleblock
from .network import Network
from .script_text import address_to_script, is_unspendable
from .tx import outpoint, parse_tx, tx_weight, txid_of
from .rpc_protocol import (
    COIN, RPC_DESERIALIZATION_ERROR, RPC_INVALID_ADDRESS_OR_KEY, RPC_INVALID_PARAMETER, RPC_INVALID_REQUEST,
    RPC_METHOD_NOT_FOUND, RPC_MISC_ERROR, RPC_VERIFY_ALREADY_IN_CHAIN, RPC_VERIFY_ERROR, RPC_VERIFY_REJECTED,
    RpcError, as_amount, as_array, as_bool, as_hash, as_int, as_str, as_verbosity, as_vout)
from .txjson import btc, core_block, core_header, core_tx, difficulty, script_pubkey_json, tx_fee

DEFAULT_MAX_FEE_RATE = Decimal("0.10")       # BTC/kvB, Core's sendrawtransaction default
TX_NOT_FOUND = "No such mempool or blockchain transaction. Use gettransaction for wallet transactions."
DECODE_FAILED = "TX decode failed. Make sure the tx has at least one input."


_METHODS: dict[str, tuple] = {}


def _script(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise RpcError(RPC_INVALID_PARAMETER, "script_pubkey must be hex") from None


def rpc(name: str, *params: tuple):
    """Register a method. Each param: (name, parser, default); the default ``...`` means required."""
    def wrap(fn):
        _METHODS[name] = (fn, params)
        return fn
    return wrap


def _node_error(exc: Exception) -> RpcError:
    """What a method did not translate itself: the node's deliberate refusals, Core's codes where it has one."""
    if isinstance(exc, BlockNotFound):
        return RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
    if isinstance(exc, TxNotFound):
        return RpcError(RPC_INVALID_ADDRESS_OR_KEY, TX_NOT_FOUND)
    if isinstance(exc, TxRejected):
        return RpcError(RPC_VERIFY_REJECTED, exc.reason)
    return RpcError(RPC_MISC_ERROR, str(exc))


class RpcMethods:
    def __init__(self, node, datadir=None) -> None:
        self.node = node
        self.view = ChainView(node)
        self.datadir = datadir

    def dispatch(self, method, params):
        if not isinstance(method, str):
            raise RpcError(RPC_INVALID_REQUEST, "Method must be a string")
        if method not in _METHODS:
            raise RpcError(RPC_METHOD_NOT_FOUND, "Method not found")
        fn, spec = _METHODS[method]
        usage = f"{method} " + " ".join(p[0] if p[2] is ... else f"( {p[0]} )" for p in spec)
        if params is None:
            params = []
        if isinstance(params, dict):       # named parameters, as Core accepts them
            unknown = set(params) - {p[0] for p in spec}
            if unknown:
                raise RpcError(RPC_INVALID_PARAMETER, f"Unknown named parameter {sorted(unknown)[0]}")
            params = [params.get(p[0], ...) for p in spec]
        if not isinstance(params, list):
            raise RpcError(RPC_INVALID_REQUEST, "Params must be an array or object")
        if len(params) > len(spec):
            raise RpcError(RPC_MISC_ERROR, usage.strip())
        args = []
        for i, (pname, parse, default) in enumerate(spec):
            value = params[i] if i < len(params) else ...
            if value is ... or (value is None and default is not ...):
                if default is ...:
                    raise RpcError(RPC_MISC_ERROR, usage.strip())
                args.append(default)
            else:
                args.append(parse(value, pname))
        try:
            return fn(self, *args)
        except (BlockNotFound, TxNotFound, TxRejected, NodeError) as exc:
            raise _node_error(exc) from None

    # --- blockchain ---

    @rpc("getblockcount")
    def getblockcount(self):
        return self.node.tip().height

    @rpc("getbestblockhash")
    def getbestblockhash(self):
        return to_display_hex(self.node.tip().block_hash)

    @rpc("getblockchaininfo")
    def getblockchaininfo(self):
        tip = self.node.tip()
        hdr = self.view.header(tip.block_hash)
        return {"chain": Network.REGTEST.core_chain, "blocks": tip.height, "headers": tip.height,
                "bestblockhash": to_display_hex(tip.block_hash), "bits": f"{hdr.bits:08x}",
                "target": f"{hdr.target:064x}", "difficulty": difficulty(hdr.bits), "time": hdr.time,
                "mediantime": self.view.mediantime(tip.block_hash), "verificationprogress": 1.0,
                "initialblockdownload": time.time() - hdr.time > 24 * 3600,
                "chainwork": f"{self.view.chainwork(tip.block_hash):064x}",
                "size_on_disk": self._size_on_disk(), "pruned": False, "warnings": []}

    def _size_on_disk(self) -> int:
        if self.datadir is None:
            return 0
        return sum(p.stat().st_size for p in Path(self.datadir, "kernel").rglob("*.dat") if p.is_file())

    @rpc("getblockhash", ("height", as_int, ...))
    def getblockhash(self, height):
        if height < 0 or height > self.node.tip().height:
            raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range")
        try:
            return to_display_hex(self.node.block_hash(height))
        except BlockNotFound:
            raise RpcError(RPC_INVALID_PARAMETER, "Block height out of range") from None

    def _block(self, block_hash: bytes) -> bytes:
        try:
            return self.node.block(block_hash)
        except BlockNotFound:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found") from None

    @rpc("getblockheader", ("blockhash", as_hash, ...), ("verbose", as_bool, True))
    def getblockheader(self, block_hash, verbose):
        try:
            header = self.view.header(block_hash)
        except BlockNotFound:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found") from None
        if not verbose:
            return header.serialize().hex()
        return core_header(header.serialize(), self.view.header_context(block_hash, self._block(block_hash)))

    @rpc("getblock", ("blockhash", as_hash, ...), ("verbosity", as_verbosity, 1))
    def getblock(self, block_hash, verbosity):
        raw = self._block(block_hash)
        if verbosity <= 0:
            return raw.hex()
        ctx = self.view.header_context(block_hash, raw)
        return core_block(raw, ctx, Network.REGTEST, verbosity, self.view.prevouts)

    # --- transactions ---

    @rpc("getrawtransaction", ("txid", as_hash, ...), ("verbose", as_verbosity, 0), ("blockhash", as_hash, None))
    def getrawtransaction(self, txid, verbosity, block_hash):
        """Verbosity 2 adds fee and prevouts wherever the node knows the spent outputs
        (Core: only for confirmed transactions, from undo data)."""
        result: dict = {}
        try:
            if block_hash is not None:
                try:
                    self.view.header(block_hash)
                except BlockNotFound:
                    raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Block hash not found") from None
                result["in_active_chain"] = self.node.height_of(block_hash) is not None
                raw = self.node.transaction(txid, block_hash)
                where = block_hash
            else:
                raw = self.node.transaction(txid)
                where = self.node.tx_status(txid).block_hash
        except TxNotFound:
            if block_hash is not None:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "No such transaction found in the provided block. "
                               "Use gettransaction for wallet transactions.") from None
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, TX_NOT_FOUND) from None
        if verbosity <= 0:
            return raw.hex()
        prevouts = self.view.prevouts(raw) if verbosity >= 2 else None
        result.update(core_tx(raw, Network.REGTEST, prevouts, prevout_detail=verbosity >= 2))
        if where is not None:
            result["blockhash"] = to_display_hex(where)
            height, active = self.view.height(where)
            if active:
                result["confirmations"] = self.node.tip().height - height + 1
                result["time"] = result["blocktime"] = self.view.header(where).time
            else:
                result["confirmations"] = 0
        return result

    @rpc("gettxout", ("txid", as_hash, ...), ("n", as_vout, ...), ("include_mempool", as_bool, True))
    def gettxout(self, txid, n, include_mempool):
        coin = self.node.utxo(txid, n, include_mempool)
        if coin is None:
            return None
        tip = self.node.tip()
        return {"bestblock": to_display_hex(tip.block_hash),
                "confirmations": 0 if coin.height is None else tip.height - coin.height + 1,
                "value": btc(coin.value), "scriptPubKey": script_pubkey_json(coin.script_pubkey, Network.REGTEST),
                "coinbase": coin.is_coinbase}

    @rpc("gettxoutproof", ("txids", as_array, ...), ("blockhash", as_hash, None))
    def gettxoutproof(self, txid_values, block_hash):
        txids: list[bytes] = []
        for value in txid_values:
            txid = as_hash(value, "txid")
            if txid in txids:
                raise RpcError(RPC_INVALID_PARAMETER, f"Invalid parameter, duplicated txid: {value}")
            txids.append(txid)
        if not txids:
            raise RpcError(RPC_INVALID_PARAMETER, "Parameter 'txids' cannot be empty")
        if block_hash is None:
            location = self.node.tx_location(txids[0])
            if location is None:
                raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Transaction not yet in block")
            block_hash = location[0]
        block = Block.parse(self._block(block_hash))
        in_block = block.txids()
        if not set(txids) <= set(in_block):
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Not all transactions found in specified or retrieved block")
        return build_merkleblock(block.header.serialize(), in_block, set(txids)).hex()

    def _decode(self, hexstring: str, message: str = DECODE_FAILED) -> tuple[bytes, object]:
        try:
            raw = bytes.fromhex(hexstring)
            return raw, parse_tx(raw)
        except ValueError:           # MalformedInput is a ValueError too
            raise RpcError(RPC_DESERIALIZATION_ERROR, message) from None

    def _fee(self, tx) -> int | None:
        """The fee of a transaction the mempool would accept: its inputs are unspent coins."""
        return tx_fee(tx, [self.node.utxo(*outpoint(i), True) for i in tx.vin])

    @rpc("sendrawtransaction", ("hexstring", as_str, ...), ("maxfeerate", as_amount, None),
         ("maxburnamount", as_amount, 0))
    def sendrawtransaction(self, hexstring, maxfeerate, maxburnamount):
        raw, tx = self._decode(hexstring)
        txid = txid_of(tx)
        for out in tx.vout:
            if is_unspendable(out.script_pubkey.data) and out.value > maxburnamount:
                raise RpcError(RPC_VERIFY_ERROR, "Unspendable output exceeds maximum configured by user (maxburnamount)")
        if txid in self.node.mempool_txids():
            return to_display_hex(txid)      # Core: resubmitting a mempool transaction succeeds
        rate = int(DEFAULT_MAX_FEE_RATE * COIN) if maxfeerate is None else maxfeerate
        try:
            if rate:      # Core's BroadcastTransaction: a test acceptance gives the fee to check first
                self.node.test_tx(raw)
                fee = self._fee(tx)
                if fee is not None and fee > rate * ((tx_weight(raw, tx) + 3) // 4) // 1000:
                    raise RpcError(RPC_VERIFY_ERROR, "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)")
            return to_display_hex(self.node.submit_tx(raw))
        except TxRejected as exc:
            raise self._rejection(exc, txid, tx) from None

    def _rejection(self, exc: TxRejected, txid: bytes, tx) -> RpcError:
        """Core's RPCErrorFromTransactionError: missing inputs -25, outputs already in the UTXO set -27, else -26."""
        reason = exc.reason
        if reason == "tx-decode-failed":
            return RpcError(RPC_DESERIALIZATION_ERROR, DECODE_FAILED)
        if reason in ("txn-already-known", "bad-txns-inputs-missingorspent"):
            if any(self.node.utxo(txid, n, False) is not None for n in range(len(tx.vout))):
                return RpcError(RPC_VERIFY_ALREADY_IN_CHAIN, "Transaction outputs already in utxo set")
            return RpcError(RPC_VERIFY_ERROR, "bad-txns-inputs-missingorspent")
        return RpcError(RPC_VERIFY_REJECTED, reason)

    @rpc("testmempoolaccept", ("rawtxs", as_array, ...), ("maxfeerate", as_amount, None))
    def testmempoolaccept(self, rawtxs, maxfeerate):
        if not 1 <= len(rawtxs) <= 25:
            raise RpcError(RPC_INVALID_PARAMETER, "Array must contain between 1 and 25 transactions.")
        rate = int(DEFAULT_MAX_FEE_RATE * COIN) if maxfeerate is None else maxfeerate
        decoded = []
        for value in rawtxs:
            text = as_str(value, "rawtxs")
            decoded.append(self._decode(text, f"TX decode failed: {text} Make sure the tx has at least one input."))
        results = []
        # Limitation: each transaction is tested alone, not as a package (no in-package parents).
        for raw, tx in decoded:
            txid = txid_of(tx)
            entry = {"txid": to_display_hex(txid), "wtxid": to_display_hex(sha256d(raw))}
            vsize = (tx_weight(raw, tx) + 3) // 4
            try:
                self.node.test_tx(raw)
            except TxRejected as exc:
                reason = "missing-inputs" if exc.reason == "bad-txns-inputs-missingorspent" else exc.reason
                results.append({**entry, "allowed": False, "reject-reason": reason})
                continue
            fee = self._fee(tx) or 0
            if rate and fee > rate * vsize // 1000:
                results.append({**entry, "allowed": False, "reject-reason": "max-fee-exceeded"})
                continue
            results.append({**entry, "allowed": True, "vsize": vsize,
                            "fees": {"base": btc(fee), "effective-feerate": btc(fee * 1000 // vsize),
                                     "effective-includes": [entry["wtxid"]]}})
        return results

    @rpc("getrawmempool", ("verbose", as_bool, False))
    def getrawmempool(self, verbose):
        if verbose:
            raise RpcError(RPC_INVALID_PARAMETER, "verbose mempool output is not supported by this server")
        return [to_display_hex(t) for t in self.node.mempool_txids()]

    @rpc("gettxspendingprevout", ("outputs", as_array, ...))
    def gettxspendingprevout(self, outputs):
        """Core's answer covers the mempool only; so does ours (chain spends: milagro_outspend)."""
        result = []
        for item in outputs:
            if not isinstance(item, dict) or "txid" not in item or "vout" not in item:
                raise RpcError(RPC_INVALID_PARAMETER, "Invalid parameter, missing txid or vout key")
            txid, vout = as_hash(item["txid"], "txid"), as_vout(item["vout"], "vout")
            entry = {"txid": to_display_hex(txid), "vout": vout}
            spender = self.node.outspend(txid, vout)
            if spender is not None and self.node.tx_status(spender).block_hash is None:
                entry["spendingtxid"] = to_display_hex(spender)
            result.append(entry)
        return result

    # --- mining (regtest) ---

    @rpc("generatetoaddress", ("nblocks", as_int, ...), ("address", as_str, ...), ("maxtries", as_int, 1_000_000))
    def generatetoaddress(self, nblocks, addr, _maxtries):
        try:
            script = address_to_script(addr, Network.REGTEST)
        except ValueError:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from None
        # Core's generateBlocks loops while nblocks > 0: a negative count mines nothing.
        return [to_display_hex(h) for h in self.node.mine(max(nblocks, 0), script)]

    @rpc("milagro_mine", ("nblocks", as_int, ...), ("script_pubkey", as_str, None))
    def milagro_mine(self, nblocks, script_hex):
        """Non-bitcoind: mine to the node's own key (the coins the faucet spends) or to a scriptPubKey."""
        if not 0 <= nblocks <= 10_000:
            raise RpcError(RPC_INVALID_PARAMETER, "nblocks must be between 0 and 10000")
        script = None if script_hex is None else _script(script_hex)
        return [to_display_hex(h) for h in self.node.mine(nblocks, script)]

    @rpc("milagro_faucet", ("script_pubkey", as_str, ...), ("amount_sat", as_int, ...))
    def milagro_faucet(self, script_hex, amount):
        """Non-bitcoind: pay ``amount_sat`` to a scriptPubKey from the miner's coins (stays in the mempool)."""
        script = _script(script_hex)
        if amount <= 0:
            raise RpcError(RPC_INVALID_PARAMETER, "amount_sat must be positive")
        return to_display_hex(self.node.faucet(script, amount))

    @rpc("milagro_outspend", ("txid", as_hash, ...), ("vout", as_vout, ...))
    def milagro_outspend(self, txid, vout):
        """Non-bitcoind: {"spent": false} or {"spent": true, "txid", "vin", "confirmed"} (chain or mempool)."""
        try:
            tx = parse_tx(self.node.transaction(txid))
        except TxNotFound:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, TX_NOT_FOUND) from None
        if not 0 <= vout < len(tx.vout):
            raise RpcError(RPC_INVALID_PARAMETER, "vout out of range")
        spend = self.view.spend(txid, vout)
        if spend is None:
            return {"spent": False}
        spender, vin = spend
        return {"spent": True, "txid": to_display_hex(spender), "vin": vin,
                "confirmed": self.node.tx_status(spender).block_hash is not None}


# The wallet-facing methods live in their own module; importing it registers them.
from . import rpc_wallet_methods  # noqa: E402,F401
