"""The kind-2 verifier refuses, with the precise error, every staple that does not bind the
certificate to a signed slot of a confirmed batch."""
from __future__ import annotations

import dataclasses

import pytest
from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from milagro_tls.chain.batchverify import BatchSlotEmpty, batch_root, read_batch_input, verify_batch_slot
from milagro_tls.chain.errors import (AnchorTooShallow, BadSignature, DigestMismatch, MalformedAnchor,
                                      ProofMismatch, WrongKey)
from milagro_tls.chain.tx import parse_tx
from milagro_tls.chain.verify import verify_anchor
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.locator import Locator
from milagro_tls.identity.marker import Marker, MarkerType

from .support import Batcher, bip341_sighash, headers_of


@pytest.fixture(scope="module")
def anchored(world, tmp_path_factory):
    """Four PATs in one mined batch; PAT 3 did not answer."""
    batcher = Batcher.create(world.source, tmp_path_factory.mktemp("verifier"))
    pats = batcher.new_pats(4)
    batch, _ = batcher.run(pats, absent={3})
    for pat in pats[:3]:
        pat.confirm(world.source)
    locals_ = [LocalIdentity.from_batch_pat(pat, world.source) for pat in pats[:3]]
    return batcher, batch, pats, locals_


def _check(local, *, locator=None, certificate=None, proof=None, headers, **options):
    return verify_anchor(locator or local.locator, certificate or local.certificate, proof or local.proof,
                         headers, **options)


def test_the_staple_verifies(world, anchored):
    _, batch, pats, locals_ = anchored
    headers = headers_of(world.source)
    for position, local in enumerate(locals_):
        identity = _check(local, headers=headers)
        assert identity.locator.batch_slot.position == position
        slot = verify_batch_slot(local.locator, local.certificate, local.proof, headers)
        assert slot.root == batch.root and slot.pat_count == 4 and slot.nonce_point == local.nonce_point
        spent = [(out.value, out.script_pubkey) for out in local.proof.spent_outputs]
        assert slot.sighash == bip341_sighash(local.proof.tx, 0, spent, batch.leaf)


def test_the_pat_that_did_not_answer_has_an_empty_slot(world, anchored):
    _, batch, pats, locals_ = anchored
    locator = dataclasses.replace(locals_[0].locator, body=Locator.taproot_batch(
        network=world.source.network, txid=batch.txid, input_index=0, block_hash=locals_[0].locator.block_hash,
        position=3, proof=batch.tree.inclusion_proof(3)).body)
    with pytest.raises(BatchSlotEmpty):
        _check(locals_[0], locator=locator, certificate=pats[3].certificate, headers=headers_of(world.source))


def _locator_at(local, position, proof):
    return Locator.taproot_batch(network=local.locator.network, txid=local.locator.txid, input_index=0,
                                 block_hash=local.locator.block_hash, position=position, proof=proof)


def test_refusals(world, anchored):
    _, batch, pats, locals_ = anchored
    headers = headers_of(world.source)
    local, other = locals_[0], locals_[1]
    no_batch_key = dataclasses.replace(local.certificate, batch_key=None)
    other_batch_key = dataclasses.replace(local.certificate, batch_key=pats[1].certificate.pubkey[1:])
    tx = parse_tx(local.proof.tx)
    spent = local.proof.spent_outputs[0]
    cases = [
        (WrongKey, "names no batch key", dict(certificate=no_batch_key)),
        (WrongKey, "TBS key is not the batch key", dict(certificate=other_batch_key)),
        (WrongKey, "not the certificate's key", dict(certificate=other.certificate)),
        (WrongKey, "not the certificate's key", dict(locator=_locator_at(local, 1, batch.tree.inclusion_proof(0)))),
        (DigestMismatch, "not in the batch root", dict(locator=_locator_at(local, 0, batch.tree.inclusion_proof(1)))),
        (MalformedAnchor, "outside a leaf", dict(locator=_locator_at(local, 4, batch.tree.inclusion_proof(0)))),
        (MalformedAnchor, "input the transaction does not have",
         dict(locator=dataclasses.replace(local.locator, input_index=1))),
        (BadSignature, "does not verify",
         dict(proof=dataclasses.replace(local.proof, spent_outputs=(dataclasses.replace(spent, value=spent.value + 1),)))),
        (WrongKey, "do not open the spent output",
         dict(proof=dataclasses.replace(local.proof, spent_outputs=(dataclasses.replace(
             spent, script_pubkey=b"\x51\x20" + bytes(31) + b"\x01"),)))),
        (MalformedAnchor, "one spent output per input", dict(proof=dataclasses.replace(local.proof, spent_outputs=()))),
    ]
    for error, message, changes in cases:
        with pytest.raises(error, match=message):
            _check(local, headers=headers, **changes)
    # A witness other than the block's (here: PAT 0's signature emptied) breaks the witness commitment.
    items = [bytes(i) for i in tx.vin[0].witness.items]
    items[3] = b""
    tx.vin[0].witness = Witness(items)
    with pytest.raises(ProofMismatch, match="witness commitment"):
        _check(local, proof=dataclasses.replace(local.proof, tx=tx.serialize()), headers=headers)
    with pytest.raises(AnchorTooShallow):
        _check(local, headers=headers, min_confirmations=100)


def test_the_batch_root_must_be_the_one_type_2_marker():
    def tx_with(*scripts):
        return Transaction(version=2, vin=[TransactionInput(bytes(32), 0)],
                           vout=[TransactionOutput(0, Script(s)) for s in scripts])
    root = bytes(range(32))
    assert batch_root(tx_with(Marker(MarkerType.BATCH_ROOT, root).script())) == root
    with pytest.raises(MalformedAnchor, match="not a batch root"):
        batch_root(tx_with(Marker(MarkerType.BIRTH_CERTIFICATE, root).script()))
    with pytest.raises(MalformedAnchor, match="2 MILAGRO markers"):
        batch_root(tx_with(*[Marker(MarkerType.BATCH_ROOT, root).script()] * 2))
    with pytest.raises(MalformedAnchor, match="0 MILAGRO markers"):
        batch_root(tx_with(b"\x6a\x04abcd"))


def test_read_batch_input_refuses_other_spends(anchored):
    _, _, _, locals_ = anchored
    tx = parse_tx(locals_[0].proof.tx)
    items = [bytes(i) for i in tx.vin[0].witness.items]
    for bad, message in ((items[1:], "witness has 6 items"), (items + [b"\x50"], "control block"),
                         (items[:-2] + [items[-2] + b"\x51\xa2", items[-1]], "not a batch leaf")):
        tx.vin[0].witness = Witness(bad)
        with pytest.raises(MalformedAnchor, match=message):
            read_batch_input(tx, 0)
