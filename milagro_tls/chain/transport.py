"""HTTP plumbing shared by the bitcoind and Esplora sources: one retry policy, one
translation of httpx's exceptions, and the checks their parsers apply to every reply (the
JSON's shape, and what its bytes can prove: a header's, block's or transaction's hash).

Retries are for failures that say nothing about the request itself: the server could
not be reached, did not answer in time, said it is busy (HTTP 429 and 503: Core's
"Work queue depth exceeded" is a 503), or failed without an answer (another 5xx). A
reply that is an answer, even an error (a JSON-RPC error body, which Core sends with
HTTP 500; an Esplora 404 or 400), is never retried. A request that may already have
run (a read timeout, a dropped connection, a 5xx other than 503) is retried only when
it is idempotent: mining a block twice is not.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from decimal import Decimal

import httpx

from ..errors import MalformedInput
from .errors import SourceError, SourceUnavailable
from .hashes import from_display_hex, sha256d, to_display_hex
from .header import HEADER_SIZE
from .tx import parse_tx, txid_of

#: Statuses that mean "busy, not processed": safe to repeat any request.
BUSY_STATUSES = (429, 503)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``tries`` attempts in all; the wait before attempt n+1 is drawn from
    [d/2, d] with d = min(max_delay, base_delay * 2**n) ("equal jitter": waits grow,
    and clients that failed together do not come back together)."""
    tries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        d = min(self.max_delay, self.base_delay * (2 ** attempt))
        wait = d / 2 + random.uniform(0, d / 2)
        if retry_after is not None:       # the server's own hint, but never longer than our cap
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


NO_RETRY = RetryPolicy(tries=1)


def timeouts(seconds: float) -> httpx.Timeout:
    """Our timeouts: ``seconds`` for reads and writes, at most 5 s to connect (a dead host
    should fail fast; a slow answer, such as a large block, may take its time)."""
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


@contextlib.contextmanager
def translate_errors(label: str, url: str):
    """The one place httpx's exceptions become chain-source errors."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise SourceUnavailable(f"{label} {url} unreachable: {type(exc).__name__}: {exc}",
                                maybe_sent=False) from exc
    except httpx.TimeoutException as exc:
        raise SourceUnavailable(f"{label} {url} timed out: {type(exc).__name__}", maybe_sent=True) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise SourceUnavailable(f"{label} {url} dropped the connection: {type(exc).__name__}: {exc}",
                                maybe_sent=True) from exc
    except httpx.HTTPError as exc:
        raise SourceError(f"{label} {url}: {type(exc).__name__}: {exc}") from exc


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _should_retry(resp: httpx.Response, idempotent: bool, answered) -> bool:
    status = resp.status_code
    if status in BUSY_STATUSES or (idempotent and status >= 500):
        return not answered(resp)
    return False


def send(client: httpx.Client, method: str, url: str, *, label: str, policy: RetryPolicy,
         idempotent: bool, answered=lambda resp: False, **kwargs) -> httpx.Response:
    """One request with the retry policy. ``answered(resp)`` tells a busy-looking status
    that carries a real answer (a JSON-RPC error body) apart from a busy server. The last
    attempt's response is returned whatever its status; the caller interprets it."""
    for attempt in range(policy.tries):
        last = attempt == policy.tries - 1
        try:
            with translate_errors(label, url):
                resp = client.request(method, url, **kwargs)
        except SourceUnavailable as exc:
            if last or (exc.maybe_sent and not idempotent):
                raise
            time.sleep(policy.delay(attempt))
            continue
        if last or not _should_retry(resp, idempotent, answered):
            return resp
        time.sleep(policy.delay(attempt, _retry_after(resp)))
    raise AssertionError("unreachable")


async def send_async(client: httpx.AsyncClient, method: str, url: str, *, label: str, policy: RetryPolicy,
                     idempotent: bool, answered=lambda resp: False, **kwargs) -> httpx.Response:
    """``send`` for httpx.AsyncClient (the same policy, awaited sleeps)."""
    for attempt in range(policy.tries):
        last = attempt == policy.tries - 1
        try:
            with translate_errors(label, url):
                resp = await client.request(method, url, **kwargs)
        except SourceUnavailable as exc:
            if last or (exc.maybe_sent and not idempotent):
                raise
            await asyncio.sleep(policy.delay(attempt))
            continue
        if last or not _should_retry(resp, idempotent, answered):
            return resp
        await asyncio.sleep(policy.delay(attempt, _retry_after(resp)))
    raise AssertionError("unreachable")


# --- JSON shape checks: a malformed body is a SourceError, never a KeyError or TypeError ---

def field(obj, key: str, kind, where: str):
    """``obj[key]``, which must be of ``kind`` (int excludes bool; Decimal counts as a number)."""
    if not isinstance(obj, dict):
        raise SourceError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise SourceError(f"{where}: missing {key!r}")
    return checked(obj[key], kind, f"{where}.{key}")


def checked(value, kind, where: str):
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        expected = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
        raise SourceError(f"{where}: expected {expected}, got {type(value).__name__}")
    return value


def hash_field(obj, key: str, where: str) -> bytes:
    """A display-order hex hash member, to wire order."""
    return display_hash(field(obj, key, str, where), f"{where}.{key}")


def display_hash(text, where: str) -> bytes:
    try:
        return from_display_hex(checked(text, str, where).strip())
    except ValueError:
        raise SourceError(f"{where}: not a 32-byte hex hash: {str(text)[:80]!r}") from None


def hex_bytes(text, where: str) -> bytes:
    try:
        return bytes.fromhex(checked(text, str, where).strip())
    except ValueError:
        raise SourceError(f"{where}: not hex: {str(text)[:80]!r}") from None


# --- what a reply's bytes prove: a reply that claims more is a SourceError ---

def checked_header(raw: bytes, block_hash: bytes) -> bytes:
    if len(raw) != HEADER_SIZE or sha256d(raw) != block_hash:
        raise SourceError(f"header returned for {to_display_hex(block_hash)} does not hash to it")
    return raw


def checked_block(raw: bytes, block_hash: bytes) -> bytes:
    if len(raw) <= HEADER_SIZE or sha256d(raw[:HEADER_SIZE]) != block_hash:
        raise SourceError(f"block returned for {to_display_hex(block_hash)} does not hash to it")
    return raw


def checked_tx(raw: bytes, txid: bytes) -> bytes:
    tx_with_id(raw, txid)
    return raw


def tx_with_id(raw: bytes, txid: bytes):
    """The parsed transaction (embit's), which must parse strictly and have ``txid``."""
    try:
        tx = parse_tx(raw)
    except MalformedInput:
        tx = None
    if tx is None or txid_of(tx) != txid:
        raise SourceError(f"transaction returned for {to_display_hex(txid)} does not parse to that txid")
    return tx


def linked(headers: list[bytes]) -> list[bytes]:
    """Headers read in several requests must still form one chain."""
    for prev, cur in zip(headers, headers[1:]):
        if cur[4:36] != sha256d(prev):
            raise SourceError("the chain changed while its headers were read; retry")
    return headers


def broadcast_txid(answer, raw_tx: bytes, where: str) -> bytes:
    """The txid a server answered a broadcast with, which must be the transaction's."""
    txid = display_hash(answer, where)
    if txid != txid_of(parse_tx(raw_tx)):
        raise SourceError(f"{where} answered with another txid")
    return txid
