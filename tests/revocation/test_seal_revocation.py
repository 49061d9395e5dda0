"""A single anchor revoked by spending its seal; verifiers with a source check it on every full
handshake (the source's word, mempool included), without one they cannot know."""
from __future__ import annotations

import functools
import json

import pytest
from tlslite.constants import AlertDescription

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.hashes import from_display_hex, to_display_hex
from milagro_tls.chain.errors import AnchorRevoked, SourceUnavailable
from milagro_tls.chain.revocation import check_not_revoked, seal_spender
from milagro_tls.chain.tx import parse_tx
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.cli import main
from milagro_tls.errors import IdentityError
from milagro_tls.handshake import ConnectionFailed, HandshakeComplete
from milagro_tls.handshake.errors import PeerNotAuthenticated, PeerRevoked
from milagro_tls.handshake.peer import VerifiedStapleCache
from milagro_tls.identity.anchor import SEAL_VOUT
from milagro_tls.identity.party import Party
from milagro_tls.identity.revoke import revocation_of, revoke_party

from helpers.handshake import config, connect


def _configs(world, *, check=True, source=None, cache=None):
    checker = functools.partial(check_not_revoked, source=source or world.source) if check else None
    client = config(world, identity=None, trust=world.trust(SERVER), revocation_check=checker,
                    staple_cache=cache)
    server = config(world, identity=SERVER, trust=world.trust())
    return client, server


def _handshake(world, **options):
    client, server = _configs(world, **options)
    _, _, client_events, _ = connect(client, server, server_hostname=SERVER)
    return client_events[-1]


SERVER = "server.example"


class _DeadSource:
    """Answers nothing: the source went away."""
    network = None

    def outspend_unverified(self, txid, vout):
        raise SourceUnavailable("connection refused", maybe_sent=False)


def test_revoking_the_seal_refuses_the_peer_on_the_next_full_handshake(own_world):
    world = own_world
    cache = VerifiedStapleCache()
    party = world.parties[SERVER]
    identity, _ = resolve_anchor(party.locator, party.certificate, world.source, world.headers())
    assert identity.seal == (party.anchor_txid, SEAL_VOUT)
    assert seal_spender(identity, world.source) is None
    assert check_not_revoked(identity, world.source) is True
    assert isinstance(_handshake(world, cache=cache), HandshakeComplete)
    assert cache.misses == 1

    revocation = revoke_party(world.home, SERVER, world.source)
    # In the mempool only: the source's word already counts it.
    assert revocation.txid in world.source.mempool_txids()
    spend = parse_tx(revocation.raw)
    assert (spend.vin[0].txid[::-1], spend.vin[0].vout) == identity.seal
    assert bytes(spend.vin[0].witness.items[1]) == party.key.public_key
    assert seal_spender(identity, world.source) == revocation.txid
    with pytest.raises(AnchorRevoked, match="is spent by .*the chain source's word, not SPV"):
        check_not_revoked(identity, world.source)

    # The staple verified before (a cache hit: no SPV again) is still checked for revocation.
    event = _handshake(world, cache=cache)
    assert isinstance(event, ConnectionFailed) and event.alert_sent
    assert isinstance(event.error, PeerRevoked)
    assert event.error.alert == AlertDescription.certificate_revoked
    assert cache.hits == 1
    # A fresh verifier (no cache) refuses it the same way, once mined too.
    world.source.mine(1)
    event = _handshake(world)
    assert isinstance(event.error, PeerRevoked) and "revoked" in str(event.error)

    # A verifier that does not ask a source (a thin client) cannot know: it still accepts.
    assert isinstance(_handshake(world, check=False), HandshakeComplete)

    # Idempotent: the recorded spend comes back, nothing new is built.
    assert revoke_party(world.home, SERVER, world.source) == revocation
    assert revocation_of(world.home, SERVER) == revocation


def test_source_that_cannot_answer_refuses_the_peer(own_world):
    event = _handshake(own_world, source=_DeadSource())
    assert isinstance(event, ConnectionFailed) and event.alert_sent
    assert type(event.error) is PeerNotAuthenticated
    assert "revocation status unknown" in str(event.error) and "SourceUnavailable" in str(event.error)
    assert event.error.alert == AlertDescription.bad_certificate


def test_an_unrevoked_peer_is_accepted_with_the_check_on(own_world):
    client, server = _configs(own_world)
    client = config(own_world, identity=None, trust=own_world.trust("other.example"),
                    revocation_check=client.revocation_check)
    server = config(own_world, identity="other.example", trust=own_world.trust())
    _, _, events, _ = connect(client, server, server_hostname="other.example")
    assert isinstance(events[-1], HandshakeComplete) and events[-1].peer.identity.name == "other.example"


def test_cli_revoke_needs_yes_and_prints_the_spend(capsys, tmp_path):
    chain, home = tmp_path / "chain", tmp_path / "home"
    spec = f"regtest://{chain}"
    assert main(["chain", "init", "--chain-dir", str(chain)]) == 0
    assert main(["identity", "create", "--home", str(home), "--chain", spec, "--role", "service",
                 "--name", "gone.example"]) == 0
    capsys.readouterr()
    assert main(["identity", "revoke", "gone.example", "--home", str(home), "--chain", spec]) == 2
    assert "cannot be undone" in capsys.readouterr().err
    assert not (home / "identities" / "gone.example" / "revoked.json").exists()
    assert main(["identity", "revoke", "gone.example", "--home", str(home), "--chain", spec, "--yes"]) == 0
    printed = json.loads(capsys.readouterr().out)
    party = Party.load(home, "gone.example")
    assert printed["seal"] == f"{to_display_hex(party.anchor_txid)}:{SEAL_VOUT}"
    with EmbeddedSource.open(chain) as source:
        assert source.outspend_unverified(party.anchor_txid, SEAL_VOUT) == from_display_hex(printed["revocation_txid"])


def test_a_seal_spent_elsewhere_is_not_spent_again(own_world):
    world = own_world
    party = world.parties["client.example"]
    # Someone else (another copy of the key) spent the seal: this home refuses to build a rival.
    revoke_party(world.home, "client.example", world.source)
    (world.home / "identities" / "client.example" / "revoked.json").unlink()
    with pytest.raises(IdentityError, match="already spent"):
        revoke_party(world.home, "client.example", world.source)
    assert party.locator is not None


def test_a_checker_whose_evidence_does_not_check_out_refuses_the_peer(own_world):
    """A checker raising a VerificationError (a stale revocation list, say) leaves the status
    unknown: the same fail-closed refusal, never an exception out of the handshake."""
    from milagro_tls.chain.revocation_list import RevocationListStale

    def stale(identity):
        raise RevocationListStale("list root 00.. is not the TBS's current revocation list")
    client = config(own_world, identity=None, trust=own_world.trust(SERVER), revocation_check=stale)
    server = config(own_world, identity=SERVER, trust=own_world.trust())
    _, _, events, _ = connect(client, server, server_hostname=SERVER)
    event = events[-1]
    assert isinstance(event, ConnectionFailed) and event.alert_sent
    assert type(event.error) is PeerNotAuthenticated
    assert "revocation status unknown: RevocationListStale" in str(event.error)
    assert event.error.alert == AlertDescription.bad_certificate
