"""bitcoind JSON-RPC replies to chain values: error translation and pure result parsers.

No IO here: the tests feed these functions real Bitcoin Core bodies (../shared/fixtures/rpc).
Every claim a reply's bytes can prove (a header's or block's hash, a transaction's
txid) is checked; a malformed body is a SourceError, never a KeyError or TypeError.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from .errors import BlockNotFound, SourceError, TxNotFound, TxRejected
from .hashes import to_display_hex
from .network import Network
from .source import Tip, UnspentOutput
from .transport import checked, field, hash_field, hex_bytes, tx_with_id
from .tx import COIN, MAX_MONEY, outpoint

_TX_REJECT_CODES = (-22, -25, -26, -27)   # decode failed, verify error, rejected, already in chain
#: Core's getrawtransaction without -txindex and without a block hash (src/rpc/rawtransaction.cpp).
_NO_TXINDEX = "No such mempool transaction. Use -txindex or provide a block hash"
NO_TXINDEX_HINT = "node lacks -txindex: pass the locator's block hash"
#: estimatesmartfee's feerate is BTC per 1000 vbytes: x 1e8 sat/BTC / 1000 vB = x 1e5 sat/vB.
_BTC_PER_KVB_TO_SAT_PER_VB = Decimal(COIN) / 1000


class RpcCallError(SourceError):
    """An RPC error that has no more specific meaning for a chain source."""

    def __init__(self, method: str, code: int, message: str) -> None:
        self.method, self.code, self.message = method, code, message
        super().__init__(f"{method}: RPC error {code}: {message}")


def translate_error(method: str, params: tuple | list, error: dict) -> Exception:
    """Map a JSON-RPC error object ({"code", "message"}) to the chain layer's exceptions."""
    code = error.get("code") if isinstance(error, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    if not isinstance(code, int) or isinstance(code, bool):
        return SourceError(f"{method}: malformed RPC error {error!r}")
    first = str(params[0]) if params else "?"
    if code == -8 and message == "Block height out of range":
        return BlockNotFound(f"at height {first}")
    if code == -5:
        if message.startswith(_NO_TXINDEX):
            return TxNotFound(first, NO_TXINDEX_HINT)
        if "block" in message.lower() and "transaction" not in message.lower():
            # "Block not found", "Block hash not found" (getrawtransaction's third parameter)
            what = str(params[2]) if method == "getrawtransaction" and len(params) > 2 else first
            return BlockNotFound(what)
        if method in ("getrawtransaction", "gettxoutproof", "milagro_outspend", "gettransaction"):
            return TxNotFound(first, message)
    if code in _TX_REJECT_CODES and method in ("sendrawtransaction", "milagro_faucet"):
        return TxRejected(message)
    return RpcCallError(method, code, message)


def is_rpc_reply(body) -> bool:
    """A JSON-RPC reply object (or a batch of them): an answer, whatever the HTTP status."""
    if isinstance(body, list):
        return bool(body) and all(is_rpc_reply(b) for b in body)
    return isinstance(body, dict) and ("result" in body or "error" in body)


def unwrap(reply, method: str, params: tuple | list = ()):
    """The ``result`` of a JSON-RPC reply, or the translated ``error``."""
    if not is_rpc_reply(reply) or isinstance(reply, list):
        raise SourceError(f"{method}: not a JSON-RPC reply: {str(reply)[:200]}")
    if reply.get("error") is not None:
        raise translate_error(method, params, reply["error"])
    return reply.get("result")


def sats(value) -> int:
    """A BTC amount from JSON (parsed as Decimal) to satoshis; refuses sub-satoshi values."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise SourceError(f"amount: expected a number, got {type(value).__name__}")
    try:
        amount = Decimal(str(value)) * COIN
        # ArithmeticError: decimal's InvalidOperation and Overflow ("1e999999"). The bound comes
        # before int(): "1e99990" would take int() most of a second and then fail anyway.
        if not amount.is_finite() or amount != amount.to_integral_value() or not 0 <= amount <= MAX_MONEY:
            raise SourceError(f"amount {str(value)[:40]} is not a whole number of satoshis up to 21M BTC")
    except ArithmeticError:
        raise SourceError(f"amount {str(value)[:40]!r} is not a number") from None
    return int(amount)


def network_of_chain(name: str) -> Network:
    try:
        return Network.from_core_chain(name)
    except (ValueError, TypeError):
        raise SourceError(f"unknown chain {name!r} in getblockchaininfo") from None


def tip_from_chaininfo(info: dict) -> Tip:
    return Tip(field(info, "blocks", int, "getblockchaininfo"), hash_field(info, "bestblockhash", "getblockchaininfo"))


def status_from_verbose(tx: dict, txid: bytes) -> tuple[bytes | None, bool]:
    """(block hash, on the active chain) from a ``getrawtransaction <txid> true`` body."""
    if hash_field(tx, "txid", "getrawtransaction") != txid:
        raise SourceError(f"getrawtransaction answered for {tx.get('txid')}, not {to_display_hex(txid)}")
    if "blockhash" not in tx:
        return None, False
    confirmations = field(tx, "confirmations", int, "getrawtransaction") if "confirmations" in tx else 0
    return hash_field(tx, "blockhash", "getrawtransaction"), confirmations > 0


def unspents_from_scan(scan: dict, script_pubkey: bytes) -> list[UnspentOutput]:
    """The confirmed outputs a ``scantxoutset start [raw(<spk>)]`` result lists."""
    if field(scan, "success", bool, "scantxoutset") is not True:
        raise SourceError("scantxoutset did not complete (aborted)")
    out = []
    for i, item in enumerate(checked(field(scan, "unspents", list, "scantxoutset"), list, "unspents")):
        where = f"scantxoutset.unspents[{i}]"
        spk = hex_bytes(field(item, "scriptPubKey", str, where), where + ".scriptPubKey")
        if spk != script_pubkey:
            raise SourceError(f"{where} pays another script than the one scanned for")
        vout = field(item, "vout", int, where)
        height = field(item, "height", int, where)
        if vout < 0 or height < 0:
            raise SourceError(f"{where}: negative vout or height")
        coinbase = item.get("coinbase")          # Core has said since v22; older nodes: unknown
        out.append(UnspentOutput(hash_field(item, "txid", where), vout, sats(field(item, "amount", "number", where)),
                                 spk, height, coinbase if isinstance(coinbase, bool) else None))
    return out


def fee_rate_from_estimate(result) -> float | None:
    """sat/vB from an ``estimatesmartfee`` result; None when it has no estimate (its
    "errors" member, e.g. "Insufficient data or no feerate found")."""
    if not isinstance(result, dict) or "feerate" not in result:
        return None
    rate = checked(result["feerate"], "number", "estimatesmartfee.feerate")
    try:
        if Decimal(str(rate)) <= 0:
            return None
        sat_per_vb = float(Decimal(str(rate)) * _BTC_PER_KVB_TO_SAT_PER_VB)
    except ArithmeticError:        # NaN compared, or overflow: not a rate
        sat_per_vb = float("nan")
    # A wallet multiplies this by a size and rounds: NaN, infinity or an underflow to 0 is no rate.
    if not 0 < sat_per_vb < float("inf"):
        raise SourceError(f"estimatesmartfee.feerate {str(rate)[:40]} is not a usable fee rate")
    return sat_per_vb


def scan_mempool(raws: list[tuple[bytes, str]], script_pubkey: bytes) -> tuple[set, list[UnspentOutput]]:
    """From (txid, hex) of mempool transactions: the outpoints they spend, and their
    outputs paying ``script_pubkey`` that no other of them spends."""
    spent: set[tuple[bytes, int]] = set()
    paying: list[UnspentOutput] = []
    for txid, hex_tx in raws:
        tx = tx_with_id(hex_bytes(hex_tx, "getrawtransaction"), txid)
        spent.update(outpoint(i) for i in tx.vin)
        paying += [UnspentOutput(txid, n, o.value, script_pubkey, None, False)
                   for n, o in enumerate(tx.vout) if o.script_pubkey.data == script_pubkey]
    return spent, [u for u in paying if (u.txid, u.vout) not in spent]
