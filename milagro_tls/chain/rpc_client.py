"""RpcSource: the ChainSource interface over bitcoind's JSON-RPC (our chain server, or bitcoind).

Layers, bottom up: ``call(method, *params)`` / ``batch`` (generic JSON-RPC 1.0 over
httpx), ``translate_error`` (the one place RPC error codes become our exceptions),
pure response parsers (tested against real Core bodies), and the ChainSource methods.
Everything a response claims that its bytes can prove (a header's or block's hash, a
transaction's txid) is checked here before it is returned; the rest is the source's word.

Methods named ``milagro_*`` exist only on our chain server, not on bitcoind.
"""
from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path

import httpx

from .errors import BlockNotFound, SourceError, TxNotFound, TxRejected
from .hashes import sha256d, to_display_hex, from_display_hex
from .network import Network
from .rpc_protocol import COIN, RPC_METHOD_NOT_FOUND
from .source import ChainSource, Tip, TxStatus
from .tx import parse_tx, txid_of

_CHAINS = {"main": Network.MAINNET, "test": Network.TESTNET3, "testnet4": Network.TESTNET4,
           "signet": Network.SIGNET, "regtest": Network.REGTEST}
_TX_REJECT_CODES = (-22, -25, -26, -27)   # decode failed, verify error, rejected, already in chain


class RpcCallError(SourceError):
    """An RPC error that has no more specific meaning for a chain source."""

    def __init__(self, method: str, code: int, message: str) -> None:
        self.method, self.code, self.message = method, code, message
        super().__init__(f"{method}: RPC error {code}: {message}")


def translate_error(method: str, params: tuple | list, error: dict) -> Exception:
    """Map a JSON-RPC error object ({"code", "message"}) to the chain layer's exceptions."""
    code = error.get("code") if isinstance(error, dict) else None
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    if not isinstance(code, int):
        return SourceError(f"{method}: malformed RPC error {error!r}")
    first = str(params[0]) if params else "?"
    if code == -8 and message == "Block height out of range":
        return BlockNotFound(f"at height {first}")
    if code == -5:
        if "block" in message.lower() and "transaction" not in message.lower():
            # "Block not found", "Block hash not found" (getrawtransaction's third parameter)
            what = str(params[2]) if method == "getrawtransaction" and len(params) > 2 else first
            return BlockNotFound(what)
        if method in ("getrawtransaction", "gettxoutproof", "milagro_outspend", "gettransaction"):
            return TxNotFound(first, message)
    if code in _TX_REJECT_CODES and method in ("sendrawtransaction", "milagro_faucet"):
        return TxRejected(message)
    return RpcCallError(method, code, message)


def unwrap(reply, method: str, params: tuple | list = ()):
    """The ``result`` of a JSON-RPC reply, or the translated ``error``."""
    if not isinstance(reply, dict) or "result" not in reply and "error" not in reply:
        raise SourceError(f"{method}: not a JSON-RPC reply: {str(reply)[:200]}")
    if reply.get("error") is not None:
        raise translate_error(method, params, reply["error"])
    return reply.get("result")


# --- response parsers (pure; the tests feed them real Core bodies) ---

def sats(value) -> int:
    """A BTC amount from JSON (parsed as Decimal) to satoshis; refuses sub-satoshi values."""
    amount = Decimal(str(value)) * COIN
    if amount != amount.to_integral_value():
        raise SourceError(f"amount {value} is not a whole number of satoshis")
    return int(amount)


def network_of_chain(name: str) -> Network:
    try:
        return _CHAINS[name]
    except KeyError:
        raise SourceError(f"unknown chain {name!r} in getblockchaininfo") from None


def tip_from_chaininfo(info: dict) -> Tip:
    return Tip(int(info["blocks"]), from_display_hex(info["bestblockhash"]))


def checked_header(hex_header: str, block_hash: bytes) -> bytes:
    raw = bytes.fromhex(hex_header)
    if len(raw) != 80 or sha256d(raw) != block_hash:
        raise SourceError(f"header returned for {to_display_hex(block_hash)} does not hash to it")
    return raw


def checked_block(hex_block: str, block_hash: bytes) -> bytes:
    raw = bytes.fromhex(hex_block)
    if len(raw) < 81 or sha256d(raw[:80]) != block_hash:
        raise SourceError(f"block returned for {to_display_hex(block_hash)} does not hash to it")
    return raw


def checked_tx(hex_tx: str, txid: bytes) -> bytes:
    raw = bytes.fromhex(hex_tx)
    if txid_of(parse_tx(raw)) != txid:
        raise SourceError(f"transaction returned for {to_display_hex(txid)} has another txid")
    return raw


def status_from_verbose(tx: dict, txid: bytes) -> tuple[bytes | None, bool]:
    """(block hash, on the active chain) from a ``getrawtransaction <txid> true`` body."""
    if tx.get("txid") != to_display_hex(txid):
        raise SourceError(f"getrawtransaction answered for {tx.get('txid')}, not {to_display_hex(txid)}")
    if "blockhash" not in tx:
        return None, False
    return from_display_hex(tx["blockhash"]), int(tx.get("confirmations", 0)) > 0


def utxo_from_gettxout(out: dict) -> tuple[int, bytes, int, bool]:
    """(value in sat, scriptPubKey, confirmations, coinbase) from a ``gettxout`` body."""
    return (sats(out["value"]), bytes.fromhex(out["scriptPubKey"]["hex"]), int(out["confirmations"]),
            bool(out.get("coinbase", False)))


class RpcSource(ChainSource):
    """A ChainSource over JSON-RPC. ``auth`` is (user, password); ``cookie_file`` is re-read on 401."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, *, cookie_file: str | Path | None = None,
                 timeout: float = 30.0, network: Network | None = None) -> None:
        self.url = url
        self.cookie_file = Path(cookie_file) if cookie_file else None
        if auth is None and self.cookie_file is not None:
            auth = self._read_cookie()
        self._auth = auth
        self._network = network
        self._ids = itertools.count(1)
        self._has_milagro: bool | None = None
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))

    def _read_cookie(self) -> tuple[str, str]:
        try:
            user, _, password = self.cookie_file.read_text().strip().partition(":")
        except OSError as exc:
            raise SourceError(f"cannot read RPC cookie {self.cookie_file}: {exc}") from None
        return user, password

    @property
    def network(self) -> Network:
        if self._network is None:
            self._network = network_of_chain(self.call("getblockchaininfo")["chain"])
        return self._network

    def close(self) -> None:
        self._http.close()

    # --- the generic call layer ---

    def _post(self, payload) -> object:
        body = json.dumps(payload).encode()
        for attempt in (0, 1):
            try:
                resp = self._http.post(self.url, content=body, auth=self._auth,
                                       headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                raise SourceError(f"RPC server {self.url} unreachable: {type(exc).__name__}: {exc}") from None
            if resp.status_code in (401, 403):
                if attempt == 0 and self.cookie_file is not None:   # the server restarted: new cookie
                    self._auth = self._read_cookie()
                    continue
                raise SourceError(f"RPC server {self.url} refused the credentials (HTTP {resp.status_code})")
            try:
                return json.loads(resp.content, parse_float=Decimal)
            except ValueError:
                raise SourceError(f"RPC server {self.url} sent HTTP {resp.status_code} "
                                  f"without JSON: {resp.text[:200]!r}") from None
        raise AssertionError("unreachable")

    def call(self, method: str, *params):
        """Call one RPC method; returns its result or raises the translated error."""
        reply = self._post({"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)})
        return unwrap(reply, method, params)

    def batch(self, calls: list[tuple[str, tuple]]) -> list:
        """Several calls in one round trip; results in order; the first error is raised."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        replies = self._post([{"jsonrpc": "1.0", "id": i, "method": m, "params": list(p)}
                              for i, (m, p) in zip(ids, calls)])
        if not isinstance(replies, list):
            return [unwrap(replies, calls[0][0], calls[0][1])]    # a server-level error for the batch
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        return [unwrap(by_id.get(i), m, p) for i, (m, p) in zip(ids, calls)]

    # --- ChainSource ---

    def tip(self) -> Tip:
        info = self.call("getblockchaininfo")
        if self._network is None:
            self._network = network_of_chain(info["chain"])
        return tip_from_chaininfo(info)

    def header(self, height: int) -> bytes:
        block_hash = from_display_hex(self.call("getblockhash", height))
        return checked_header(self.call("getblockheader", to_display_hex(block_hash), False), block_hash)

    def headers(self, start: int, count: int) -> list[bytes]:
        end = min(start + count, self.tip().height + 1)
        if start < 0 or end <= start:
            return []
        hashes = [from_display_hex(h) for h in self.batch([("getblockhash", (h,)) for h in range(start, end)])]
        raws = self.batch([("getblockheader", (to_display_hex(h), False)) for h in hashes])
        out = [checked_header(r, h) for r, h in zip(raws, hashes)]
        for prev, cur in zip(out, out[1:]):
            if cur[4:36] != sha256d(prev):
                raise SourceError("the chain changed while its headers were read; retry")
        return out

    def block(self, block_hash: bytes) -> bytes:
        return checked_block(self.call("getblock", to_display_hex(block_hash), 0), block_hash)

    def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        params = [to_display_hex(txid), 0] + ([to_display_hex(block_hash)] if block_hash else [])
        return checked_tx(self.call("getrawtransaction", *params), txid)

    def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        params = [to_display_hex(txid), 1] + ([to_display_hex(block_hash)] if block_hash else [])
        found_in, active = status_from_verbose(self.call("getrawtransaction", *params), txid)
        height = None
        if found_in is not None and active:
            height = int(self.call("getblockheader", to_display_hex(found_in), True)["height"])
        return TxStatus(txid, found_in, height)

    def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None:
        """None when the source says the output is unspent. ``gettxout`` returning null only
        means "spent or never existed", so the spender is then asked for: ``milagro_outspend``
        on our server (chain and mempool), bitcoind's ``gettxspendingprevout`` (mempool only)."""
        if self.call("gettxout", to_display_hex(txid), vout, True) is not None:
            return None
        if self._has_milagro is not False:
            try:
                answer = self.call("milagro_outspend", to_display_hex(txid), vout)
                self._has_milagro = True
                return from_display_hex(answer["txid"]) if answer.get("spent") else None
            except RpcCallError as exc:
                if exc.code != RPC_METHOD_NOT_FOUND:
                    raise
                self._has_milagro = False
        found = self.call("gettxspendingprevout", [{"txid": to_display_hex(txid), "vout": vout}])
        if found and found[0].get("spendingtxid"):
            return from_display_hex(found[0]["spendingtxid"])
        raise SourceError(f"output {to_display_hex(txid)}:{vout} is spent or does not exist; this bitcoind "
                          "cannot name a confirmed spender (gettxout is null, no mempool spender)")

    def broadcast(self, raw_tx: bytes) -> bytes:
        txid = from_display_hex(self.call("sendrawtransaction", raw_tx.hex()))
        if txid != txid_of(parse_tx(raw_tx)):
            raise SourceError("sendrawtransaction answered with another txid")
        return txid

    # --- regtest helpers (milagro_* exist only on our chain server) ---

    def mine(self, n: int = 1, script_pubkey: bytes | None = None) -> list[bytes]:
        params = (n,) if script_pubkey is None else (n, script_pubkey.hex())
        return [from_display_hex(h) for h in self.call("milagro_mine", *params)]

    def generatetoaddress(self, n: int, address: str) -> list[bytes]:
        return [from_display_hex(h) for h in self.call("generatetoaddress", n, address)]

    def faucet(self, script_pubkey: bytes, amount: int) -> bytes:
        return from_display_hex(self.call("milagro_faucet", script_pubkey.hex(), amount))

    def mempool_txids(self) -> list[bytes]:
        return [from_display_hex(t) for t in self.call("getrawmempool")]
