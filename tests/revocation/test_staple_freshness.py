"""The staple's freshness bound: proof version 2 carries the stapler's tip (height, hash);
verifiers with max_staple_age refuse staples without one, older than that, or naming a block
off their best chain; the Context re-stamps its staple after each header sync."""
from __future__ import annotations

import dataclasses
import socket

import pytest
from tlslite.constants import AlertDescription

from milagro_tls.adapters.errors import MilagroSSLError
from milagro_tls.chain.errors import StapleTooOld, UnknownBlock
from milagro_tls.chain.proof import AnchorProof
from milagro_tls.chain.verify import recheck_verified, verify_anchor
from milagro_tls.errors import IdentityError, MalformedInput
from milagro_tls.handshake import ConnectionFailed, HandshakeComplete
from milagro_tls.handshake.errors import PeerNotAuthenticated
from milagro_tls.handshake.peer import VerifiedStapleCache
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party
from milagro_tls.identity.revoke import revoke_party

from helpers.contexts import echo_server, make_context
from helpers.handshake import config, connect, replace
from helpers.reorg import reorg_out

SERVER = "server.example"


def _handshake(world, identity, *, max_age, cache=None):
    client = config(world, identity=None, trust=world.trust(SERVER), max_staple_age=max_age, staple_cache=cache)
    server = replace(config(world, identity=None, trust=world.trust()), identity=identity)
    _, _, events, _ = connect(client, server, server_hostname=SERVER)
    return events[-1]


def test_proof_encoding_v1_unchanged_and_v2_adds_36_bytes(own_world):
    identity = own_world.identities[SERVER]
    plain = identity.proof
    assert plain.fresh is None and identity.proof_bytes[0] == 1
    assert plain.encode() == identity.proof_bytes
    tip = own_world.source.tip()
    fresh = dataclasses.replace(plain, fresh=(tip.height, tip.block_hash))
    raw = fresh.encode()
    assert raw[0] == 2 and len(raw) == len(identity.proof_bytes) + 36
    assert raw[-36:] == tip.height.to_bytes(4, "big") + tip.block_hash
    assert AnchorProof.decode(raw) == fresh and AnchorProof.decode(identity.proof_bytes) == plain
    with pytest.raises(MalformedInput):
        AnchorProof.decode(raw[:-1])
    with pytest.raises(MalformedInput):
        AnchorProof.decode(b"\x01" + raw[1:])            # v1 with trailing bytes
    with pytest.raises(ValueError):
        dataclasses.replace(plain, fresh=(tip.height, b"\x00" * 31)).encode()


def test_verifier_bounds_the_staple_age(own_world):
    world = own_world
    headers = world.headers()
    party = world.parties[SERVER]
    plain = world.identities[SERVER]
    stamped = plain.freshened(world.source)
    tip_height = world.source.tip().height
    assert stamped.proof.fresh == (tip_height, world.source.tip().block_hash)

    # Unconfigured: a staple with or without a bound verifies, the bound is recorded.
    assert verify_anchor(party.locator, party.certificate, plain.proof, headers).fresh is None
    identity = verify_anchor(party.locator, party.certificate, stamped.proof, headers)
    assert identity.fresh == stamped.proof.fresh
    with pytest.raises(StapleTooOld, match="no freshness bound"):
        verify_anchor(party.locator, party.certificate, plain.proof, headers, max_staple_age=3)
    assert verify_anchor(party.locator, party.certificate, stamped.proof, headers, max_staple_age=0).fresh

    world.source.mine(3)
    headers.sync_from(world.source)
    assert recheck_verified(identity, headers, max_staple_age=3) is not None
    world.source.mine(1)
    headers.sync_from(world.source)
    with pytest.raises(StapleTooOld, match="made 4 blocks ago .* at most 3 accepted"):
        verify_anchor(party.locator, party.certificate, stamped.proof, headers, max_staple_age=3)
    with pytest.raises(StapleTooOld, match="made 4 blocks ago"):
        recheck_verified(identity, headers, max_staple_age=3)

    # A bound naming a block we do not have (not synced yet) asks for a retry; a false height,
    # or a block a reorg left, is refused.
    ahead = world.source.mine(1)[0]
    future = dataclasses.replace(stamped.proof, fresh=(tip_height + 5, ahead))
    with pytest.raises(UnknownBlock):
        verify_anchor(party.locator, party.certificate, future, headers, max_staple_age=10)
    headers.sync_from(world.source)
    lying = dataclasses.replace(stamped.proof, fresh=(tip_height + 3, ahead))
    with pytest.raises(StapleTooOld, match="another height"):
        verify_anchor(party.locator, party.certificate, lying, headers, max_staple_age=10)
    restamped = plain.freshened(world.source)
    reorg_out(world.source, restamped.proof.fresh[1], extra=1)
    headers.sync_from(world.source)
    with pytest.raises(StapleTooOld, match="not on the best chain"):
        verify_anchor(party.locator, party.certificate, restamped.proof, headers, max_staple_age=10)


def test_handshake_refuses_stale_staples_cache_hit_included(own_world):
    world = own_world
    plain = world.identities[SERVER]
    event = _handshake(world, plain, max_age=2)
    assert isinstance(event, ConnectionFailed) and type(event.error) is PeerNotAuthenticated
    assert "StapleTooOld" in str(event.error) and event.error.alert == AlertDescription.bad_certificate
    assert isinstance(_handshake(world, plain, max_age=None), HandshakeComplete)

    cache = VerifiedStapleCache()
    stamped = plain.freshened(world.source)
    assert isinstance(_handshake(world, stamped, max_age=2, cache=cache), HandshakeComplete)
    world.source.mine(3)
    # The same staple bytes: a cache hit, whose recheck ages the bound with the tip.
    event = _handshake(world, stamped, max_age=2, cache=cache)
    assert cache.hits == 1 and isinstance(event, ConnectionFailed) and "made 3 blocks ago" in str(event.error)
    assert isinstance(_handshake(world, stamped.freshened(world.source), max_age=2, cache=cache), HandshakeComplete)


def test_context_restamps_after_each_sync_and_a_revoked_identity_is_not_stamped(own_world):
    world = own_world
    client = make_context(world, trust=(SERVER,), max_staple_age=2)
    stale = make_context(world, identity=SERVER)
    fresh = make_context(world, identity=SERVER, fresh_staple=True)
    with client, stale, fresh, echo_server(stale) as (stale_port, _), echo_server(fresh) as (fresh_port, _):
        assert fresh.identity.proof.fresh[0] == world.source.tip().height
        world.source.mine(5)
        for context in (client, fresh, stale):
            context.sync.sync_once()
        assert fresh.identity.proof.fresh[0] == world.source.tip().height
        assert fresh.config.identity is fresh.identity
        with client.wrap_socket(socket.create_connection(("127.0.0.1", fresh_port)), server_hostname=SERVER) as tls:
            tls.sendall(b"ping")
            assert tls.recv(4) == b"ping"
        with pytest.raises(MilagroSSLError) as refused:
            client.wrap_socket(socket.create_connection(("127.0.0.1", stale_port)), server_hostname=SERVER)
        assert refused.value.alert == AlertDescription.bad_certificate

    party = Party.create(world.home, world.source, role="service", name="doomed.example")
    identity = LocalIdentity.from_party(party, world.source)
    revoke_party(world.home, "doomed.example", world.source)
    with pytest.raises(IdentityError, match="revoked"):
        identity.freshened(world.source)
