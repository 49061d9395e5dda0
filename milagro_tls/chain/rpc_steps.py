"""The ChainSource logic over bitcoind's JSON-RPC, without IO (used by rpc_client).

Each ChainSource method is a generator that yields the requests it needs (a ``Call``
or a ``Batch``) and is sent their results, or has their errors thrown in: the same
code serves RpcSource and AsyncRpcSource, which only carry the requests. The state a
connection keeps (credentials, the network it learned, whether the server has our
``milagro_*`` methods) lives here too.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from .errors import SourceError
from .hashes import to_display_hex
from .network import Network
from .rpc_parse import (
    RpcCallError, fee_rate_from_estimate, is_rpc_reply, network_of_chain, scan_mempool, status_from_verbose,
    tip_from_chaininfo, unspents_from_scan, unwrap)
from .rpc_protocol import RPC_METHOD_NOT_FOUND
from .source import TxStatus, UnspentOutput
from .transport import (RetryPolicy, broadcast_txid, checked, checked_block, checked_header, checked_tx, display_hash,
                        field, hex_bytes, linked, timeouts)

LABEL = "RPC server"
#: Calls whose repetition changes the chain: never retried once they may have been sent.
NOT_IDEMPOTENT = frozenset({"milagro_mine", "milagro_faucet", "generatetoaddress", "generatetodescriptor",
                            "generateblock"})
#: scantxoutset reads the whole UTXO set: minutes on mainnet (Core: one scan at a time).
SCAN_TIMEOUT = 900.0
#: utxos_unverified reads the whole mempool only up to this many transactions (a few
#: hundred kB of hex); above it only the spends of the coins found are looked up.
MEMPOOL_SCAN_LIMIT = 1_000
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    params: tuple = ()
    timeout: float | None = None          # None: the client's


@dataclass(frozen=True, slots=True)
class Batch:
    calls: tuple[Call, ...]
    tolerant: bool = False                # True: errors come back in place instead of raising


def answered(resp: httpx.Response) -> bool:
    """Core sends JSON-RPC errors with HTTP 500: such a reply is an answer, not a failure to retry."""
    try:
        return is_rpc_reply(json.loads(resp.content))
    except ValueError:
        return False


def batch_results(batch: Batch, ids: list[int], replies) -> list:
    if not isinstance(replies, list):       # a server-level error for the whole batch
        unwrap(replies, batch.calls[0].method, batch.calls[0].params)
        raise SourceError(f"{LABEL} answered a batch of {len(batch.calls)} calls with one reply")
    by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
    out = []
    for i, c in zip(ids, batch.calls):
        try:
            out.append(unwrap(by_id.get(i), c.method, c.params))
        except SourceError as exc:
            if not batch.tolerant:
                raise
            out.append(exc)
    return out


class RpcSteps:
    """Connection state and the ChainSource logic, shared by RpcSource and AsyncRpcSource."""

    _network: Network | None

    def _setup(self, url: str, auth, cookie_file, network: Network | None, retry: RetryPolicy | None) -> None:
        self.url = url
        self.cookie_file = Path(cookie_file) if cookie_file else None
        if auth is None and self.cookie_file is not None:
            auth = self._read_cookie()
        self._auth = auth
        self._expected, self._network = network, None
        self.retry = retry or RetryPolicy()
        self._ids = itertools.count(1)
        self._has_milagro: bool | None = None

    def _read_cookie(self) -> tuple[str, str]:
        try:
            user, _, password = self.cookie_file.read_text().strip().partition(":")
        except OSError as exc:
            raise SourceError(f"cannot read RPC cookie {self.cookie_file}: {exc}") from None
        return user, password

    # --- request and reply, transport-independent ---

    def _payload(self, request: Call | Batch) -> tuple[bytes, list[int], bool, float | None]:
        calls = request.calls if isinstance(request, Batch) else (request,)
        ids = [next(self._ids) for _ in calls]
        body = [{"jsonrpc": "1.0", "id": i, "method": c.method, "params": list(c.params)} for i, c in zip(ids, calls)]
        idempotent = not any(c.method in NOT_IDEMPOTENT for c in calls)
        timeout = max((c.timeout for c in calls if c.timeout), default=None)
        return json.dumps(body if isinstance(request, Batch) else body[0]).encode(), ids, idempotent, timeout

    def _post_args(self, body: bytes, idempotent: bool, timeout: float | None) -> dict:
        """transport.send's (or send_async's) arguments for one POST of ``body``."""
        return {"label": LABEL, "policy": self.retry, "idempotent": idempotent, "answered": answered,
                "content": body, "auth": self._auth, "headers": JSON_HEADERS,
                "timeout": timeouts(timeout) if timeout else httpx.USE_CLIENT_DEFAULT}

    def _refused(self, resp: httpx.Response, attempt: int) -> bool:
        """True to retry once with the cookie re-read (the server restarted); raises if refused for good."""
        if resp.status_code not in (401, 403):
            return False
        if attempt == 0 and self.cookie_file is not None:
            self._auth = self._read_cookie()
            return True
        raise SourceError(f"{LABEL} {self.url} refused the credentials (HTTP {resp.status_code})")

    def _body(self, resp: httpx.Response):
        try:
            return json.loads(resp.content, parse_float=Decimal)
        except (ValueError, RecursionError):     # RecursionError: "[[[[..." nested past the limit
            raise SourceError(f"{LABEL} {self.url} sent HTTP {resp.status_code} "
                              f"without JSON: {resp.text[:200]!r}") from None

    def _result(self, request: Call | Batch, ids: list[int], body):
        if isinstance(request, Batch):
            return batch_results(request, ids, body)
        return unwrap(body, request.method, request.params)

    def _learn_network(self, info) -> Network:
        network = network_of_chain(field(info, "chain", str, "getblockchaininfo"))
        if self._expected is not None and network is not self._expected:
            raise SourceError(f"{LABEL} {self.url} serves {network.label}, not {self._expected.label}")
        self._network = network
        return network

    # --- the ChainSource methods, as steps ---

    def _network_steps(self):
        if self._network is None:
            self._learn_network((yield Call("getblockchaininfo")))
        return self._network

    def _tip_steps(self):
        info = yield Call("getblockchaininfo")
        if self._network is None:
            self._learn_network(info)
        return tip_from_chaininfo(info)

    def _header_steps(self, height: int):
        block_hash = display_hash((yield Call("getblockhash", (height,))), "getblockhash")
        found = yield Call("getblockheader", (to_display_hex(block_hash), False))
        return checked_header(hex_bytes(found, "getblockheader"), block_hash)

    def _headers_steps(self, start: int, count: int):
        end = min(start + count, (yield from self._tip_steps()).height + 1)
        if start < 0 or end <= start:
            return []
        found = yield Batch(tuple(Call("getblockhash", (h,)) for h in range(start, end)))
        hashes = [display_hash(h, "getblockhash") for h in found]
        raws = yield Batch(tuple(Call("getblockheader", (to_display_hex(h), False)) for h in hashes))
        return linked([checked_header(hex_bytes(r, "getblockheader"), h) for r, h in zip(raws, hashes)])

    def _block_steps(self, block_hash: bytes):
        return checked_block(hex_bytes((yield Call("getblock", (to_display_hex(block_hash), 0))), "getblock"), block_hash)

    def _tx_steps(self, txid: bytes, block_hash: bytes | None):
        params = (to_display_hex(txid), 0) + ((to_display_hex(block_hash),) if block_hash else ())
        return checked_tx(hex_bytes((yield Call("getrawtransaction", params)), "getrawtransaction"), txid)

    def _tx_status_steps(self, txid: bytes, block_hash: bytes | None):
        params = (to_display_hex(txid), 1) + ((to_display_hex(block_hash),) if block_hash else ())
        found_in, active = status_from_verbose((yield Call("getrawtransaction", params)), txid)
        height = None
        if found_in is not None and active:
            header = yield Call("getblockheader", (to_display_hex(found_in), True))
            height = field(header, "height", int, "getblockheader")
        return TxStatus(txid, found_in, height)

    def _outspend_steps(self, txid: bytes, vout: int):
        """``gettxout`` null only means "spent or never existed", so the spender is then
        asked for: ``milagro_outspend`` on our server (chain and mempool), else bitcoind's
        ``gettxspendingprevout`` (mempool only)."""
        if (yield Call("gettxout", (to_display_hex(txid), vout, True))) is not None:
            return None
        if self._has_milagro is not False:
            try:
                answer = yield Call("milagro_outspend", (to_display_hex(txid), vout))
                self._has_milagro = True
                if not field(answer, "spent", bool, "milagro_outspend"):
                    return None
                return display_hash(field(answer, "txid", str, "milagro_outspend"), "milagro_outspend.txid")
            except RpcCallError as exc:
                if exc.code != RPC_METHOD_NOT_FOUND:
                    raise
                self._has_milagro = False
        found = yield Call("gettxspendingprevout", ([{"txid": to_display_hex(txid), "vout": vout}],))
        entry = checked(found, list, "gettxspendingprevout")[:1]
        if entry and isinstance(entry[0], dict) and entry[0].get("spendingtxid"):
            return display_hash(entry[0]["spendingtxid"], "gettxspendingprevout.spendingtxid")
        raise SourceError(f"output {to_display_hex(txid)}:{vout} is spent or does not exist; this bitcoind "
                          "cannot name a confirmed spender (gettxout is null, no mempool spender)")

    def _utxos_steps(self, script_pubkey: bytes):
        """Confirmed coins from ``scantxoutset`` (the UTXO set; no wallet or index needed),
        minus those the mempool spends, plus the mempool's new outputs to the script when the
        mempool is small enough to read (MEMPOOL_SCAN_LIMIT); above that, unconfirmed
        outputs are left out and only mempool spends of the confirmed coins are removed."""
        scan = yield Call("scantxoutset", ("start", [{"desc": f"raw({script_pubkey.hex()})"}]), SCAN_TIMEOUT)
        coins = unspents_from_scan(scan, script_pubkey)
        size = field((yield Call("getmempoolinfo")), "size", int, "getmempoolinfo")
        if size <= MEMPOOL_SCAN_LIMIT:
            listed = checked((yield Call("getrawmempool")), list, "getrawmempool")
            txids = [display_hash(t, "getrawmempool") for t in listed]
            replies = yield Batch(tuple(Call("getrawtransaction", (to_display_hex(t), 0)) for t in txids),
                                  tolerant=True)
            # A transaction mined or evicted since getrawmempool is gone: skip it.
            spent, paying = scan_mempool([(t, r) for t, r in zip(txids, replies) if not isinstance(r, Exception)],
                                         script_pubkey)
        else:
            spent, paying = (yield from self._mempool_spends_steps(coins)), []
        return [c for c in coins if (c.txid, c.vout) not in spent] + paying

    def _mempool_spends_steps(self, coins: list[UnspentOutput]):
        if not coins:
            return set()
        try:
            outpoints = [{"txid": to_display_hex(c.txid), "vout": c.vout} for c in coins]
            found = yield Call("gettxspendingprevout", (outpoints,))
            return {(c.txid, c.vout) for c, e in zip(coins, checked(found, list, "gettxspendingprevout"))
                    if isinstance(e, dict) and e.get("spendingtxid")}
        except RpcCallError as exc:          # before Core 24: ask gettxout, which sees the mempool
            if exc.code != RPC_METHOD_NOT_FOUND:
                raise
        outs = yield Batch(tuple(Call("gettxout", (to_display_hex(c.txid), c.vout, True)) for c in coins))
        return {(c.txid, c.vout) for c, o in zip(coins, outs) if o is None}

    def _fee_steps(self, target_blocks: int):
        try:
            result = yield Call("estimatesmartfee", (target_blocks,))
        except RpcCallError:       # a target out of range, or a node without the estimator: no estimate
            return None
        return fee_rate_from_estimate(result)

    def _broadcast_steps(self, raw_tx: bytes):
        return broadcast_txid((yield Call("sendrawtransaction", (raw_tx.hex(),))), raw_tx, "sendrawtransaction")
