"""The header chain is the only authority: sources that lag or sit on a weaker branch are not used,
and a reorg under a connected verifier is followed both ways."""
from __future__ import annotations

import pytest

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import AnchorTooShallow, AnchorUnconfirmed, SourceBehind
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.network import Network
from milagro_tls.chain.verify import resolve_anchor
from helpers.sources import DelegatingSource, LaggingSource
from milagro_tls.identity.party import Party


@pytest.fixture
def anchored(tmp_path):
    source = EmbeddedSource.open(tmp_path / "chain")
    source.mine(110)
    party = Party.create(tmp_path / "home", source, role="service", name="sync.example")
    yield source, party
    source.close()


def test_source_behind_our_header_chain_is_not_used_for_proofs(anchored):
    source, party = anchored
    headers = HeaderChain(":memory:", Network.REGTEST)
    resolve_anchor(party.locator, party.certificate, source, headers)      # our chain is now at the tip
    with pytest.raises(SourceBehind, match="behind"):
        resolve_anchor(party.locator, party.certificate, LaggingSource(source, hidden=2), headers)


def test_source_on_a_branch_with_less_work_is_not_used_for_proofs(anchored, tmp_path):
    source, party = anchored
    headers = HeaderChain(":memory:", Network.REGTEST)
    resolve_anchor(party.locator, party.certificate, source, headers)
    with EmbeddedSource.open(tmp_path / "weaker") as weaker:   # same genesis, fewer blocks, other branch
        weaker.mine(20)
        with pytest.raises(SourceBehind, match="not on our best header chain"):
            resolve_anchor(party.locator, party.certificate, weaker, headers)
    assert headers.tip()[1] == source.tip().block_hash          # the weaker branch did not move our tip


def test_reorg_under_a_connected_verifier_refuses_then_accepts_when_deep_again(tmp_path):
    with EmbeddedSource.open(tmp_path / "chain") as source:
        source.mine(110)
        party = Party.create(tmp_path / "home", source, role="service", name="reorg.example", confirm_blocks=6)
        headers = HeaderChain(":memory:", Network.REGTEST)
        assert resolve_anchor(party.locator, party.certificate, source, headers)[0].confirmations == 6

        node = source.node
        parent = BlockHeader.parse(node.header_by_hash(party.locator.block_hash)).prev_hash
        for _ in range(7):          # a heavier branch that leaves the anchor out
            raw = node.build_block([], parent=parent)
            node.submit_block(raw)
            parent = Block.parse(raw).hash
        with pytest.raises(AnchorUnconfirmed):
            resolve_anchor(party.locator, party.certificate, source, headers)

        source.mine(1)              # the anchor returns from the mempool into a new block
        party.confirm(source)
        with pytest.raises(AnchorTooShallow):
            resolve_anchor(party.locator, party.certificate, source, headers)
        source.mine(5)
        identity, _ = resolve_anchor(party.locator, party.certificate, source, headers)
        assert identity.confirmations == 6
        assert identity.nonce_point == party.nonce_key().public_key.format()



class RelabelledSource(DelegatingSource):
    """The embedded regtest chain presented as another network, standing in for a signet
    source (no signet is reachable here). Only the label changes; the data is real."""

    def __init__(self, inner: EmbeddedSource, network: Network) -> None:
        super().__init__(inner)
        self.network = network


class RelabelledHeaders:
    """A verified regtest header chain answering as the signet one would."""

    def __init__(self, inner: HeaderChain, network: Network) -> None:
        self.inner, self.network = inner, network

    def tip(self):
        return self.inner.tip()

    def height_of(self, block_hash):
        return self.inner.height_of(block_hash)

    def header_by_hash(self, block_hash):
        return self.inner.header_by_hash(block_hash)


def test_every_signet_verification_carries_the_trusted_source_warning(tmp_path, caplog):
    from milagro_tls.chain.proof import fetch_anchor_proof
    from milagro_tls.chain.verify import SIGNET_WARNING, verify_anchor
    from milagro_tls.identity.wallet import AnchoringWallet

    with EmbeddedSource.open(tmp_path / "chain") as embedded:
        embedded.mine(110)
        signet = RelabelledSource(embedded, Network.SIGNET)
        embedded.faucet(AnchoringWallet(tmp_path / "home", signet).script_pubkey, 100_000)
        embedded.mine(1)
        party = Party.create(tmp_path / "home", signet, role="service", name="signet.example")
        assert party.locator is None and party.certificate.network == "signet"   # not regtest: not mined for us
        embedded.mine(6)
        locator = party.confirm(signet)
        assert locator.network == Network.SIGNET

        headers = HeaderChain(":memory:", Network.REGTEST)
        headers.sync_from(embedded)
        proof = fetch_anchor_proof(embedded, locator.txid, locator.block_hash, headers.height_of(locator.block_hash))
        with caplog.at_level("WARNING", logger="milagro_tls.chain.verify"):
            identity = verify_anchor(locator, party.certificate, proof, RelabelledHeaders(headers, Network.SIGNET))
        assert identity.warnings == (SIGNET_WARNING,)
        assert any(SIGNET_WARNING in record.getMessage() for record in caplog.records)
