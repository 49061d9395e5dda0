"""Batches mined on the embedded chain: absent PATs, stripped signatures and their re-queue, bad
answers, the PAT's refusals, CPFP on the change and the key-path reclaim. Every transaction the
library builds is checked by the kernel and every sighash by the hashlib reference (support.py)."""
from __future__ import annotations

import dataclasses
import stat

import coincurve
import pytest

from milagro_tls.chain.batchverify import BatchSlotEmpty
from milagro_tls.chain.proof import fetch_anchor_proof
from milagro_tls.chain.tx import parse_tx, txid_of
from milagro_tls.chain.verify import verify_anchor
from milagro_tls.identity.batch import BatchError, PendingBatch
from milagro_tls.identity.batchpat import BatchPat, BatchRequestRefused, SlotNotAnchored
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.locator import Locator
from milagro_tls.identity.party import AnchorNotMined
from milagro_tls.merkle import inclusion_proof

from .support import (Batcher, bip341_sighash, headers_of, kernel_accepts, mined_tx, parse_raw_tx, spent_of,
                      weight)


@pytest.fixture(scope="module")
def batcher(world, tmp_path_factory):
    return Batcher.create(world.source, tmp_path_factory.mktemp("batcher"))


def _verified(pat: BatchPat, source):
    local = LocalIdentity.from_batch_pat(pat, source)
    identity = verify_anchor(local.locator, local.certificate, local.proof, headers_of(source))
    return local, identity


def test_batch_with_a_non_answering_pat_anchors_the_others(batcher, world):
    source = world.source
    pats = batcher.new_pats(8)
    batch, raw = batcher.run(pats, absent={2, 5})
    assert mined_tx(source, batch.txid) == raw               # the witness as the block holds it
    witness = parse_raw_tx(raw).witnesses[0]
    assert len(witness) == 8 + 3
    assert [len(witness[7 - p]) for p in range(8)] == [64, 64, 0, 64, 64, 0, 64, 64]   # reverse key order

    outcome = batcher.assembler.settle(batch, source)
    assert [c.name for c in outcome.requeue] == [pats[2].name, pats[5].name]
    assert len(outcome.anchored) == 6 and outcome.block_hash == source.tx_status(batch.txid).block_hash
    for position, pat in enumerate(pats):
        if position in (2, 5):
            with pytest.raises(AnchorNotMined):          # it never signed: it knows of no batch
                pat.confirm(source)
            continue
        locator = pat.confirm(source)
        assert locator == outcome.locators[pat.certificate.digest()]
        assert BatchPat.load(pat.directory.parent.parent, pat.name).locator == locator
        local, identity = _verified(pat, source)
        assert identity.nonce_point == local.nonce_point == b"\x02" + bytes(witness[7 - position][:32])
        assert identity.seal is None and identity.certificate == pat.certificate
        assert identity.confirmations == 6
    # Loaded by name from its home, as a Context would; keys are 0600.
    home = pats[0].directory.parent.parent
    assert LocalIdentity.load(home, pats[0].name, source).nonce_point == _verified(pats[0], source)[0].nonce_point
    assert stat.S_IMODE((pats[0].directory / "identity.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((batcher.home / "tbs" / "batch.key").stat().st_mode) == 0o600


def test_stripped_signature_leaves_that_pat_unanchored_and_it_is_requeued(batcher, world):
    source = world.source
    pats = batcher.new_pats(4)
    batch, raw = batcher.run(pats, strip={1})
    assert kernel_accepts(raw, [(batch.funding_value, batch.script_pubkey)])   # still consensus-valid
    outcome = batcher.assembler.settle(batch, source)
    assert outcome.requeue == (pats[1].certificate,)
    with pytest.raises(SlotNotAnchored):
        pats[1].confirm(source)
    # Its locator, built as if it had been anchored, is refused by the verifier.
    proof = fetch_anchor_proof(source, batch.txid, outcome.block_hash, outcome.height)
    locator = Locator.taproot_batch(network=source.network, txid=batch.txid, input_index=0,
                                    block_hash=outcome.block_hash, position=1,
                                    proof=batch.tree.inclusion_proof(1))
    with pytest.raises(BatchSlotEmpty, match="confirmed empty"):
        verify_anchor(locator, pats[1].certificate, proof, headers_of(source))
    # The others are anchored; the re-queued PAT signs again in the next batch and is anchored there.
    for pat in (pats[0], pats[2], pats[3]):
        pat.confirm(source)
        _verified(pat, source)
    newcomers = batcher.new_pats(1)
    members = [next(p for p in pats if p.certificate == c) for c in outcome.requeue] + newcomers
    next_batch, _ = batcher.run(members)
    assert [c.name for c in batcher.assembler.settle(next_batch, source).anchored] == [pats[1].name, newcomers[0].name]
    assert pats[1].confirm(source).txid == next_batch.txid
    _verified(pats[1], source)


def test_bad_answers_become_empty_items(batcher, world):
    source = world.source
    pats = batcher.new_pats(4)
    batch = batcher.assembler.open([p.certificate for p in pats])
    good = [pats[i].sign(batch.request(i)) for i in range(4)]
    assert batcher.assembler.accept(batch, good[0])
    flipped = bytearray(good[1].signature)
    flipped[10] ^= 1
    refused = [
        dataclasses.replace(good[1], signature=bytes(flipped)),                  # does not verify
        dataclasses.replace(good[2], signature=good[2].signature + b"\x00"),      # 65 bytes, hash type 0
        dataclasses.replace(good[3], position=2),                                # PAT 3's signature at 2
        dataclasses.replace(good[3], txid=bytes(32)),                            # another transaction
        dataclasses.replace(good[3], position=9),
    ]
    assert [batcher.assembler.accept(batch, r) for r in refused] == [False] * 5
    assert set(batch.signatures) == {0}
    built = batcher.assembler.finish(batch)
    assert kernel_accepts(built.raw, [(batch.funding_value, batch.script_pubkey)])
    source.mine(1)
    outcome = batcher.assembler.settle(batch, source)
    assert outcome.anchored == (pats[0].certificate,) and len(outcome.requeue) == 3


def test_pat_refuses_requests_it_cannot_check(batcher, world):
    pats = batcher.new_pats(3)
    stranger = BatchPat.create(batcher.home / "pats", name="stranger", batch_key=pats[0].certificate.pubkey[1:],
                               network=world.source.network)
    batch = batcher.assembler.open([p.certificate for p in pats])
    request = batch.request(1)
    other = batch.request(2)
    cases = {
        "not at the requested position": dataclasses.replace(request, position=0),
        "not in the batch root": dataclasses.replace(request, proof=inclusion_proof([b"x", b"y", b"z"], 1)),
        "spent output": dataclasses.replace(request, spent_outputs=(
            dataclasses.replace(request.spent_outputs[0], script_pubkey=b"\x51\x20" + bytes(32)),)),
        "input index": dataclasses.replace(request, input_index=1),
    }
    for reason, bad in cases.items():
        with pytest.raises(BatchRequestRefused, match=reason):
            pats[1].sign(bad)
    with pytest.raises(BatchRequestRefused, match="batch key this certificate names"):
        stranger.sign(request)
    with pytest.raises(BatchRequestRefused, match="not at the requested position"):
        pats[1].sign(other)
    assert pats[1].slots == []                    # nothing signed, nothing recorded
    response = pats[1].sign(request)
    assert response.signature and len(pats[1].slots) == 1
    assert batcher.assembler.accept(batch, response)
    # The batch survives a restart of the TBS through its JSON form.
    again = PendingBatch.from_json(batch.to_json())
    assert again.txid == batch.txid and again.signatures == batch.signatures and again.leaf == batch.leaf
    batcher.assembler.finish(again)
    world.source.mine(1)


def test_a_batch_nobody_signed_is_reclaimed_through_the_key_path(batcher, world):
    source = world.source
    pats = batcher.new_pats(3)
    batch = batcher.assembler.open([p.certificate for p in pats])
    with pytest.raises(BatchError, match="no PAT signed"):
        batcher.assembler.finish(batch)
    built = batcher.assembler.reclaim(batch)
    spent = [(batch.funding_value, batch.script_pubkey)]
    assert kernel_accepts(built.raw, spent)
    tx = parse_raw_tx(built.raw)
    assert len(tx.witnesses[0]) == 1 and len(tx.witnesses[0][0]) == 64        # key path: one signature
    assert weight(built.raw) == 396                                             # 99 vB, as the fee assumed
    # Under the output key Q itself, over the key-path sighash of the hashlib reference.
    assert coincurve.PublicKeyXOnly(batch.script_pubkey[2:]).verify(tx.witnesses[0][0],
                                                                    bip341_sighash(built.raw, 0, spent, None))
    source.mine(1)
    assert source.tx_status(built.txid).block_hash is not None


def test_cpfp_bumps_the_batch_through_its_change(batcher, world):
    source = world.source
    pats = batcher.new_pats(2)
    batch, _ = batcher.run(pats, confirmations=0)
    wallet = batcher.assembler.wallet
    child = wallet.bump(batch.txid, 5.0)
    child_tx = parse_tx(child.raw)
    assert any(bytes(i.txid)[::-1] == batch.txid and i.vout == 1 for i in child_tx.vin)   # spends the change
    assert kernel_accepts(child.raw, spent_of(source, child.raw))
    source.mine(1)
    assert source.tx_status(batch.txid).block_hash == source.tx_status(txid_of(child_tx)).block_hash
