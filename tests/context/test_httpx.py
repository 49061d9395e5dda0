"""httpx with ``verify=ctx``, unmodified: the sync client (httpcore calls ``ctx.wrap_socket``)
and the async client (anyio's TLSStream calls ``ctx.wrap_bio``, in a worker thread because the
Context is not the stdlib class, and passes ``server_hostname`` as IDNA bytes).
"""
from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest

from milagro_tls.adapters.errors import MilagroPeerVerificationError
from milagro_tls.adapters.sslobject import MilagroSSLObject
from milagro_tls.adapters.sslsocket import MilagroSocket
from milagro_tls.context import Context
from milagro_tls.trust import TrustStore

from helpers.contexts import echo_server, make_context
from helpers.https import SUITE_PREFIX, assert_client_view, assert_server_view, client_context, https_server, serving


@pytest.fixture(scope="module")
def server_context(world):
    context = make_context(world, identity="echo.example", trust=("alice",))
    yield context
    context.close()


def client_view(ssl_end) -> dict:
    peer = ssl_end.getpeercert()
    return {"cipher": list(ssl_end.cipher()), "version": ssl_end.version(),
            "peer": {"name": peer["name"], "locator": peer["locator"]}}


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_sync_client_with_verify_context(world, server_context, suites):
    with client_context(world, suites) as context, serving(https_server(server_context)) as port:
        # trust_env=False: a proxy from the environment must not take loopback traffic elsewhere.
        with httpx.Client(verify=context, trust_env=False, timeout=5) as client:
            views = []
            for path in ("/first", "/second"):            # the second request reuses the connection
                with client.stream("GET", f"https://localhost:{port}{path}") as response:
                    sock = response.extensions["network_stream"].get_extra_info("socket")
                    assert isinstance(sock, MilagroSocket)
                    views.append(client_view(sock))
                    response.read()
                assert response.status_code == 200 and response.json()["path"] == path
                server_view = response.json()
    assert views[0] == views[1]
    assert_client_view(views[0], world, suites)
    assert_server_view(server_view, world, suites)


@pytest.mark.parametrize("suites", ["ecdh", "yak"])
def test_async_client_with_verify_context(world, server_context, suites):
    async def main(port, context):
        async with httpx.AsyncClient(verify=context, trust_env=False, timeout=5) as client:
            async with client.stream("GET", f"https://localhost:{port}/async") as response:
                ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
                assert isinstance(ssl_object, MilagroSSLObject)
                view = client_view(ssl_object)
                await response.aread()
            return view, response

    with client_context(world, suites) as context, serving(https_server(server_context)) as port:
        view, response = asyncio.run(asyncio.wait_for(main(port, context), 10))
    assert response.status_code == 200 and response.json()["path"] == "/async"
    assert view["cipher"][0].startswith(SUITE_PREFIX[suites])
    assert_client_view(view, world, suites)
    assert_server_view(response.json(), world, suites)


def test_server_hostname_as_idna_bytes_is_accepted_as_ssl_accepts_it(world):
    """anyio hands wrap_bio the host name as bytes; ssl.SSLContext takes str or bytes alike."""
    with make_context(world, trust=("echo.example",)) as context:
        ssl_object = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=b"echo.example")
        assert ssl_object.server_hostname == "echo.example"
        assert ssl_object.connection.server_hostname == "echo.example"


def test_async_client_refusing_a_server_delivers_the_alert_and_raises_the_reason(world, server_context):
    """anyio asks the SSLObject again at EOF (unlike asyncio's SSL transport), so the async
    client both sends its alert and raises the verification error itself."""
    stranger = Context(trust=TrustStore([world.entry("idp.example", as_name="localhost")]), chain=world.source,
                       headers=":memory:")            # "localhost" is pinned, to another anchor

    async def main(port):
        async with httpx.AsyncClient(verify=stranger, trust_env=False, timeout=5) as client:
            await client.get(f"https://localhost:{port}/")

    with stranger, echo_server(server_context) as (port, server_errors):
        with pytest.raises(httpx.ConnectError) as refused:
            asyncio.run(asyncio.wait_for(main(port), 10))
    cause = refused.value.__cause__
    while cause is not None and not isinstance(cause, MilagroPeerVerificationError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None and cause.alert == 42 and cause.alert_sent
    assert [(e.alert, e.alert_sent) for e in server_errors] == [(42, False)]
