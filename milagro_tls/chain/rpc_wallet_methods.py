"""The chain server's JSON-RPC methods for a wallet that runs without a bitcoind wallet:
``scantxoutset``, ``estimatesmartfee`` and ``getmempoolinfo``, in Bitcoin Core's shapes.

They register into ``rpc_methods`` (imported at its end) and run as RpcMethods methods.
"""
from __future__ import annotations

import re

from embit.descriptor.checksum import checksum as descriptor_checksum

from .errors import TxNotFound
from .hashes import to_display_hex
from .network import Network
from .rpc_methods import rpc
from .rpc_protocol import (RPC_INVALID_ADDRESS_OR_KEY, RPC_INVALID_PARAMETER, RPC_MISC_ERROR, RpcError, as_array,
                           as_int, as_str)
from .script_text import address_to_script, descriptor
from .tx import parse_tx
from .tx import tx_weight
from .txjson import btc, tx_fee

#: Core's fee estimator tracks targets up to 1008 blocks (HighestTargetTracked, LONG horizon).
MAX_CONF_TARGET = 1008
FEE_MODES = ("unset", "economical", "conservative")
#: Core's default -maxmempool, in bytes.
MAX_MEMPOOL = 300_000_000


def _script_of(desc: str) -> bytes:
    """The scriptPubKey a ``raw(HEX)`` or ``addr(ADDR)`` descriptor names (checksum optional,
    checked when present, as scantxoutset does); Core's messages for what it rejects."""
    text, _, given = desc.partition("#")
    if given:
        if len(given) != 8:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"Expected 8 character checksum, not {len(given)} characters")
        computed = descriptor_checksum(text)
        if given != computed:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY,
                           f"Provided checksum '{given}' does not match computed checksum '{computed}'")
    m = re.fullmatch(r"(raw|addr)\((.*)\)", text)
    if m is None:
        # Core knows many more descriptors; this server scans for exact scripts only.
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, f"descriptor '{text}' is not supported by this server "
                       "(raw() and addr() only)")
    if m.group(1) == "raw":
        try:
            return bytes.fromhex(m.group(2))
        except ValueError:
            raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Raw script is not hex") from None
    try:
        return address_to_script(m.group(2), Network.REGTEST)
    except ValueError:
        raise RpcError(RPC_INVALID_ADDRESS_OR_KEY, "Address is not valid") from None


def _scan_object(item) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        if not isinstance(item.get("desc"), str):
            raise RpcError(RPC_INVALID_PARAMETER, "Descriptor needs to be provided in scan object")
        return item["desc"]
    raise RpcError(RPC_INVALID_PARAMETER, "Scan object needs to be either a string or an object")


@rpc("scantxoutset", ("action", as_str, ...), ("scanobjects", as_array, None))
def scantxoutset(self, action, scanobjects):
    """Core's result for "start". Our scans finish inside the call, so "status" is always
    null and "abort" always false, as Core answers when no scan runs. Like Core, only the
    UTXO set is scanned (confirmed outputs), never the mempool. ``txouts`` counts the
    outputs examined: the node looks the scripts up in its index instead of reading the
    whole set, so it examines only the matches."""
    if action == "status":
        return None
    if action == "abort":
        return False
    if action != "start":
        raise RpcError(RPC_INVALID_PARAMETER, f"Invalid action '{action}'")
    if scanobjects is None:
        raise RpcError(RPC_MISC_ERROR, "scanobjects argument is required for the start action")
    scripts: dict[bytes, str] = {}
    for item in scanobjects:
        script = _script_of(_scan_object(item))
        scripts[script] = descriptor(script, Network.REGTEST)      # Core: InferDescriptor(script)
    tip = self.node.tip()
    unspents, total = [], 0
    for script, desc in scripts.items():
        for txid, vout, coin in self.node.utxos_by_script(script, include_mempool=False):
            total += coin.value
            unspents.append({"txid": to_display_hex(txid), "vout": vout, "scriptPubKey": script.hex(),
                             "desc": desc, "amount": btc(coin.value), "coinbase": coin.is_coinbase,
                             "height": coin.height, "blockhash": to_display_hex(self.node.block_hash(coin.height))})
    return {"success": True, "txouts": len(unspents), "height": tip.height,
            "bestblock": to_display_hex(tip.block_hash), "unspents": unspents, "total_amount": btc(total)}


@rpc("estimatesmartfee", ("conf_target", as_int, ...), ("estimate_mode", as_str, "economical"))
def estimatesmartfee(self, conf_target, estimate_mode):
    """A regtest node has no fee history: Core answers with this error member and
    ``blocks`` 0 (the estimator's usable horizon on an empty history)."""
    if not 1 <= conf_target <= MAX_CONF_TARGET:
        raise RpcError(RPC_INVALID_PARAMETER, f"Invalid conf_target, must be between 1 and {MAX_CONF_TARGET}")
    if estimate_mode.lower() not in FEE_MODES:
        raise RpcError(RPC_INVALID_PARAMETER,
                       'Invalid estimate_mode parameter, must be one of: "unset", "economical", "conservative"')
    return {"errors": ["Insufficient data or no feerate found"], "blocks": 0}


@rpc("getmempoolinfo")
def getmempoolinfo(self):
    """Core's fields. The fee floors are 0 because this mempool has none; ``usage`` is the
    serialized size of what it holds (Core reports its memory use); ``fullrbf`` is false
    because it replaces nothing (the first spend wins)."""
    size = vbytes = raw_bytes = fees = 0
    for txid in self.node.mempool_txids():
        try:
            raw = self.node.transaction(txid)
        except TxNotFound:           # mined or evicted while we read: not in the mempool any more
            continue
        tx = parse_tx(raw)
        size += 1
        raw_bytes += len(raw)
        vbytes += (tx_weight(raw, tx) + 3) // 4
        fees += tx_fee(tx, self.view.prevouts(raw)) or 0
    return {"loaded": True, "size": size, "bytes": vbytes, "usage": raw_bytes, "total_fee": btc(fees),
            "maxmempool": MAX_MEMPOOL, "mempoolminfee": 0.0, "minrelaytxfee": 0.0, "incrementalrelayfee": 0.0,
            "unbroadcastcount": 0, "fullrbf": False}
