"""The chain endpoints a TBS serves to thin clients (the ``tbs://`` source's server side).

A Flask blueprint over any ChainSource (the TBS's own: embedded, bitcoind or Esplora). Nothing
here needs to be trusted by the client: headers prove themselves by proof of work, proofs are
checked against those headers, and what cannot be proven (an unspent output) is named the
source's word, as in chain.source. So the routes are plain HTTP(S) with no client identity,
and every answer is bounded.

    GET  /chain/tip                          {"network", "height", "hash"}
    GET  /chain/headers?start=S&count=N      80·n bytes (n <= N <= MAX_HEADERS; fewer at the tip)
    GET  /chain/proof?txid=T&block=B         AnchorProof bytes (chain.proof) for T in block B
    GET  /chain/tx/<txid>[?block=B]          the raw transaction with witness
    GET  /chain/status/<txid>[?block=B]      {"txid", "block_hash", "height"} (nulls: unconfirmed)
    GET  /chain/outspend/<txid>/<vout>       {"spent": bool, "txid": spender or null}: the source's word
    POST /chain/broadcast                    raw transaction bytes -> {"txid"}
    GET  /chain/revocation/<digest>          the TBS's RevocationAnswer for a PAT's certificate digest
                                             (64 hex, SHA256 of the canonical certificate; plain
                                             order, not reversed): {"revoked": true} (its word) or
                                             {"revoked": false, "root", "link", "proof"} against the
                                             newest list it anchored (chain.revocation_list)

Hashes are display-order hex, as explorers print them. Errors are JSON {"error",
"error_description"} with 400 (bad parameters, a rejected transaction), 404 (unknown
transaction or block, or a transaction not in that block; ``no_revocation_list`` when the
blueprint was given no ``revocations``), 413 (a body too large) or 502 (the TBS's own source,
or its revocation store, failed; the detail is logged here, not sent).
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from typing import Callable

from flask import Blueprint, Response, jsonify, request

from ..errors import MilagroError
from .errors import AnchorNotFound, BlockNotFound, SourceError, TxNotFound, TxRejected
from .hashes import from_display_hex, to_display_hex
from .proof import fetch_anchor_proof
from .revocation_list import RevocationAnswer
from .source import ChainSource
from .tbs_source import MAX_HEADERS

log = logging.getLogger(__name__)

#: Core's MAX_STANDARD_TX_WEIGHT is 400,000 WU: no standard transaction is larger than this.
MAX_BROADCAST_SIZE = 400_000
#: Proofs kept: every PAT of a batch asks for the same one (the batch transaction's).
PROOF_CACHE_SIZE = 64
OCTETS = "application/octet-stream"
_HASH = re.compile(r"^[0-9a-fA-F]{64}$")


class _BadRequest(Exception):
    pass


def _error(status: int, error: str, description: str, **extra):
    return jsonify({"error": error, "error_description": description, **extra}), status


def _hash(text: str | None, name: str) -> bytes:
    if text is None or not _HASH.match(text):
        raise _BadRequest(f"{name} must be a 64-digit hex hash")
    return from_display_hex(text)


def _int(text: str | None, name: str, low: int, high: int) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 10:
        raise _BadRequest(f"{name} must be a decimal integer")
    value = int(text)
    if not low <= value <= high:
        raise _BadRequest(f"{name} must be in [{low}, {high}]")
    return value


class _ProofCache:
    """(txid, block hash) -> encoded proof. A block's content is fixed by its hash, so an entry
    never goes stale; only the least recently used are dropped."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[bytes, bytes], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value: bytes) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def chain_blueprint(source: ChainSource | Callable[[], ChainSource], *, allow_broadcast: bool = True,
                    revocations: Callable[[bytes], RevocationAnswer] | None = None,
                    name: str = "milagro_chain") -> Blueprint:
    """The routes above over ``source`` (or a callable giving it, for a source opened per
    worker). Register it without a url_prefix: the routes carry /chain. ``revocations`` answers
    for a certificate digest (the TBS's store, through chain.revocation_list.answer_for); without
    it /chain/revocation/ is 404 ``no_revocation_list``."""
    get_source = source if callable(source) and not isinstance(source, ChainSource) else (lambda: source)
    blueprint = Blueprint(name, __name__)
    proofs = _ProofCache(PROOF_CACHE_SIZE)

    @blueprint.errorhandler(_BadRequest)
    def bad_request(exc):
        return _error(400, "bad_request", str(exc))

    @blueprint.errorhandler(TxNotFound)
    def tx_not_found(exc):
        return _error(404, "tx_not_found", "the TBS's chain source does not know this transaction")

    @blueprint.errorhandler(BlockNotFound)
    def block_not_found(exc):
        return _error(404, "block_not_found", "the TBS's chain source does not know this block")

    @blueprint.errorhandler(AnchorNotFound)
    def not_in_block(exc):
        return _error(404, "not_in_block", "the transaction is not in that block")

    @blueprint.errorhandler(TxRejected)
    def rejected(exc):
        return _error(400, "tx_rejected", "the TBS's chain source refused the transaction", reason=exc.reason)

    @blueprint.errorhandler(SourceError)
    def source_failed(exc):
        log.warning("chain endpoint %s failed: %s: %s", request.path, type(exc).__name__, exc)
        return _error(502, "source_error", "the TBS's chain source failed")

    @blueprint.errorhandler(MilagroError)
    def unusable(exc):              # the source's bytes did not parse (MalformedInput, ...)
        log.warning("chain endpoint %s failed: %s: %s", request.path, type(exc).__name__, exc)
        return _error(502, "source_error", "the TBS's chain source gave an unusable answer")

    @blueprint.get("/chain/tip")
    def tip():
        chain = get_source()
        current = chain.tip()
        return jsonify({"network": chain.network.label, "height": current.height,
                        "hash": to_display_hex(current.block_hash)})

    @blueprint.get("/chain/headers")
    def headers():
        start = _int(request.args.get("start"), "start", 0, 2**31 - 1)
        count = _int(request.args.get("count"), "count", 1, MAX_HEADERS)
        return Response(b"".join(get_source().headers(start, count)), mimetype=OCTETS)

    @blueprint.get("/chain/proof")
    def proof():
        txid = _hash(request.args.get("txid"), "txid")
        block_hash = _hash(request.args.get("block"), "block")
        key = (txid, block_hash)
        encoded = proofs.get(key)
        if encoded is None:
            chain = get_source()
            status = chain.tx_status(txid, block_hash)
            if status.block_hash != block_hash or status.height is None:
                raise AnchorNotFound("not in that block")
            encoded = fetch_anchor_proof(chain, txid, block_hash, status.height).encode()
            proofs.put(key, encoded)
        return Response(encoded, mimetype=OCTETS)

    def _block_arg() -> bytes | None:
        text = request.args.get("block")
        return None if text is None else _hash(text, "block")

    @blueprint.get("/chain/tx/<txid>")
    def transaction(txid: str):
        return Response(get_source().transaction(_hash(txid, "txid"), _block_arg()), mimetype=OCTETS)

    @blueprint.get("/chain/status/<txid>")
    def status(txid: str):
        answer = get_source().tx_status(_hash(txid, "txid"), _block_arg())
        return jsonify({"txid": to_display_hex(answer.txid),
                        "block_hash": to_display_hex(answer.block_hash) if answer.block_hash else None,
                        "height": answer.height})

    @blueprint.get("/chain/outspend/<txid>/<vout>")
    def outspend(txid: str, vout: str):
        spender = get_source().outspend_unverified(_hash(txid, "txid"), _int(vout, "vout", 0, 2**32 - 1))
        return jsonify({"spent": spender is not None, "txid": to_display_hex(spender) if spender else None})

    @blueprint.post("/chain/broadcast")
    def broadcast():
        if not allow_broadcast:
            return _error(403, "broadcast_disabled", "this TBS does not relay transactions")
        if (request.content_length or 0) > MAX_BROADCAST_SIZE:
            return _error(413, "too_large", f"a transaction is at most {MAX_BROADCAST_SIZE} bytes")
        raw = request.stream.read(MAX_BROADCAST_SIZE + 1)       # bounded even when chunked
        if not raw or len(raw) > MAX_BROADCAST_SIZE:
            return _error(400 if not raw else 413, "bad_request" if not raw else "too_large",
                          "the body is the raw transaction")
        return jsonify({"txid": to_display_hex(get_source().broadcast(raw))})

    @blueprint.get("/chain/revocation/<digest>")
    def revocation(digest: str):
        if revocations is None:
            return _error(404, "no_revocation_list", "this TBS keeps no revocation list")
        if not _HASH.match(digest):
            raise _BadRequest("the certificate digest must be 64 hex digits")
        try:
            answer = revocations(bytes.fromhex(digest))
        except Exception as exc:       # the store's failure: logged here, not sent
            log.warning("revocation answer for %s failed: %s: %s", digest.lower(), type(exc).__name__, exc)
            return _error(502, "revocation_error", "the TBS could not answer for this certificate")
        return jsonify(answer.to_json())

    return blueprint
