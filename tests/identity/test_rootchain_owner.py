"""The owner's side of anchor chains: the birth anchor's chain outputs, RootAnchorer's links,
crash recovery (re-send, never rebuild) and the lock that keeps concurrent anchorers from forking."""
from __future__ import annotations

import hashlib
import json
import stat
import threading

import pytest

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.sighash import p2wpkh_script
from milagro_tls.chain.tx import outpoint, parse_tx
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.errors import IdentityError
from milagro_tls.identity.anchor import CHAIN_VALUE, SEAL_VALUE
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.marker import Marker, MarkerType
from milagro_tls.identity.party import Party
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.identity.wallet import AnchoringWallet, WalletError

LOG, REVOCATION = MarkerType.ACTIVITY_LOG_ROOT, MarkerType.REVOCATION_LIST_ROOT


class Crash(Exception):
    """Stands in for the process dying at this point."""


def _root(i: int) -> bytes:
    return hashlib.sha256(b"root %d" % i).digest()


@pytest.fixture
def source(tmp_path):
    with EmbeddedSource.open(tmp_path / "chain") as source:
        source.mine(110)
        yield source


@pytest.fixture
def party(tmp_path, source):
    return Party.create(tmp_path / "home", source, role="idp", name="idp.example", root_chains=(LOG, REVOCATION))


def _anchorer(tmp_path, source) -> RootAnchorer:
    return RootAnchorer(tmp_path / "home", "idp.example", source)


def _state(party) -> dict:
    return json.loads((party.directory / "rootchain.json").read_text())["chains"]


def test_birth_anchor_carries_one_chain_output_per_type_after_the_seal(tmp_path, source, party):
    chain_key = party.chain_key()
    assert stat.S_IMODE((party.directory / "chain.key").stat().st_mode) == 0o600
    assert [(e.type, e.key) for e in party.certificate.root_chains] == [(LOG, chain_key.public_key),
                                                                        (REVOCATION, chain_key.public_key)]
    tx = parse_tx(party.anchor_tx)
    outputs = [(out.value, out.script_pubkey.data) for out in tx.vout]
    wallet = AnchoringWallet(tmp_path / "home", source)
    assert Marker.parse_script(outputs[0][1]) == Marker(MarkerType.BIRTH_CERTIFICATE, party.certificate.digest())
    assert outputs[1] == (SEAL_VALUE, party.key.p2wpkh_script)
    assert outputs[2] == outputs[3] == (CHAIN_VALUE, p2wpkh_script(chain_key.public_key))
    assert outputs[4][1] == wallet.script_pubkey and len(outputs) == 5
    assert party.root_chain_start(REVOCATION) == (party.anchor_txid, 3)
    # The verifier still finds the seal and the exact nonce point; the owner still derives k.
    identity, _ = resolve_anchor(party.locator, party.certificate, source, HeaderChain(":memory:", source.network))
    assert identity.seal == (party.anchor_txid, 1)
    assert identity.nonce_point == party.nonce_key().public_key.format()
    local = LocalIdentity.from_party(Party.load(tmp_path / "home", "idp.example"), source)
    assert local.nonce_point == identity.nonce_point


def test_create_refuses_bad_root_chain_types(tmp_path, source):
    for chains in ((MarkerType.BIRTH_CERTIFICATE,), (3, 3), (True,)):
        with pytest.raises(IdentityError, match="root chain|twice"):
            Party.create(tmp_path / "home", source, role="idp", name="bad.example", root_chains=chains)
    assert not (tmp_path / "home" / "identities" / "bad.example").exists()


def test_links_spend_each_other_unconfirmed_and_pay_fees_from_the_fee_key(tmp_path, source, party):
    anchorer = _anchorer(tmp_path, source)
    first = anchorer.anchor(LOG, _root(1))
    second = anchorer.anchor(LOG, _root(2))           # spends the unconfirmed first link
    revocation = anchorer.anchor(REVOCATION, _root(9))
    assert set(source.node.mempool_txids()) == {first.txid, second.txid, revocation.txid}
    chain_script = party.chain_key().p2wpkh_script
    fee_script = AnchoringWallet(tmp_path / "home", source).script_pubkey
    for link, spent, marker_type in ((first, (party.anchor_txid, 2), LOG), (second, (first.txid, 1), LOG),
                                     (revocation, (party.anchor_txid, 3), REVOCATION)):
        tx = parse_tx(link.raw)
        assert outpoint(tx.vin[0]) == spent
        assert bytes(tx.vin[0].witness.items[1]) == party.chain_key().public_key
        for fee_input in tx.vin[1:]:
            prev = parse_tx(source.transaction(outpoint(fee_input)[0]))
            assert prev.vout[fee_input.vout].script_pubkey.data == fee_script
        assert len(tx.vin) >= 2
        assert Marker.parse_script(tx.vout[0].script_pubkey.data) == Marker(marker_type, link.root)
        assert (tx.vout[1].value, tx.vout[1].script_pubkey.data) == (CHAIN_VALUE, chain_script)
        # Change to the fee key, unless the coins left only dust (which then goes to the fee).
        assert [out.script_pubkey.data for out in tx.vout[2:]] in ([fee_script], [])
    assert anchorer.latest(LOG) == second
    assert _state(party)["3"]["pending"] is None
    source.mine(1)
    assert source.node.mempool_txids() == []


def test_anchoring_the_latest_root_again_returns_that_link(tmp_path, source, party):
    anchorer = _anchorer(tmp_path, source)
    link = anchorer.anchor(LOG, _root(1))
    assert anchorer.anchor(LOG, _root(1)) == link
    assert source.node.mempool_txids() == [link.txid]


def test_anchor_refuses_what_the_certificate_does_not_name(tmp_path, source, party):
    anchorer = _anchorer(tmp_path, source)
    with pytest.raises(IdentityError, match="no root chain of type 2"):
        anchorer.anchor(MarkerType.BATCH_ROOT, _root(1))
    with pytest.raises(IdentityError, match="32 bytes"):
        anchorer.anchor(LOG, b"\x00" * 31)
    Party.create(tmp_path / "home", source, role="service", name="plain.example")
    with pytest.raises(IdentityError, match="no root chains"):
        RootAnchorer(tmp_path / "home", "plain.example", source)


def test_a_crash_between_record_and_send_is_resent_not_rebuilt(tmp_path, source, party, monkeypatch):
    with monkeypatch.context() as patch:
        def crash(self, txid):
            raise Crash()
        patch.setattr(AnchoringWallet, "_send", crash)
        with pytest.raises(Crash):
            _anchorer(tmp_path, source).anchor(LOG, _root(1))
    pending = _state(party)["3"]["pending"]
    assert pending is not None and source.node.mempool_txids() == []
    built_txid = parse_tx(bytes.fromhex(pending["raw"])).hash()

    second = _anchorer(tmp_path, source).anchor(LOG, _root(2))     # another process, later
    assert set(source.node.mempool_txids()) == {built_txid, second.txid}
    assert outpoint(parse_tx(second.raw).vin[0]) == (built_txid, 1)
    assert _anchorer(tmp_path, source).latest(LOG).txid == second.txid


def test_a_crash_before_the_wallet_records_is_resent_by_resume(tmp_path, source, party, monkeypatch):
    with monkeypatch.context() as patch:
        def crash(self, built, spent_value, label):
            raise Crash()
        patch.setattr(AnchoringWallet, "_remember", crash)
        with pytest.raises(Crash):
            _anchorer(tmp_path, source).anchor(LOG, _root(1))
    wallet = AnchoringWallet(tmp_path / "home", source)
    raw = bytes.fromhex(_state(party)["3"]["pending"]["raw"])
    txid = parse_tx(raw).hash()
    assert wallet.recorded(txid) is None and source.node.mempool_txids() == []

    resent = _anchorer(tmp_path, source).resume()
    assert [(r.txid, r.raw, r.root) for r in resent] == [(txid, raw, _root(1))]
    assert source.node.mempool_txids() == [txid]
    entry = wallet.recorded(txid)                     # recorded now, with its true fee
    tx = parse_tx(raw)
    inputs = CHAIN_VALUE + sum(parse_tx(source.transaction(outpoint(i)[0])).vout[i.vout].value for i in tx.vin[1:])
    assert entry.fee == inputs - sum(out.value for out in tx.vout) > 0
    assert _anchorer(tmp_path, source).resume() == []


def test_a_refused_pending_link_is_rebuilt_on_the_same_chain_output(tmp_path, source, party, monkeypatch):
    with monkeypatch.context() as patch:
        def crash(self, built, spent_value, label):
            raise Crash()
        patch.setattr(AnchoringWallet, "_remember", crash)
        with pytest.raises(Crash):
            _anchorer(tmp_path, source).anchor(LOG, _root(1))
    lost = parse_tx(bytes.fromhex(_state(party)["3"]["pending"]["raw"])).hash()
    # Unrecorded, its fee coins were free to spend: the wallet spends all it has elsewhere.
    wallet = AnchoringWallet(tmp_path / "home", source)
    wallet.fund(b"\x00\x14" + b"\x07" * 20, wallet.balance().total - 2_000, fee_rate=1.0)

    link = _anchorer(tmp_path, source).anchor(LOG, _root(2))
    assert link.txid != lost and lost not in source.node.mempool_txids()
    assert outpoint(parse_tx(link.raw).vin[0]) == (party.anchor_txid, 2)
    assert source.outspend_unverified(party.anchor_txid, 2) == link.txid


def test_concurrent_anchorers_build_one_chain(tmp_path, source, party):
    AnchoringWallet(tmp_path / "home", source).ensure_funded(50_000, fee_rate=1.0)
    errors: list[BaseException] = []

    def anchor(i: int) -> None:
        try:
            _anchorer(tmp_path, source).anchor(LOG, _root(i))   # one instance (one lock fd) per thread
        except BaseException as exc:                            # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=anchor, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    spent, roots = (party.anchor_txid, 2), []
    for _ in range(4):                                # one unbroken chain through the mempool
        txid = source.outspend_unverified(*spent)
        tx = parse_tx(source.transaction(txid))
        roots.append(Marker.parse_script(tx.vout[0].script_pubkey.data).digest)
        spent = (txid, 1)
    assert source.outspend_unverified(*spent) is None
    assert sorted(roots) == sorted(_root(i) for i in range(4))


def test_spend_with_needs_a_foreign_input(tmp_path, source):
    wallet = AnchoringWallet(tmp_path / "home", source)
    with pytest.raises(WalletError, match="foreign input"):
        wallet.spend_with([], [(1_000, b"\x00\x14" + b"\x01" * 20)], lambda tx: None)
