"""The ChainSource logic over Esplora's REST API, without IO (used by esplora.py).

As in ``rpc_steps``, each method is a generator that yields requests (``Get``,
``Post``, or ``Parallel`` for independent ones) and is sent their bodies, or has their
errors thrown in. The parsers check everything the bytes can prove (a header's hash,
a block's hash, a transaction's txid, a header rebuilt from JSON hashing to its id)
and the shape of every JSON body: a malformed reply is a SourceError.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from ..errors import MalformedInput
from .block import Block
from .errors import BlockNotFound, SourceError, TxNotFound, TxRejected
from .hashes import sha256, sha256d, to_display_hex
from .header import HEADER_STRUCT
from .network import PARAMS, Network
from .source import Tip, TxStatus, UnspentOutput
from .transport import (RetryPolicy, broadcast_txid, checked, checked_block, checked_header, checked_tx, display_hash, field,
                        hash_field, hex_bytes, linked)

TEXT, JSON, BYTES = "text", "json", "bytes"
#: Headers per /blocks page we count on (electrs' BLOCK_LIMIT; mempool.space serves 15).
PAGE = 10
GENESIS = {PARAMS[n].genesis_hash: n for n in Network}
_U32 = 1 << 32


@dataclass(frozen=True, slots=True)
class Get:
    path: str
    kind: str = TEXT
    not_found: Callable[[], Exception] | None = None   # the error a 404 means; None: a SourceError
    missing_ok: bool = False                            # a 404 answers None instead


@dataclass(frozen=True, slots=True)
class Post:
    path: str
    body: str


@dataclass(frozen=True, slots=True)
class Parallel:
    """Independent requests: the async source runs them concurrently; answers in order."""
    requests: tuple[Get, ...]


def rejection_reason(text: str) -> str:
    """electrs passes bitcoind's error through as ``sendrawtransaction RPC error: {json}``."""
    _, sep, rest = text.partition("RPC error: ")
    if sep:
        try:
            message = json.loads(rest).get("message")
            if isinstance(message, str):
                return message
        except (ValueError, AttributeError, RecursionError):
            pass
    return text.strip()[:500] or "rejected"


def height_text(text, where: str) -> int:
    text = checked(text, str, where).strip()
    if not text.isdigit():
        raise SourceError(f"{where}: not a height: {text[:40]!r}")
    return int(text)


def header_from_block_value(value: dict, where: str) -> tuple[int, bytes]:
    """(height, 80-byte header) rebuilt from one /blocks entry; it must hash to the entry's id."""
    prev = value.get("previousblockhash") if isinstance(value, dict) else None
    version, timestamp, bits, nonce = (field(value, k, int, where) for k in ("version", "timestamp", "bits", "nonce"))
    # nVersion is signed in Core (some servers print it so): either form packs to the same bytes.
    if not (-(1 << 31) <= version < _U32 and all(0 <= f < _U32 for f in (timestamp, bits, nonce))):
        raise SourceError(f"{where}: header field out of range")
    raw = HEADER_STRUCT.pack(version - _U32 if version >= 1 << 31 else version,
                             b"\x00" * 32 if prev is None else display_hash(prev, where),
                             hash_field(value, "merkle_root", where), timestamp, bits, nonce)
    if sha256d(raw) != hash_field(value, "id", where):
        raise SourceError(f"{where}: the header rebuilt from its fields does not hash to its id")
    return field(value, "height", int, where), raw


def status_from_esplora(status: dict, txid: bytes) -> TxStatus:
    where = f"/tx/{to_display_hex(txid)}/status"
    if not field(status, "confirmed", bool, where):
        return TxStatus(txid, None, None)
    return TxStatus(txid, hash_field(status, "block_hash", where), field(status, "block_height", int, where))


def outspend_from_esplora(answer: dict, where: str) -> bytes | None:
    return hash_field(answer, "txid", where) if field(answer, "spent", bool, where) else None


def utxos_from_esplora(body, script_pubkey: bytes) -> list[UnspentOutput]:
    """The /scripthash/:hash/utxo list. Esplora does not repeat the script: it is the one asked for."""
    out = []
    for i, item in enumerate(checked(body, list, "utxo")):
        where = f"utxo[{i}]"
        status = field(item, "status", dict, where)
        confirmed = field(status, "confirmed", bool, where + ".status")
        vout, value = field(item, "vout", int, where), field(item, "value", int, where)
        if vout < 0 or value < 0:
            raise SourceError(f"{where}: negative vout or value")
        out.append(UnspentOutput(hash_field(item, "txid", where), vout, value, script_pubkey,
                                 field(status, "block_height", int, where + ".status") if confirmed else None))
    return out


def fee_rate_from_estimates(body, target_blocks: int) -> float | None:
    """sat/vB for ``target_blocks`` from /fee-estimates ({"<target>": sat/vB}): the estimate
    for the largest target not above ours (a faster target, so never too low); None if none."""
    best = None
    for key, rate in checked(body, dict, "fee-estimates").items():
        # isascii: str.isdigit() also accepts "²", which int() refuses.
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 6):
            raise SourceError(f"fee-estimates: target {key[:20]!r} is not a number of blocks")
        rate = checked(rate, "number", f"fee-estimates.{key}")
        try:
            rate = float(rate)               # an int past float's range is OverflowError
        except OverflowError:
            rate = float("inf")
        if not rate < float("inf") or rate != rate:      # Infinity and NaN parse as JSON here
            raise SourceError(f"fee-estimates.{key}: {rate} is not a fee rate")
        if int(key) <= target_blocks and rate > 0 and (best is None or int(key) > best[0]):
            best = (int(key), rate)
    return None if best is None else best[1]


class EsploraSteps:
    """State and the ChainSource logic shared by EsploraSource and AsyncEsploraSource."""

    def _setup(self, base_url: str, network: Network | None, retry: RetryPolicy | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._expected, self._network = network, None
        self.retry = retry or RetryPolicy()

    def _network_steps(self):
        """Esplora has no network call: the genesis block names the chain."""
        if self._network is None:
            genesis = display_hash((yield Get("/block-height/0")), "/block-height/0")
            network = GENESIS.get(genesis)
            if network is None:
                raise SourceError(f"Esplora {self.base_url} serves an unknown chain (genesis "
                                  f"{to_display_hex(genesis)}; custom signets are not supported)")
            if self._expected is not None and network is not self._expected:
                raise SourceError(f"Esplora {self.base_url} serves {network.label}, not {self._expected.label}")
            self._network = network
        return self._network

    def _tip_steps(self):
        # Two calls cannot name the tip atomically: the height must still lead to the hash.
        for _ in range(3):
            tip_hash = display_hash((yield Get("/blocks/tip/hash")), "/blocks/tip/hash")
            height = height_text((yield Get("/blocks/tip/height")), "/blocks/tip/height")
            at = yield Get(f"/block-height/{height}", missing_ok=True)
            if at is not None and display_hash(at, "/block-height") == tip_hash:
                return Tip(height, tip_hash)
        raise SourceError(f"Esplora {self.base_url}: the tip kept moving while it was read; retry")

    def _hash_at_steps(self, height: int):
        if height < 0:
            raise BlockNotFound(f"at height {height}")
        found = yield Get(f"/block-height/{height}", not_found=lambda: BlockNotFound(f"at height {height}"))
        return display_hash(found, f"/block-height/{height}")

    def _header_steps(self, height: int):
        block_hash = yield from self._hash_at_steps(height)
        hex_hash = to_display_hex(block_hash)
        found = yield Get(f"/block/{hex_hash}/header", not_found=lambda: BlockNotFound(hex_hash))
        return checked_header(hex_bytes(found, "header"), block_hash)

    def _headers_steps(self, start: int, count: int):
        """Ten headers a request: each /blocks page lists blocks from a height down, with the
        header's fields; each header is rebuilt and must hash to its id. Heights a page did
        not cover (a server without /blocks, a smaller page) are read one by one."""
        end = min(start + count, (yield from self._tip_steps()).height + 1)
        if start < 0 or end <= start:
            return []
        tops = [min(s + PAGE - 1, end - 1) for s in range(start, end, PAGE)]
        pages = yield Parallel(tuple(Get(f"/blocks/{top}", JSON, missing_ok=True) for top in tops))
        found: dict[int, bytes] = {}
        for top, page in zip(tops, pages):
            for i, value in enumerate(checked(page, list, f"/blocks/{top}") if page is not None else []):
                height, raw = header_from_block_value(value, f"/blocks/{top}[{i}]")
                found[height] = raw
        out = []
        for height in range(start, end):
            out.append(found[height] if height in found else (yield from self._header_steps(height)))
        return linked(out)

    def _block_steps(self, block_hash: bytes):
        hex_hash = to_display_hex(block_hash)
        return checked_block((yield Get(f"/block/{hex_hash}/raw", BYTES, not_found=lambda: BlockNotFound(hex_hash))),
                             block_hash)

    def _in_block_steps(self, txid: bytes, block_hash: bytes):
        """TxNotFound unless the block lists the transaction (its word: the verifier checks
        the Merkle branch itself)."""
        tx_hex, block_hex = to_display_hex(txid), to_display_hex(block_hash)
        listed = yield Get(f"/block/{block_hex}/txids", JSON,
                           not_found=lambda: TxNotFound(tx_hex, f"block {block_hex} unknown"))
        if txid not in {display_hash(t, "txids") for t in checked(listed, list, "txids")}:
            raise TxNotFound(tx_hex, f"not in block {block_hex}")

    def _tx_steps(self, txid: bytes, block_hash: bytes | None):
        tx_hex = to_display_hex(txid)
        if block_hash is None:
            found = yield Get(f"/tx/{tx_hex}/hex", not_found=lambda: TxNotFound(tx_hex))
            return checked_tx(hex_bytes(found, "transaction"), txid)
        yield from self._in_block_steps(txid, block_hash)
        found = yield Get(f"/tx/{tx_hex}/hex", missing_ok=True)
        if found is not None:
            return checked_tx(hex_bytes(found, "transaction"), txid)
        # In the block, unknown to the server's index (a block off its best chain): read the block.
        raw_block = yield from self._block_steps(block_hash)
        try:
            block = Block.parse(raw_block)
        except MalformedInput as exc:
            raise SourceError(f"block {to_display_hex(block_hash)} does not parse: {exc}") from None
        for found_txid, raw in zip(block.txids(), block.raw_txs):
            if found_txid == txid:
                return raw
        raise SourceError(f"block {to_display_hex(block_hash)} lists {tx_hex} but does not hold it")

    def _tx_status_steps(self, txid: bytes, block_hash: bytes | None):
        tx_hex = to_display_hex(txid)
        body = yield Get(f"/tx/{tx_hex}/status", JSON, not_found=lambda: TxNotFound(tx_hex),
                         missing_ok=block_hash is not None)
        status = None if body is None else status_from_esplora(body, txid)
        if block_hash is None or (status is not None and status.block_hash == block_hash):
            return status
        # That block's word, as the other sources give it: its height if it is on the best chain.
        yield from self._in_block_steps(txid, block_hash)
        block_hex = to_display_hex(block_hash)
        info = yield Get(f"/block/{block_hex}/status", JSON, not_found=lambda: BlockNotFound(block_hex))
        best = field(info, "in_best_chain", bool, "block status")
        return TxStatus(txid, block_hash, field(info, "height", int, "block status") if best else None)

    def _outspend_steps(self, txid: bytes, vout: int):
        where = f"/tx/{to_display_hex(txid)}/outspend/{vout}"
        return outspend_from_esplora((yield Get(where, JSON, not_found=lambda: TxNotFound(to_display_hex(txid)))),
                                     where)

    def _utxos_steps(self, script_pubkey: bytes):
        # Esplora's script hash: SHA256 of the script in plain byte order (electrs'
        # compute_script_hash); the Electrum protocol's reversed hex is another thing.
        body = yield Get(f"/scripthash/{sha256(script_pubkey).hex()}/utxo", JSON)
        return utxos_from_esplora(body, script_pubkey)

    def _fee_steps(self, target_blocks: int):
        return fee_rate_from_estimates((yield Get("/fee-estimates", JSON)), target_blocks)

    def _broadcast_steps(self, raw_tx: bytes):
        return broadcast_txid((yield Post("/tx", raw_tx.hex())), raw_tx, "POST /tx")

    # --- the one translation of HTTP statuses ---

    def _answer(self, request: Get | Post, status: int, content: bytes, text: str):
        """A response's body, parsed as the request asked, or the error its status means."""
        if status == 200:
            kind = request.kind if isinstance(request, Get) else TEXT
            if kind == BYTES:
                return content
            if kind == JSON:
                try:
                    return json.loads(content)
                except (ValueError, RecursionError):     # RecursionError: "[[[[..." nested past the limit
                    raise SourceError(f"Esplora {self.base_url}{request.path}: body is not JSON") from None
            return text
        if isinstance(request, Post) and status == 400:
            raise TxRejected(rejection_reason(text))
        if status == 404 and isinstance(request, Get):
            if request.missing_ok:
                return None
            if request.not_found is not None:
                raise request.not_found()
        raise SourceError(f"Esplora {self.base_url}{request.path}: HTTP {status}: {text[:200]!r}")
