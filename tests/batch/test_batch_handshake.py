"""Both suites (all six code points) with Schnorr-anchored PATs: against the ECDSA-anchored
service in either role, and between two batch-anchored PATs; a PAT whose slot confirmed empty is
refused by the peer's verifier."""
from __future__ import annotations

import coincurve
import pytest
from tlslite.constants import AlertDescription

from milagro_tls.chain.proof import fetch_anchor_proof
from milagro_tls.ciphersuites.registry import SUITES
from milagro_tls.handshake import ApplicationData, ConnectionFailed, HandshakeComplete, HandshakeConfig
from milagro_tls.handshake.errors import PeerNotAuthenticated
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.locator import Locator
from milagro_tls.trust import TrustEntry, TrustStore

from helpers.handshake import connect, pump

from .support import Batcher

SUITE_IDS = [s.name for s in SUITES.values()]


@pytest.fixture(scope="module")
def pats(world, tmp_path_factory):
    """Three batch-anchored PATs (one batch), and a fourth whose signature was stripped."""
    batcher = Batcher.create(world.source, tmp_path_factory.mktemp("handshake-batch"))
    pats = batcher.new_pats(4)
    batch, _ = batcher.run(pats, strip={3})
    identities = {}
    for pat in pats[:3]:
        pat.confirm(world.source)
        identities[pat.name] = (pat, LocalIdentity.from_batch_pat(pat, world.source))
    outcome = batcher.assembler.settle(batch, world.source)
    stripped = pats[3]
    locator = Locator.taproot_batch(network=world.source.network, txid=batch.txid, input_index=0,
                                    block_hash=outcome.block_hash, position=3, proof=batch.tree.inclusion_proof(3))
    proof = fetch_anchor_proof(world.source, batch.txid, outcome.block_hash, outcome.height)
    # What a PAT that believed itself anchored would present; its k is unknowable, any key will do.
    identities["stripped"] = (stripped, LocalIdentity.create(stripped.certificate, locator, proof, coincurve.PrivateKey()))
    return identities


def _side(world, pats, name):
    """(LocalIdentity, TrustEntry) for a world party or a batch PAT."""
    if name in pats:
        pat, local = pats[name]
        doc = {"name": pat.certificate.name, "locator": local.locator.to_json(), "roles": ["pat"]}
        return local, TrustEntry.from_json(doc)
    return world.identities[name], world.entry(name)


def _handshake(world, pats, client_name, server_name, suite):
    client_local, client_entry = _side(world, pats, client_name)
    server_local, server_entry = _side(world, pats, server_name)
    client = HandshakeConfig(headers=world.headers(), trust=TrustStore([server_entry]), identity=client_local,
                             suites=(suite,))
    server = HandshakeConfig(headers=world.headers(), trust=TrustStore([client_entry]), identity=server_local)
    return connect(client, server, server_hostname=server_entry.name), client_local, server_local


@pytest.mark.parametrize("suite", SUITES.values(), ids=SUITE_IDS)
@pytest.mark.parametrize("pair", [("pat1", "echo.example"), ("alice", "pat2"), ("pat1", "pat3")],
                         ids=["batch-client-ecdsa-server", "ecdsa-client-batch-server", "two-batch-pats"])
def test_schnorr_anchored_pats_complete_both_suites(world, pats, pair, suite):
    client_name, server_name = pair
    (client, server, client_events, server_events), client_local, server_local = _handshake(
        world, pats, client_name, server_name, suite)
    assert [type(e) for e in client_events] == [HandshakeComplete] == [type(e) for e in server_events]
    assert client_events[0].suite is suite and client.master_secret == server.master_secret
    # Each side authenticated the other from the staple: the point is lift_x(sig[0:32]) for a PAT.
    assert client_events[0].peer.identity.nonce_point == server_local.nonce_point
    assert server_events[0].peer.identity.nonce_point == client_local.nonce_point
    assert server_events[0].peer.name == client_name and client_events[0].peer.name == server_name
    for name, peer in ((client_name, server_events[0].peer), (server_name, client_events[0].peer)):
        if name in pats:
            assert peer.identity.locator.kind.label == "taproot-batch" and peer.identity.seal is None
            assert peer.identity.nonce_point[0] == 0x02            # BIP340: even y, no ambiguity
    client.send_data(b"ping")
    server.send_data(b"pong")
    client_events, server_events = pump(client, server)
    assert server_events == [ApplicationData(b"ping")] and client_events == [ApplicationData(b"pong")]


ONE_PER_FAMILY = {s.key_exchange: s for s in SUITES.values()}


@pytest.mark.parametrize("suite", ONE_PER_FAMILY.values(), ids=[s.name for s in ONE_PER_FAMILY.values()])
def test_a_stripped_pat_is_refused(world, pats, suite):
    (client, server, client_events, server_events), _, _ = _handshake(world, pats, "stripped", "echo.example", suite)
    failure = server_events[-1]
    assert isinstance(failure, ConnectionFailed) and failure.alert_sent
    assert isinstance(failure.error, PeerNotAuthenticated) and "BatchSlotEmpty" in str(failure.error)
    assert failure.error.alert == AlertDescription.bad_certificate
    assert isinstance(client_events[-1], ConnectionFailed) and not client_events[-1].alert_sent
