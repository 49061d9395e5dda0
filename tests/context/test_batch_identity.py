"""A batch-anchored PAT loaded by name: Context(identity="name", home=...) finds it in its home
(LocalIdentity.load) and completes a handshake, its staple the whole batch transaction."""
from __future__ import annotations

import json
import socket

import pytest

from milagro_tls.context import Context
from milagro_tls.errors import IdentityError
from milagro_tls.trust import TrustEntry, TrustStore

from batch.support import Batcher
from helpers.contexts import echo_server


@pytest.fixture(scope="module")
def pat(world, tmp_path_factory):
    batcher = Batcher.create(world.source, tmp_path_factory.mktemp("context-batch"))
    pats = batcher.new_pats(3)
    batcher.run(pats, absent={2})
    pats[0].confirm(world.source)
    return pats[0], batcher.home / "pats"


def _peer_reporter(conn) -> None:
    """Answers the first request with what the server verified about its client."""
    conn.recv(100)
    peer = conn.getpeercert()
    conn.sendall(json.dumps({"name": peer["name"], "locator": peer["locator"],
                             "authenticated": peer["authenticated"]}).encode())


@pytest.mark.parametrize("suites", ["yak", "ecdh"])
def test_a_batch_pat_by_name_completes_a_handshake_through_the_context(world, pat, suites):
    batch_pat, home = pat
    server = Context(identity=world.identities["echo.example"], chain=world.source, headers=":memory:",
                     trust=TrustStore([TrustEntry.from_json(batch_pat.trust_entry())]))
    client = Context(identity=batch_pat.name, home=home, chain=world.source, headers=":memory:",
                     trust=world.trust("echo.example"), suites=suites)
    assert client.identity.locator == batch_pat.locator
    assert client.identity.locator.kind.label == "taproot-batch"
    with server, client, echo_server(server, handler=_peer_reporter) as (port, errors):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with client.wrap_socket(raw, server_hostname="echo.example") as tls:
            assert tls.cipher()[0].startswith("YAK-BTC" if suites == "yak" else "ECDH-BTC")
            tls.sendall(b"who am I?")
            seen = json.loads(tls.recv(65536))
            assert tls.getpeercert()["name"] == "echo.example"
    assert errors == []
    assert seen == {"name": batch_pat.name, "locator": batch_pat.locator.to_json(), "authenticated": True}


def test_an_unknown_name_in_the_home_is_refused(world, pat):
    _, home = pat
    with pytest.raises(IdentityError):
        Context(identity="nobody", home=home, chain=world.source, headers=":memory:")
