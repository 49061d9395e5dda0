"""The Esplora-compatible REST subset the chain server answers.

Paths, bodies and status codes as Blockstream's electrs serves them: plain-text
hashes and heights, JSON transactions, 404 with a short text for what it does not
know, 400 for malformed input. Hashes in paths and bodies are in display order;
a script hash (``/scripthash/:hash``) is SHA256(scriptPubKey) in plain byte order,
as electrs computes it (the Electrum protocol's reversed form is not used here).

``/fee-estimates`` is ``{}``: electrs leaves out every target bitcoind has no
estimate for, and a regtest node has none.
"""
from __future__ import annotations

import json
import re
import threading

from .block import Block
from .chainview import ChainView
from .errors import BlockNotFound, TxNotFound, TxRejected
from .hashes import from_display_hex, sha256, to_display_hex
from .merkle import merkle_branch
from .network import Network
from .tx import parse_tx
from .block import block_weight
from .txjson import difficulty, esplora_status, esplora_tx

_HASH = r"([0-9a-fA-F]{64})"
TEXT, JSON, BINARY = "text/plain", "application/json", "application/octet-stream"


class HttpError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _json(obj) -> tuple[int, str, bytes]:
    return 200, JSON, json.dumps(obj).encode()


def _text(text: str) -> tuple[int, str, bytes]:
    return 200, TEXT, text.encode()


#: electrs' BLOCK_LIMIT: blocks per /blocks page.
BLOCKS_PER_PAGE = 10


class ScriptIndex:
    """SHA256(scriptPubKey) -> scriptPubKey for every output the node has shown us.

    The node indexes outputs by script; Esplora's clients ask by the script's hash. A hash
    names the same script forever, so entries never go stale: after a reorg only the
    blocks not seen yet are read, and entries from blocks that left the chain just find
    no coins.
    """

    def __init__(self, node) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._scripts: dict[bytes, bytes] = {}
        self._scanned: dict[int, bytes] = {}      # height -> hash of the block read there
        self._mempool_seen: set[bytes] = set()

    def _add(self, tx) -> None:
        for out in tx.vout:
            self._scripts.setdefault(sha256(out.script_pubkey.data), out.script_pubkey.data)

    def script(self, script_hash: bytes) -> bytes | None:
        with self._lock:
            height = self.node.tip().height
            while height >= 0 and self._scanned.get(height) != (block_hash := self.node.block_hash(height)):
                for tx in Block.parse(self.node.block(block_hash)).txs:
                    self._add(tx)
                self._scanned[height] = block_hash
                height -= 1
            for txid in self.node.mempool_txids():
                if txid not in self._mempool_seen:
                    try:
                        self._add(parse_tx(self.node.transaction(txid)))
                    except TxNotFound:          # mined or evicted meanwhile: its block comes next time
                        continue
                    self._mempool_seen.add(txid)
            return self._scripts.get(script_hash)


class EsploraRest:
    def __init__(self, view: ChainView) -> None:
        self.view = view
        self.node = view.node
        self.scripts = ScriptIndex(self.node)
        self._routes = [
            (re.compile(r"/blocks/tip/height"), self.tip_height),
            (re.compile(r"/blocks/tip/hash"), self.tip_hash),
            (re.compile(r"/blocks(?:/(\d{1,10}))?"), self.blocks),
            (re.compile(rf"/block/{_HASH}/header"), self.block_header),
            (re.compile(rf"/block/{_HASH}/raw"), self.block_raw),
            (re.compile(rf"/block/{_HASH}/status"), self.block_status),
            (re.compile(rf"/block/{_HASH}/txids"), self.block_txids),
            (re.compile(r"/block-height/(-?\d{1,12})"), self.block_height),
            (re.compile(rf"/tx/{_HASH}"), self.tx),
            (re.compile(rf"/tx/{_HASH}/hex"), self.tx_hex),
            (re.compile(rf"/tx/{_HASH}/raw"), self.tx_raw),
            (re.compile(rf"/tx/{_HASH}/status"), self.tx_status),
            (re.compile(rf"/tx/{_HASH}/merkle-proof"), self.merkle_proof),
            (re.compile(rf"/tx/{_HASH}/outspend/(\d{{1,10}})"), self.outspend),
            (re.compile(rf"/tx/{_HASH}/outspends"), self.outspends),
            (re.compile(rf"/scripthash/{_HASH}/utxo"), self.scripthash_utxo),
            (re.compile(r"/fee-estimates"), self.fee_estimates),
        ]

    def get(self, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0].rstrip("/") or "/"
        for pattern, handler in self._routes:
            m = pattern.fullmatch(path)
            if m:
                return handler(*m.groups())
        m = re.fullmatch(r"/(?:tx|block|scripthash)/([^/]+)(?:/.*)?", path)
        if m and not re.fullmatch(_HASH, m.group(1)):
            raise HttpError(400, "Invalid hex string")
        raise HttpError(404, "Not Found")

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        if path.split("?", 1)[0].rstrip("/") != "/tx":
            raise HttpError(404, "Not Found")
        decode_failed = HttpError(400, 'sendrawtransaction RPC error: {"code":-22,"message":"TX decode failed"}')
        try:
            raw = bytes.fromhex(body.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise decode_failed from None
        try:
            return _text(to_display_hex(self.node.submit_tx(raw)))
        except TxRejected as exc:
            if exc.reason == "tx-decode-failed":
                raise decode_failed from None
            if exc.reason == "txn-already-in-mempool":
                return _text(exc.txid)
            # electrs passes bitcoind's error through in this form; clients show it verbatim.
            error = json.dumps({"code": -26, "message": exc.reason}, separators=(",", ":"))
            raise HttpError(400, f"sendrawtransaction RPC error: {error}") from None

    # --- blocks ---

    def tip_height(self):
        return _text(str(self.node.tip().height))

    def tip_hash(self):
        return _text(to_display_hex(self.node.tip().block_hash))

    def _header(self, hash_hex: str):
        try:
            return self.view.header(from_display_hex(hash_hex))
        except BlockNotFound:
            raise HttpError(404, "Block not found") from None

    def block_header(self, hash_hex):
        return _text(self._header(hash_hex).serialize().hex())

    def block_raw(self, hash_hex):
        self._header(hash_hex)
        try:
            return 200, BINARY, self.node.block(from_display_hex(hash_hex))
        except BlockNotFound:
            raise HttpError(404, "Block not found") from None

    def _block_value(self, block_hash: bytes) -> dict:
        """electrs' BlockValue (one /blocks entry)."""
        raw = self.node.block(block_hash)
        block = Block.parse(raw)
        header = block.header
        return {"id": to_display_hex(block_hash), "height": self.view.height(block_hash)[0],
                "version": header.version, "timestamp": header.time, "tx_count": len(block.txs), "size": len(raw),
                "weight": block_weight(block), "merkle_root": to_display_hex(header.merkle_root),
                "previousblockhash": to_display_hex(header.prev_hash) if any(header.prev_hash) else None,
                "mediantime": self.view.mediantime(block_hash), "nonce": header.nonce, "bits": header.bits,
                "difficulty": difficulty(header.bits)}

    def blocks(self, start=None):
        """Up to BLOCKS_PER_PAGE blocks of the best chain, from ``start`` (default: the tip) down."""
        tip = self.node.tip().height
        start = tip if start is None else int(start)
        if start > tip:
            raise HttpError(404, "Block not found")
        try:
            return _json([self._block_value(self.node.block_hash(h))
                          for h in range(start, max(start - BLOCKS_PER_PAGE, -1), -1)])
        except BlockNotFound:          # the chain got shorter while we read
            raise HttpError(404, "Block not found") from None

    def block_status(self, hash_hex):
        block_hash = from_display_hex(hash_hex)
        self._header(hash_hex)
        height = self.node.height_of(block_hash)
        if height is None:
            return _json({"in_best_chain": False})
        status = {"in_best_chain": True, "height": height}
        following = self.view.next_hash(height, True, self.node.tip().height)
        if following is not None:
            status["next_best"] = to_display_hex(following)
        return _json(status)

    def block_txids(self, hash_hex):
        self._header(hash_hex)
        try:
            block = Block.parse(self.node.block(from_display_hex(hash_hex)))
        except BlockNotFound:
            raise HttpError(404, "Block not found") from None
        return _json([to_display_hex(t) for t in block.txids()])

    def block_height(self, height):
        height = int(height)
        if height < 0 or height > self.node.tip().height:
            raise HttpError(404, "Block not found")
        try:
            return _text(to_display_hex(self.node.block_hash(height)))
        except BlockNotFound:
            raise HttpError(404, "Block not found") from None

    # --- transactions ---

    def _raw_tx(self, txid: bytes) -> bytes:
        try:
            return self.node.transaction(txid)
        except TxNotFound:
            raise HttpError(404, "Transaction not found") from None

    def _status(self, txid: bytes) -> dict:
        try:
            status = self.node.tx_status(txid)
        except TxNotFound:
            raise HttpError(404, "Transaction not found") from None
        return esplora_status(status.block_hash, status.height, self.view.block_time(status.block_hash))

    def tx(self, txid_hex):
        txid = from_display_hex(txid_hex)
        raw = self._raw_tx(txid)
        return _json(esplora_tx(raw, Network.REGTEST, self.view.prevouts(raw), self._status(txid)))

    def tx_hex(self, txid_hex):
        return _text(self._raw_tx(from_display_hex(txid_hex)).hex())

    def tx_raw(self, txid_hex):
        return 200, BINARY, self._raw_tx(from_display_hex(txid_hex))

    def tx_status(self, txid_hex):
        return _json(self._status(from_display_hex(txid_hex)))

    def merkle_proof(self, txid_hex):
        txid = from_display_hex(txid_hex)
        location = self.node.tx_location(txid)
        if location is None:
            raise HttpError(404, "Transaction not found or is unconfirmed")
        block_hash, height, pos = location
        txids = Block.parse(self.node.block(block_hash)).txids()
        return _json({"block_height": height,
                      "merkle": [to_display_hex(h) for h in merkle_branch(txids, pos)], "pos": pos})

    def _spend(self, txid: bytes, vout: int) -> dict:
        spend = self.view.spend(txid, vout)
        if spend is None:
            return {"spent": False}
        spender, vin = spend
        return {"spent": True, "txid": to_display_hex(spender), "vin": vin, "status": self._status(spender)}

    def outspend(self, txid_hex, vout):
        txid = from_display_hex(txid_hex)
        n_out = len(parse_tx(self._raw_tx(txid)).vout)
        if int(vout) >= n_out:
            raise HttpError(404, "Output not found")
        return _json(self._spend(txid, int(vout)))

    def outspends(self, txid_hex):
        txid = from_display_hex(txid_hex)
        n_out = len(parse_tx(self._raw_tx(txid)).vout)
        return _json([self._spend(txid, n) for n in range(n_out)])

    # --- scripts and fees ---

    def scripthash_utxo(self, hash_hex):
        try:
            script = self.scripts.script(bytes.fromhex(hash_hex))
            if script is None:
                return _json([])            # never paid: no outputs, as electrs answers
            out = []
            for txid, vout, coin in self.node.utxos_by_script(script, include_mempool=True):
                block_hash = None if coin.height is None else self.node.block_hash(coin.height)
                out.append({"txid": to_display_hex(txid), "vout": vout,
                            "status": esplora_status(block_hash, coin.height, self.view.block_time(block_hash)),
                            "value": coin.value})
            return _json(out)
        except BlockNotFound:               # the chain got shorter while we read: the client asks again
            raise HttpError(503, "chain changed while reading; retry") from None

    def fee_estimates(self):
        return _json({})
