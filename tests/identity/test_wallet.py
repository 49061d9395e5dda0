"""The anchoring wallet on the embedded chain: it pays, tracks, warns, rebroadcasts and bumps.

Every transaction the wallet builds goes through the node's mempool, which accepts only
what Bitcoin Core's kernel verifies (flags ALL); each test checks that it got there.
"""
from __future__ import annotations

import dataclasses
import logging
import stat

import pytest
from embit.transaction import Transaction, TransactionInput

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import SourceError
from milagro_tls.chain.network import Network
from milagro_tls.chain.node.store import Store
from milagro_tls.chain.script_text import address_to_script
from milagro_tls.chain.tx import parse_tx
from milagro_tls.chain.source import UnspentOutput
from milagro_tls.identity.anchor import build_fee_key_spend, fee_key_spend_fee
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.identity.party import AnchorNotMined, Party
from milagro_tls.identity.wallet import (DEFAULT_FEE_CAP, FAUCET_AMOUNT, AnchoringWallet, Balance,
                                         InsufficientFunds, WalletError, load_fee_key)
from milagro_tls.identity.wallet_record import WalletRecord

from helpers.sources import DelegatingSource


def _vsize(raw: bytes) -> int:
    """BIP141 vsize computed here from a witness-stripped copy, not by the code under test."""
    tx = parse_tx(raw)
    stripped = Transaction(tx.version, [TransactionInput(i.txid, i.vout, i.script_sig, i.sequence) for i in tx.vin],
                           tx.vout, tx.locktime).serialize()
    return -(-(3 * len(stripped) + len(raw)) // 4)


PAYEE = IdentityKey.generate().p2wpkh_script


class EstimatingSource(EmbeddedSource):
    """The embedded chain with a fee market: the estimate is whatever the test says."""

    def __init__(self, node, estimate) -> None:
        super().__init__(node)
        self.estimate = estimate

    def fee_rate_unverified(self, target_blocks: int = 6) -> float | None:
        if isinstance(self.estimate, Exception):
            raise self.estimate
        return self.estimate


class RealNetworkSource(EmbeddedSource):
    """The embedded chain posing as testnet4: no faucet for the wallet, as on a real network."""
    network = Network.TESTNET4


@pytest.fixture
def source(tmp_path):
    with EmbeddedSource.open(tmp_path / "chain") as source:
        source.mine(101)
        yield source


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def _funded(home, source, coins=(FAUCET_AMOUNT,), **kwargs) -> AnchoringWallet:
    """A wallet holding confirmed coins of the given values."""
    wallet = AnchoringWallet(home, source, **kwargs)
    for value in coins:
        source.faucet(wallet.script_pubkey, value)
    source.mine(1)
    return wallet


def _in_mempool(source, *built) -> None:
    mempool = source.node.mempool_txids()
    for tx in built:
        assert tx.txid in mempool, f"{tx.txid_hex} is not in the kernel-checked mempool"


def _wipe_mempool(source, datadir):
    """Restart the node with an empty mempool (a node that lost its mempool file)."""
    source.close()
    store = Store(datadir / "index.sqlite")
    with store.transaction():
        store.mempool_replace([])
    store.close()
    return EmbeddedSource.open(datadir)


# --- address and keys -----------------------------------------------------------------------

@pytest.mark.parametrize("network, prefix", [(Network.REGTEST, "bcrt1q"), (Network.TESTNET4, "tb1q"),
                                             (Network.MAINNET, "bc1q")])
def test_address_is_the_fee_keys_p2wpkh_on_the_sources_network(home, source, network, prefix):
    stand_in = EstimatingSource(source.node, None)
    stand_in.network = network
    wallet = AnchoringWallet(home, stand_in)
    assert wallet.address().startswith(prefix)
    assert address_to_script(wallet.address(), network) == wallet.script_pubkey
    assert wallet.script_pubkey == load_fee_key(home).p2wpkh_script
    assert stat.S_IMODE((home / "fee.key").stat().st_mode) == 0o600


# --- pays -----------------------------------------------------------------------------------

def test_fund_pays_amount_to_output_0_and_change_to_the_fee_key(home, source):
    wallet = _funded(home, source)
    before = wallet.balance()
    assert before.confirmed == FAUCET_AMOUNT and before.unconfirmed == 0
    built = wallet.fund(PAYEE, 30_000)
    _in_mempool(source, built)
    tx = parse_tx(built.raw)
    assert tx.vout[0].value == 30_000 and tx.vout[0].script_pubkey.data == PAYEE
    assert tx.vout[-1].script_pubkey.data == wallet.script_pubkey and len(tx.vout) == 2
    fee = FAUCET_AMOUNT - sum(o.value for o in tx.vout)
    assert fee == fee_key_spend_fee(1, [PAYEE], wallet.fee_floor)
    assert fee >= wallet.fee_floor * _vsize(built.raw)          # at least the floor on the real size
    source.mine(1)
    after = wallet.balance()
    assert after.confirmed == before.confirmed - 30_000 - fee and after.unconfirmed == 0
    assert source.tx_status(built.txid).block_hash is not None


def test_fund_prefers_confirmed_coins_and_records_without_secrets(home, source):
    wallet = _funded(home, source, coins=(40_000,))
    source.faucet(wallet.script_pubkey, 90_000)                  # larger, but unconfirmed
    built = wallet.fund(PAYEE, 10_000)
    spent = WalletRecord(home).load()[-1]
    assert spent.txid == built.txid and spent.change_vout == 1 and spent.label == "fund"
    assert [source.node.utxo(t, v, include_mempool=False).value for t, v in spent.prevouts] == [40_000]
    text = (home / "wallet.json").read_text()
    assert load_fee_key(home)._private.secret.hex() not in text
    assert stat.S_IMODE((home / "wallet.json").stat().st_mode) == 0o600


def test_a_short_wallet_on_a_real_network_names_the_address_and_amount(home, source):
    wallet = AnchoringWallet(home, RealNetworkSource(source.node))
    with pytest.raises(InsufficientFunds) as info:
        wallet.ensure_funded(50_000)
    assert wallet.address().startswith("tb1q") and wallet.address() in str(info.value)
    assert info.value.shortfall == 50_000 + fee_key_spend_fee(1, [PAYEE], 1.0)
    assert source.node.mempool_txids() == []                      # no faucet off regtest


def test_ensure_funded_uses_the_faucet_on_regtest(home, source):
    wallet = AnchoringWallet(home, source)
    wallet.ensure_funded(5_000)
    assert wallet.balance().confirmed == FAUCET_AMOUNT
    wallet.ensure_funded(5_000)                                   # enough already: no second request
    assert wallet.balance().confirmed == FAUCET_AMOUNT


# --- tracks ---------------------------------------------------------------------------------

def test_balance_moves_from_unconfirmed_to_confirmed_as_blocks_are_mined(home, source):
    wallet = _funded(home, source)
    built = wallet.fund(PAYEE, 10_000)
    change = parse_tx(built.raw).vout[1].value
    assert wallet.balance() == Balance(0, change)
    assert [e.txid for e in wallet.pending()] == [built.txid]
    source.mine(1)
    assert wallet.balance() == Balance(change, 0)
    assert wallet.pending() == []


def test_unconfirmed_change_is_spent_once_and_chained_spends_are_accepted(home, source):
    wallet = _funded(home, source)
    first = wallet.fund(PAYEE, 10_000)
    second = wallet.fund(PAYEE, 10_000)                          # only coin: the first's change
    assert (first.txid, 1) in [(t, v) for t, v in WalletRecord(home).load()[-1].prevouts]
    _in_mempool(source, first, second)
    source.mine(1)
    assert source.tx_status(second.txid).block_hash == source.tx_status(first.txid).block_hash


def test_a_coin_reserved_by_an_unconfirmed_wallet_tx_is_not_selected_again(home, source, tmp_path):
    wallet = _funded(home, source, coins=(60_000, 50_000))
    first = wallet.fund(PAYEE, 20_000)                           # takes the 60,000 coin
    source = _wipe_mempool(source, tmp_path / "chain")
    try:
        wallet = AnchoringWallet(home, source)
        # The source now lists the 60,000 coin as unspent again; the record still reserves it.
        assert {u.value for u in source.utxos_unverified(wallet.script_pubkey)} == {60_000, 50_000}
        assert wallet.balance().confirmed == 50_000
        second = wallet.fund(PAYEE, 20_000)
        assert set(WalletRecord(home).load()[0].prevouts).isdisjoint(WalletRecord(home).load()[1].prevouts)
        assert wallet.rebroadcast_unconfirmed() == [first.txid]
        _in_mempool(source, first, second)
    finally:
        source.close()


# --- warns ----------------------------------------------------------------------------------

def test_low_balance_warns_with_the_address_and_logs_it(home, source, caplog):
    wallet = _funded(home, source, low_balance=150_000)
    with caplog.at_level(logging.WARNING, logger="milagro_tls.wallet"):
        message = wallet.check_low_balance()
    assert message is not None and "100000 sat" in message and "150000 sat" in message
    assert wallet.address() in message
    assert [r.getMessage() for r in caplog.records if r.name == "milagro_tls.wallet"] == [message]
    assert AnchoringWallet(home, source, low_balance=100_000).check_low_balance() is None


def test_paying_below_the_threshold_warns(home, source, caplog):
    wallet = _funded(home, source, low_balance=80_000)
    with caplog.at_level(logging.WARNING, logger="milagro_tls.wallet"):
        wallet.fund(PAYEE, 30_000)
    assert any("below 80000 sat" in r.getMessage() for r in caplog.records)


# --- fee estimation -------------------------------------------------------------------------

@pytest.mark.parametrize("estimate, expected", [
    (500.0, DEFAULT_FEE_CAP),              # a spike (or a lying source) is capped
    (None, 1.0),                           # no estimate (regtest, a fresh node): the floor
    (0.2, 1.0),                            # below the relay floor
    (float("nan"), 1.0),
    (12.5, 12.5),
    (SourceError("estimatesmartfee failed"), 1.0),
])
def test_fee_rate_is_the_estimate_clamped_to_floor_and_cap(home, source, estimate, expected):
    wallet = AnchoringWallet(home, EstimatingSource(source.node, estimate))
    assert wallet.fee_rate() == expected


def test_a_capped_estimate_is_what_the_wallet_pays(home, source):
    wallet = _funded(home, EstimatingSource(source.node, 500.0), fee_cap=20.0)
    built = wallet.fund(PAYEE, 10_000)
    fee = WalletRecord(home).load()[-1].fee
    assert fee == fee_key_spend_fee(1, [PAYEE], 20.0)
    assert 20.0 <= fee / _vsize(built.raw) < 20.5
    _in_mempool(source, built)


def test_a_fee_rate_outside_floor_and_cap_is_refused(home, source):
    wallet = _funded(home, source, fee_cap=50.0)
    with pytest.raises(WalletError, match="outside"):
        wallet.fund(PAYEE, 10_000, fee_rate=80.0)


# --- rebroadcast ----------------------------------------------------------------------------

def test_a_tx_lost_from_the_mempool_is_rebroadcast_and_confirms(home, source, tmp_path):
    wallet = _funded(home, source)
    built = wallet.fund(PAYEE, 10_000)
    assert wallet.rebroadcast_unconfirmed() == []                # still in the mempool: nothing to do
    source = _wipe_mempool(source, tmp_path / "chain")
    try:
        wallet = AnchoringWallet(home, source)
        assert built.txid not in source.node.mempool_txids()
        assert wallet.rebroadcast_unconfirmed() == [built.txid]
        _in_mempool(source, built)
        source.mine(1)
        assert source.tx_status(built.txid).block_hash is not None
        assert wallet.rebroadcast_unconfirmed() == []
    finally:
        source.close()


def test_a_tx_conflicting_with_a_confirmed_one_is_dropped_with_its_children(home, source, caplog):
    wallet = _funded(home, source)
    parent = wallet.fund(PAYEE, 10_000)
    child = wallet.fund(PAYEE, 10_000)                            # spends the parent's change
    # A confirmed double spend of the parent's coin (the same fee key elsewhere, say).
    (coin_txid, coin_vout), = WalletRecord(home).load()[0].prevouts
    rival = build_fee_key_spend(load_fee_key(home), [UnspentOutput(coin_txid, coin_vout, FAUCET_AMOUNT, wallet.script_pubkey, None)],
                                [(50_000, PAYEE)], 500)
    source.node.submit_block(source.node.build_block([rival.raw]))
    assert source.tx_status(rival.txid).block_hash is not None
    with caplog.at_level(logging.WARNING, logger="milagro_tls.wallet"):
        assert wallet.rebroadcast_unconfirmed() == []
    assert WalletRecord(home).load() == []
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"dropped {parent.txid_hex}" in logged and "spent by a confirmed transaction" in logged
    assert f"dropped {child.txid_hex}" in logged and "spends a dropped transaction" in logged


def test_deeply_confirmed_records_are_forgotten(home, source):
    wallet = _funded(home, source)
    wallet.fund(PAYEE, 10_000)
    source.mine(99)
    wallet.rebroadcast_unconfirmed()
    assert len(WalletRecord(home).load()) == 1
    source.mine(1)
    wallet.rebroadcast_unconfirmed()
    assert WalletRecord(home).load() == []


# --- CPFP -----------------------------------------------------------------------------------

def _package_rate(*entries) -> float:
    return sum(e.fee for e in entries) / sum(_vsize(e.raw) for e in entries)


def test_bump_spends_the_change_and_lifts_the_package_to_the_target(home, source):
    wallet = _funded(home, source)
    parent = wallet.fund(PAYEE, 10_000, fee_rate=1.0)
    child = wallet.bump(parent.txid, 25.0)
    record = {e.txid: e for e in WalletRecord(home).load()}
    child_tx = parse_tx(child.raw)
    assert [(bytes(i.txid)[::-1], i.vout) for i in child_tx.vin] == [(parent.txid, 1)]
    assert [o.script_pubkey.data for o in child_tx.vout] == [wallet.script_pubkey]
    assert _package_rate(record[parent.txid], record[child.txid]) >= 25.0
    assert _package_rate(record[parent.txid], record[child.txid]) < 25.0 + 1.0   # not overpaying
    _in_mempool(source, parent, child)
    source.mine(1)
    assert source.tx_status(parent.txid).block_hash == source.tx_status(child.txid).block_hash is not None


def test_bump_of_an_anchor_pays_for_its_unconfirmed_funding_too(home, source):
    party = Party.create(home, source, role="service", name="bump.example", confirm_blocks=0)
    assert party.locator is None
    wallet = AnchoringWallet(home, source)
    funding, anchor = [e for e in WalletRecord(home).load() if e.label.endswith("bump.example")]
    assert anchor.txid == party.anchor_txid and anchor.change_vout == 2
    child = wallet.bump(party.anchor_txid, 10.0)
    child_entry = WalletRecord(home).load()[-1]
    assert _package_rate(anchor, child_entry) >= 10.0
    assert _package_rate(funding, anchor, child_entry) >= 10.0
    _in_mempool(source, child)
    source.mine(1)
    assert source.tx_status(child.txid).block_hash == source.tx_status(party.anchor_txid).block_hash
    assert party.confirm(source).block_hash == source.tx_status(child.txid).block_hash


def test_bump_adds_a_coin_when_the_change_cannot_pay_the_child(home, source):
    wallet = _funded(home, source, coins=(60_000, 40_000))
    # leaves about 1,000 sat of change: too little for a 50 sat/vB child
    parent = wallet.fund(PAYEE, 60_000 - 1_000 - fee_key_spend_fee(1, [PAYEE], 1.0), fee_rate=1.0)
    child = wallet.bump(parent.txid, 50.0)
    record = {e.txid: e for e in WalletRecord(home).load()}
    assert len(parse_tx(child.raw).vin) == 2
    assert _package_rate(record[parent.txid], record[child.txid]) >= 50.0
    _in_mempool(source, parent, child)


def test_bump_refuses_a_parent_without_change_a_confirmed_parent_and_a_second_bump(home, source):
    wallet = _funded(home, source, coins=(50_000,))
    # change below dust goes to the fee: no output for a child to spend
    no_change = wallet.fund(PAYEE, 50_000 - fee_key_spend_fee(1, [PAYEE], 1.0) - 100, fee_rate=1.0)
    assert len(parse_tx(no_change.raw).vout) == 1
    with pytest.raises(WalletError, match="no change output"):
        wallet.bump(no_change.txid, 10.0)
    source.faucet(wallet.script_pubkey, FAUCET_AMOUNT)
    source.mine(1)
    with pytest.raises(WalletError, match="already confirmed"):
        wallet.bump(no_change.txid, 10.0)
    parent = wallet.fund(PAYEE, 10_000, fee_rate=1.0)
    wallet.bump(parent.txid, 10.0)
    with pytest.raises(WalletError, match="already spent"):
        wallet.bump(parent.txid, 20.0)
    with pytest.raises(WalletError, match="not a transaction this wallet"):
        wallet.bump(bytes(32), 10.0)


def test_bump_refuses_a_target_the_parent_already_meets(home, source):
    wallet = _funded(home, source)
    parent = wallet.fund(PAYEE, 10_000, fee_rate=5.0)
    with pytest.raises(WalletError, match="already pays"):
        wallet.bump(parent.txid, 4.0)


# --- Party on a real network ----------------------------------------------------------------

def test_party_on_a_real_network_waits_for_the_operator_then_for_a_block(home, source):
    real = RealNetworkSource(source.node)
    with pytest.raises(InsufficientFunds) as info:
        Party.create(home, real, role="idp", name="idp.example")
    assert not (home / "identities" / "idp.example").exists()     # nothing half-made
    # the operator pays the address the error named
    source.node.faucet(address_to_script(info.value.address, Network.TESTNET4), info.value.shortfall)
    source.mine(1)
    party = Party.create(home, real, role="idp", name="idp.example")
    assert party.locator is None and party.anchor_txid in source.node.mempool_txids()
    assert Party.load(home, "idp.example").locator is None
    with pytest.raises(AnchorNotMined):
        party.confirm(real)
    source.mine(1)
    locator = party.confirm(real)
    assert locator.network is Network.TESTNET4
    assert Party.load(home, "idp.example").locator == locator


class _NoCoinbaseFlag(DelegatingSource):
    """Lists coins as Esplora does: without saying which are coinbase outputs."""

    def utxos_unverified(self, script_pubkey):
        return [dataclasses.replace(u, coinbase=None) for u in self.inner.utxos_unverified(script_pubkey)]


@pytest.mark.parametrize("says_coinbase", [True, False], ids=["source-flags-coinbase", "source-silent"])
def test_immature_coinbase_paid_to_the_funding_address_is_not_spent(tmp_path, says_coinbase):
    with EmbeddedSource.open(tmp_path / "chain") as embedded:
        source = embedded if says_coinbase else _NoCoinbaseFlag(embedded)
        wallet = AnchoringWallet(tmp_path / "home", source)
        embedded.mine(1, wallet.script_pubkey)            # a miner pays the funding address directly
        assert wallet.coins() == []                        # listed by the source, but not spendable yet
        with pytest.raises(InsufficientFunds):
            wallet.fund(b"\x00\x14" + b"\x11" * 20, 10_000)
        embedded.mine(99)                                  # the next block is 100 above the coinbase
        (coin,) = wallet.coins()
        built = wallet.fund(b"\x00\x14" + b"\x11" * 20, 10_000)
        assert embedded.node.mempool_txids() == [built.txid]    # the kernel-backed mempool took it
        assert coin.value == 50 * 100_000_000
