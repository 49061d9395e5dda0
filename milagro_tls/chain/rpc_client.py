"""RpcSource and AsyncRpcSource: the ChainSource interface over bitcoind's JSON-RPC
(our chain server, or bitcoind).

Layers, bottom up: ``transport.send`` (httpx, timeouts, retries with backoff),
``call(method, *params)`` / ``batch`` (generic JSON-RPC 1.0), ``rpc_parse`` (error
translation and pure parsers, tested on real Core bodies), and the ChainSource
methods, written once as sans-IO steps in ``rpc_steps``: the two classes here differ
only in how they carry a request (httpx.Client or httpx.AsyncClient), so a fix lands
in both.

Methods named ``milagro_*`` exist only on our chain server, not on bitcoind.
"""
from __future__ import annotations

from pathlib import Path

import httpx

from .hashes import from_display_hex
from .network import Network
from .rpc_steps import Batch, Call, RpcSteps
from .stepped import AsyncSteppedSource, SteppedSource
from .transport import RetryPolicy, send, send_async, timeouts


class RpcSource(RpcSteps, SteppedSource):
    """A ChainSource over JSON-RPC. ``auth`` is (user, password); ``cookie_file`` is re-read on 401.
    ``transport`` replaces the network (tests feed recorded replies through httpx.MockTransport)."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, *, cookie_file: str | Path | None = None,
                 timeout: float = 30.0, network: Network | None = None, retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._setup(url, auth, cookie_file, network, retry)
        self._http = httpx.Client(timeout=timeouts(timeout), transport=transport)

    def close(self) -> None:
        self._http.close()

    def _execute(self, request: Call | Batch):
        if isinstance(request, Batch) and not request.calls:
            return []            # JSON-RPC forbids an empty batch; there is nothing to ask
        body, ids, idempotent, timeout = self._payload(request)
        for attempt in (0, 1):
            resp = send(self._http, "POST", self.url, **self._post_args(body, idempotent, timeout))
            if not self._refused(resp, attempt):
                return self._result(request, ids, self._body(resp))
        raise AssertionError("unreachable")

    def call(self, method: str, *params):
        """Call one RPC method; returns its result or raises the translated error."""
        return self._execute(Call(method, params))

    def batch(self, calls: list[tuple[str, tuple]]) -> list:
        """Several calls in one round trip; results in order; the first error is raised."""
        return self._execute(Batch(tuple(Call(m, tuple(p)) for m, p in calls)))

    # --- regtest helpers (milagro_* exist only on our chain server) ---

    def mine(self, n: int = 1, script_pubkey: bytes | None = None) -> list[bytes]:
        params = (n,) if script_pubkey is None else (n, script_pubkey.hex())
        return [from_display_hex(h) for h in self.call("milagro_mine", *params)]

    def faucet(self, script_pubkey: bytes, amount: int) -> bytes:
        return from_display_hex(self.call("milagro_faucet", script_pubkey.hex(), amount))

    def mempool_txids(self) -> list[bytes]:
        return [from_display_hex(t) for t in self.call("getrawmempool")]


class AsyncRpcSource(RpcSteps, AsyncSteppedSource):
    """RpcSource for asyncio (httpx.AsyncClient): the same steps, the same checks, awaited."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, *, cookie_file: str | Path | None = None,
                 timeout: float = 30.0, network: Network | None = None, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._setup(url, auth, cookie_file, network, retry)
        self._http = httpx.AsyncClient(timeout=timeouts(timeout), transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _execute(self, request: Call | Batch):
        if isinstance(request, Batch) and not request.calls:
            return []
        body, ids, idempotent, timeout = self._payload(request)
        for attempt in (0, 1):
            resp = await send_async(self._http, "POST", self.url, **self._post_args(body, idempotent, timeout))
            if not self._refused(resp, attempt):
                return self._result(request, ids, self._body(resp))
        raise AssertionError("unreachable")

    async def call(self, method: str, *params):
        return await self._execute(Call(method, params))

    async def batch(self, calls: list[tuple[str, tuple]]) -> list:
        return await self._execute(Batch(tuple(Call(m, tuple(p)) for m, p in calls)))
