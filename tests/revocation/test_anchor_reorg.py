"""Reorgs on the embedded chain: a peer's anchor reorged out is refused (staple-cache hit or
not, and through resolve_anchor); re-mined it is refused while below the depth and accepted again
once deep enough, under the same trust-store pin."""
from __future__ import annotations

import pytest

from milagro_tls.chain.block import Block
from tlslite.constants import AlertDescription

from milagro_tls.chain.errors import AnchorTooShallow, AnchorUnconfirmed
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.verify import recheck_verified, resolve_anchor
from milagro_tls.handshake import ConnectionFailed, HandshakeComplete
from milagro_tls.handshake.errors import AnchorNotYetVerifiable, PeerNotAuthenticated
from milagro_tls.handshake.peer import VerifiedStapleCache
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party
from milagro_tls.trust import TrustEntry, TrustStore

from helpers.handshake import config, connect, replace
from helpers.reorg import reorg_out

DEPTH = 6
NAME = "reorged.example"


def _handshake(world, server_identity, trust, headers, cache):
    client = config(world, identity=None, trust=trust, headers=headers, staple_cache=cache,
                    min_confirmations=DEPTH)
    server = replace(config(world, identity=None, trust=TrustStore()), identity=server_identity)
    _, _, events, _ = connect(client, server, server_hostname=NAME)
    return events[-1]


def test_anchor_reorged_out_is_refused_and_accepted_again_once_remined_deep_enough(own_world):
    world = own_world
    source = world.source
    party = Party.create(world.home, source, role="service", name=NAME, confirm_blocks=DEPTH)
    trust = TrustStore([TrustEntry.from_json(party.trust_entry())])
    old_block = party.locator.block_hash
    old_identity = LocalIdentity.from_party(party, source)
    headers = HeaderChain(":memory:", source.network)
    headers.sync_from(source)
    cache = VerifiedStapleCache()

    assert isinstance(_handshake(world, old_identity, trust, headers, cache), HandshakeComplete)
    verified, _ = resolve_anchor(party.locator, party.certificate, source, headers, min_confirmations=DEPTH)
    assert verified.confirmations == DEPTH

    branch = reorg_out(source, old_block, extra=1)
    assert party.anchor_txid in source.mempool_txids()          # back in the mempool
    headers.sync_from(source)
    assert headers.height_of(old_block) is None and headers.tip()[1] == branch[-1]

    # The staple verified before: the cache hit's recheck sees the block left the best chain.
    with pytest.raises(AnchorUnconfirmed, match="no longer on the best chain"):
        recheck_verified(verified, headers, min_confirmations=DEPTH)
    event = _handshake(world, old_identity, trust, headers, cache)
    assert isinstance(event, ConnectionFailed) and event.alert_sent
    assert type(event.error) is PeerNotAuthenticated and "AnchorUnconfirmed" in str(event.error)
    assert event.error.alert == AlertDescription.bad_certificate
    assert cache.hits == 1
    with pytest.raises(AnchorUnconfirmed):
        resolve_anchor(party.locator, party.certificate, source, headers, min_confirmations=DEPTH)

    # Re-mined one block deep: the owner records the new block, the staple names it, and the
    # verifier refuses it as not yet deep enough (certificate_unknown: retry later).
    (remined,) = source.mine(1)
    locator = party.confirm(source)
    assert locator.block_hash == remined != old_block and locator.txid == party.anchor_txid
    new_identity = LocalIdentity.from_party(party, source)
    headers.sync_from(source)
    event = _handshake(world, new_identity, trust, headers, cache)
    assert isinstance(event.error, AnchorNotYetVerifiable)
    assert event.error.alert == AlertDescription.certificate_unknown
    with pytest.raises(AnchorTooShallow) as shallow:
        resolve_anchor(locator, party.certificate, source, headers, min_confirmations=DEPTH)
    assert (shallow.value.confirmations, shallow.value.required) == (1, DEPTH)

    for depth in range(2, DEPTH):
        source.mine(1)
        headers.sync_from(source)
        assert isinstance(_handshake(world, new_identity, trust, headers, cache).error, AnchorNotYetVerifiable)
    source.mine(1)
    headers.sync_from(source)
    event = _handshake(world, new_identity, trust, headers, cache)
    assert isinstance(event, HandshakeComplete) and event.peer.identity.confirmations == DEPTH
    assert event.peer.identity.block_hash == remined
    # The old staple (the orphaned block) stays refused.
    assert isinstance(_handshake(world, old_identity, trust, headers, cache).error, PeerNotAuthenticated)


def test_reorg_that_keeps_the_anchor_in_the_new_branch(own_world):
    """A reorg whose branch carries the anchor too: the staple names the old block and is
    refused; the owner's confirm finds the new block at once, deep as the branch makes it."""
    world = own_world
    source = world.source
    party = Party.create(world.home, source, role="service", name="moved.example", confirm_blocks=DEPTH)
    anchor_block = party.locator.block_hash
    block = Block.parse(source.block(anchor_block))
    mined_txs = block.raw_txs[1:]                               # funding and anchor (and any other)
    headers = HeaderChain(":memory:", source.network)
    headers.sync_from(source)
    reorg_out(source, anchor_block, extra=1, txs=mined_txs)
    assert party.anchor_txid not in source.mempool_txids()
    headers.sync_from(source)
    with pytest.raises(AnchorUnconfirmed):
        resolve_anchor(party.locator, party.certificate, source, headers, min_confirmations=1)
    locator = party.confirm(source)
    assert locator.block_hash != anchor_block
    identity, _ = resolve_anchor(locator, party.certificate, source, headers, min_confirmations=DEPTH)
    assert identity.confirmations == DEPTH + 1
