"""TbsSource: the ChainSource of a thin client (a PAT), over its TBS's chain endpoints.

``tbs://HOST:PORT`` is ``https://HOST:PORT/chain/...`` (chain.tbs_endpoints), read **without
certificate verification**: a new PAT cannot verify its TBS before it has headers, and it needs
nothing from the TLS layer here. Headers prove themselves by proof of work from the PAT's
checkpoint (HeaderChain checks them); proofs come assembled (``anchor_proof``), so the PAT never
downloads a block, and the caller checks every one against its own headers (chain.verify).
This class checks what each answer's bytes can prove (a transaction's txid, a proof naming the
block asked for, sizes); everything else is the TBS's word, as in chain.source. Nothing but
headers is to be accepted from a TBS that the PAT has not yet verified (roles.pat does so).

``block`` is refused: blocks are what a thin client does not download.

Beyond ChainSource, ``revocation_status`` asks the TBS about one of its batch-anchored PATs
(chain.revocation_list) and ``birth_certificate`` fetches the TBS's own certificate (to be
verified against its anchor: TbsRevocations.from_tbs).
"""
from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import httpx

from ..errors import MalformedInput
from .errors import AnchorNotFound, BlockNotFound, SourceError, SourceUnavailable, TxNotFound, TxRejected
from .hashes import sha256d, to_display_hex
from .header import HEADER_SIZE
from .network import Network
from .proof import AnchorProof
from .revocation_list import MAX_ANSWER_JSON, RevocationAnswer
from .source import ChainSource, Tip, TxStatus
from .tx import parse_tx, txid_of
from .transport import RetryPolicy, display_hash, field, timeouts, translate_errors, tx_with_id

LABEL = "TBS chain endpoints"
#: A served proof may be larger than a handshake's staple (a root-chain link, a large batch).
MAX_SERVED_PROOF = 64 * 1024
#: Core's MAX_STANDARD_TX_WEIGHT bounds a standard transaction's size.
MAX_TX_SIZE = 400_000
MAX_JSON = 4096
#: Headers per request, on both sides (chain.tbs_endpoints): HeaderChain.sync_from asks for 2000.
MAX_HEADERS = 2000
#: The TBS's birth certificate (identity.certificate bounds it at 8 KiB; room to refuse it there).
MAX_CERTIFICATE_ANSWER = 64 * 1024
#: Served by every role (roles.wellknown); a string here so this module needs no Flask.
BIRTH_CERTIFICATE_PATH = "/.well-known/milagro/birth-certificate"


class TbsSource(ChainSource):
    """A ChainSource over a TBS at ``base_url`` (``https://HOST:PORT``). ``verify`` is False by
    design (see the module doc); ``transport`` replaces the network (tests mount the blueprint
    through httpx.WSGITransport)."""

    def __init__(self, base_url: str, *, network: Network | None = None, verify=False, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"a TBS is reached at https://HOST:PORT, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._expected = network
        self._network: Network | None = None
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(timeout=timeouts(timeout), verify=verify, transport=transport,
                                  follow_redirects=False)

    # --- transport --------------------------------------------------------------------
    def _request(self, method: str, path: str, *, limit: int, idempotent: bool = True,
                 content: bytes | None = None, params: dict | None = None) -> tuple[int, bytes]:
        """(status, body) with the body bounded by ``limit``; unreachable/busy TBSs are
        retried for idempotent requests only (chain.transport's rules)."""
        url = self.base_url + path
        for attempt in range(self.retry.tries):
            last = attempt == self.retry.tries - 1
            try:
                with translate_errors(LABEL, url):
                    with self._http.stream(method, url, params=params, content=content,
                                           headers={"Accept": "*/*"}) as resp:
                        body = bytearray()
                        for chunk in resp.iter_bytes():
                            body += chunk
                            if len(body) > limit:
                                raise SourceError(f"{LABEL} {url}: answer exceeds {limit} bytes")
                        status = resp.status_code
            except SourceUnavailable as exc:
                if last or (exc.maybe_sent and not idempotent):
                    raise
                time.sleep(self.retry.delay(attempt))
                continue
            if status in (429, 503) and not last:
                time.sleep(self.retry.delay(attempt))
                continue
            return status, bytes(body)
        raise AssertionError("unreachable")

    def _json(self, status: int, body: bytes, where: str):
        try:
            return json.loads(body)
        except (ValueError, RecursionError):     # RecursionError: "[[[[..." nested past the limit
            raise SourceError(f"{LABEL} {where}: HTTP {status}, not JSON") from None

    def _error_code(self, status: int, body: bytes) -> str | None:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return None
        return doc.get("error") if isinstance(doc, dict) else None

    def _fail(self, status: int, body: bytes, where: str, txid: bytes | None = None):
        code = self._error_code(status, body)
        if status == 404 and code == "tx_not_found" and txid is not None:
            raise TxNotFound(to_display_hex(txid), "the TBS does not know it")
        if status == 404 and code == "block_not_found":
            raise BlockNotFound(where)
        raise SourceError(f"{LABEL} {where}: HTTP {status} {code or ''}".rstrip())

    # --- network ----------------------------------------------------------------------
    @property
    def network(self) -> Network:
        if self._network is None:
            self.tip()
        return self._network

    # --- ChainSource ------------------------------------------------------------------
    def tip(self) -> Tip:
        status, body = self._request("GET", "/chain/tip", limit=MAX_JSON)
        if status != 200:
            self._fail(status, body, "tip")
        doc = self._json(status, body, "tip")
        try:
            network = Network.from_label(field(doc, "network", str, "tip"))
        except ValueError:
            raise SourceError(f"{LABEL} tip names an unknown network {doc.get('network')!r}") from None
        if self._expected is not None and network != self._expected:
            raise SourceError(f"the TBS serves {network.label}, not {self._expected.label}")
        self._network = network
        height = field(doc, "height", int, "tip")
        return Tip(height, display_hash(field(doc, "hash", str, "tip"), "tip.hash"))

    def headers(self, start: int, count: int) -> list[bytes]:
        out: list[bytes] = []
        while count > 0:
            ask = min(count, MAX_HEADERS)
            status, body = self._request("GET", "/chain/headers", params={"start": start, "count": ask},
                                         limit=ask * HEADER_SIZE)
            if status != 200:
                self._fail(status, body, f"headers from {start}")
            if len(body) % HEADER_SIZE:
                raise SourceError(f"{LABEL} sent {len(body)} bytes of headers: not a multiple of {HEADER_SIZE}")
            page = [body[i:i + HEADER_SIZE] for i in range(0, len(body), HEADER_SIZE)]
            out += page
            if len(page) < ask:
                break
            start, count = start + ask, count - ask
        return out

    def header(self, height: int) -> bytes:
        got = self.headers(height, 1)
        if not got:
            raise BlockNotFound(f"at height {height}")
        return got[0]

    def block(self, block_hash: bytes) -> bytes:
        raise SourceError("a tbs:// source serves proofs, not blocks (a thin client never downloads one)")

    def anchor_proof(self, txid: bytes, block_hash: bytes, height: int) -> AnchorProof:
        status, body = self._request("GET", "/chain/proof", limit=MAX_SERVED_PROOF, params={
            "txid": to_display_hex(txid), "block": to_display_hex(block_hash)})
        if status == 404:
            raise AnchorNotFound(f"the TBS has no proof of {to_display_hex(txid)} in block "
                                 f"{to_display_hex(block_hash)} ({self._error_code(status, body)})")
        if status != 200:
            self._fail(status, body, "proof")
        try:
            return AnchorProof.decode(body, max_size=MAX_SERVED_PROOF)
        except MalformedInput as exc:
            raise SourceError(f"{LABEL} sent a malformed proof: {exc}") from None

    def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        params = {"block": to_display_hex(block_hash)} if block_hash else None
        status, body = self._request("GET", f"/chain/tx/{to_display_hex(txid)}", limit=MAX_TX_SIZE, params=params)
        if status != 200:
            self._fail(status, body, f"tx {to_display_hex(txid)}", txid)
        tx_with_id(body, txid)
        return body

    def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        params = {"block": to_display_hex(block_hash)} if block_hash else None
        where = f"status of {to_display_hex(txid)}"
        status, body = self._request("GET", f"/chain/status/{to_display_hex(txid)}", limit=MAX_JSON, params=params)
        if status != 200:
            self._fail(status, body, where, txid)
        doc = self._json(status, body, where)
        if display_hash(field(doc, "txid", str, where), where) != txid:
            raise SourceError(f"{LABEL} answered the {where} for another transaction")
        block = field(doc, "block_hash", (str, type(None)), where)
        height = field(doc, "height", (int, type(None)), where)
        if (block is None) != (height is None) or isinstance(height, bool):
            raise SourceError(f"{LABEL} {where}: block_hash and height come together")
        return TxStatus(txid, display_hash(block, where) if block else None, height)

    def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None:
        where = f"outspend {to_display_hex(txid)}:{vout}"
        status, body = self._request("GET", f"/chain/outspend/{to_display_hex(txid)}/{vout}", limit=MAX_JSON)
        if status != 200:
            self._fail(status, body, where, txid)
        doc = self._json(status, body, where)
        spent = field(doc, "spent", bool, where)
        spender = field(doc, "txid", (str, type(None)), where)
        if spent != (spender is not None):
            raise SourceError(f"{LABEL} {where}: spent and txid disagree")
        return display_hash(spender, where) if spender else None

    def broadcast(self, raw_tx: bytes) -> bytes:
        status, body = self._request("POST", "/chain/broadcast", limit=MAX_JSON, idempotent=False, content=raw_tx)
        if status == 400 and self._error_code(status, body) == "tx_rejected":
            reason = self._json(status, body, "broadcast").get("reason", "rejected")
            raise TxRejected(str(reason))
        if status != 200:
            self._fail(status, body, "broadcast")
        txid = display_hash(field(self._json(status, body, "broadcast"), "txid", str, "broadcast"), "broadcast")
        try:
            ours = txid_of(parse_tx(raw_tx))
        except MalformedInput:
            ours = None
        if ours is not None and txid != ours:
            raise SourceError(f"{LABEL} says it broadcast {to_display_hex(txid)}, not our transaction")
        return txid

    # --- beyond ChainSource: what a TBS says about its own PATs ---------------------------
    def revocation_status(self, digest: bytes) -> RevocationAnswer:
        """The TBS's answer for a certificate digest (chain.revocation_list): **its word** when
        it says revoked, a proof to check against its 0x04 chain otherwise. SourceError for a
        TBS that keeps no list, fails, or answers anything but one strict RevocationAnswer."""
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ValueError("a certificate digest is 32 bytes")
        where = f"revocation status of {digest.hex()}"
        status, body = self._request("GET", f"/chain/revocation/{digest.hex()}", limit=MAX_ANSWER_JSON)
        if status != 200:
            self._fail(status, body, where)
        try:
            return RevocationAnswer.from_json(self._json(status, body, where))
        except MalformedInput as exc:
            raise SourceError(f"{LABEL} {where}: malformed answer: {exc}") from None

    def birth_certificate(self) -> bytes:
        """The TBS's canonical birth certificate (``/.well-known/milagro/birth-certificate``),
        bounded; unverified here (the caller checks it against the TBS's anchor)."""
        status, body = self._request("GET", BIRTH_CERTIFICATE_PATH, limit=MAX_CERTIFICATE_ANSWER)
        if status != 200:
            self._fail(status, body, "birth certificate")
        return body

    def close(self) -> None:
        self._http.close()


def checkpoint_from_source(source: ChainSource, height: int, block_hash: bytes):
    """A HeaderChain checkpoint from a trusted (height, hash) pair and the source's header at
    that height, which must hash to it: the one thing a thin client ships with besides its
    TBS's locator. Chainwork counts from the checkpoint (0 before it)."""
    from .headerchain import Checkpoint
    raw = source.header(height)
    if sha256d(raw) != block_hash:
        raise SourceError(f"the header the source serves at height {height} is not the checkpoint "
                          f"{to_display_hex(block_hash)}")
    return Checkpoint(height, raw, 0)
