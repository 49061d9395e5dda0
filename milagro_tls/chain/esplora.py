"""EsploraSource and AsyncEsploraSource: the ChainSource interface over Esplora's REST API
(Blockstream's electrs, mempool.space, our chain server).

The methods are written once, as sans-IO steps in ``esplora_steps``; the classes here
carry the requests (httpx.Client, or httpx.AsyncClient, which also runs a ``Parallel``
step's requests concurrently) with the timeouts and retry policy of ``transport``.
Everything Esplora says that its bytes can prove is checked; the rest (unspent
outputs, fee estimates) is the source's word, and the method names say so.

The network: Esplora has no call that names it, so the genesis block at
/block-height/0 does (and a network given to the constructor is checked against it).
"""
from __future__ import annotations

import asyncio

import httpx

from .esplora_steps import BYTES, EsploraSteps, Get, Parallel, Post
from .network import Network
from .stepped import AsyncSteppedSource, SteppedSource
from .transport import RetryPolicy, send, send_async, timeouts

LABEL = "Esplora server"
#: Requests a Parallel step has in flight at once: enough to hide latency, few enough
#: for public servers' rate limits.
CONCURRENCY = 6


def _request_args(request: Get | Post) -> dict:
    if isinstance(request, Post):
        return {"content": request.body.encode(), "headers": {"Content-Type": "text/plain"}}
    return {"headers": {"Accept": "application/octet-stream" if request.kind == BYTES else "*/*"}}


class EsploraSource(EsploraSteps, SteppedSource):
    """A ChainSource over Esplora at ``base_url`` (e.g. ``https://blockstream.info/testnet/api``).
    ``transport`` replaces the network (tests feed recorded bodies through httpx.MockTransport)."""

    def __init__(self, base_url: str, *, network: Network | None = None, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self._setup(base_url, network, retry)
        self._http = httpx.Client(timeout=timeouts(timeout), transport=transport)

    def close(self) -> None:
        self._http.close()

    def _execute(self, request: Get | Post | Parallel):
        if isinstance(request, Parallel):
            return [self._execute(r) for r in request.requests]
        url = self.base_url + request.path
        resp = send(self._http, "POST" if isinstance(request, Post) else "GET", url, label=LABEL,
                    policy=self.retry, idempotent=True, **_request_args(request))
        return self._answer(request, resp.status_code, resp.content, resp.text)


class AsyncEsploraSource(EsploraSteps, AsyncSteppedSource):
    """EsploraSource for asyncio: the same steps and checks, awaited; a Parallel step's
    requests (header pages) run concurrently, at most CONCURRENCY at once."""

    def __init__(self, base_url: str, *, network: Network | None = None, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._setup(base_url, network, retry)
        self._http = httpx.AsyncClient(timeout=timeouts(timeout), transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _execute(self, request: Get | Post | Parallel):
        if isinstance(request, Parallel):
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(r):
                async with gate:
                    return await self._execute(r)
            # Every request finishes before the first failure is raised: none is left running.
            results = await asyncio.gather(*(one(r) for r in request.requests), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            return results
        url = self.base_url + request.path
        resp = await send_async(self._http, "POST" if isinstance(request, Post) else "GET", url, label=LABEL,
                                policy=self.retry, idempotent=True, **_request_args(request))
        return self._answer(request, resp.status_code, resp.content, resp.text)
