"""Creating an identity survives a crash at any point: nothing is lost, nothing is sent twice,
and no coins ever reach an identity key whose anchor was not written first."""
from __future__ import annotations

import json

import pytest

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.identity.party import AnchorNotMined, Party
from milagro_tls.identity.wallet import AnchoringWallet


class Crash(Exception):
    """Stands in for the process dying at this point."""


@pytest.fixture
def source(tmp_path):
    with EmbeddedSource.open(tmp_path / "chain") as source:
        source.mine(110)
        yield source


def _recorded_labels(home) -> list[str]:
    path = home / "wallet.json"
    return [entry["label"] for entry in json.loads(path.read_text())["transactions"]] if path.exists() else []


def test_crash_before_the_anchor_is_written_leaves_nothing_sent_and_create_starts_over(tmp_path, source,
                                                                                       monkeypatch):
    home = tmp_path / "home"
    with monkeypatch.context() as patch:
        def crash(self):
            raise Crash()
        patch.setattr(Party, "_save_state", crash)
        with pytest.raises(Crash):
            Party.create(home, source, role="service", name="crash.example")
    assert not (home / "identities" / "crash.example" / "anchor.json").exists()
    assert source.node.mempool_txids() == []                       # nothing was broadcast
    assert not any("crash.example" in label for label in _recorded_labels(home))
    party = Party.create(home, source, role="service", name="crash.example")   # starts over
    assert party.locator is not None


def test_crash_after_the_anchor_is_written_is_resumed_by_confirm(tmp_path, source, monkeypatch):
    home = tmp_path / "home"
    with monkeypatch.context() as patch:
        def crash(self, built, spent_value, label):
            raise Crash()
        patch.setattr(AnchoringWallet, "_remember", crash)
        with pytest.raises(Crash):
            Party.create(home, source, role="service", name="resume.example")
    party = Party.load(home, "resume.example")
    assert party.locator is None and party.funding_tx is not None
    assert source.node.mempool_txids() == []                       # the crash came before any send

    with pytest.raises(AnchorNotMined):
        party.confirm(source)                                      # hands both to the wallet and sends them
    assert set(source.node.mempool_txids()) >= {party.anchor_txid}
    assert {"funding resume.example", "anchor resume.example"} <= set(_recorded_labels(home))
    source.mine(1)
    locator = party.confirm(source)
    assert Party.load(home, "resume.example").locator == locator
    assert "funding_tx" not in json.loads((party.directory / "anchor.json").read_text())
