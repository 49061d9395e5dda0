"""Lying chain sources, one table: the SPV header chain is the only authority.

Each row is a source that lies in one way (or a staple made from one) and the exact refusal the
verifier gives. After every row the verifier's header chain is still the honest best chain, and
the honest source still verifies the same anchors (so no refusal comes from a broken fixture).
Related single cases elsewhere: tests/chain/test_verifier.py (stapled proofs that lie about their
height, block or transaction), tests/chain/test_sync_policy.py (a reorg under a verifier),
tests/batch/test_batch_verifier.py (staples that do not bind a batch slot)."""
from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import pytest
from embit.script import Witness

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import (AnchorNotFound, HeaderRejected, ProofMismatch,
                                      SourceBehind, UnknownBlock)
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.proof import fetch_anchor_proof
from milagro_tls.chain.source import Tip
from milagro_tls.chain.tx import parse_tx
from milagro_tls.chain.verify import resolve_anchor, verify_anchor
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party

from batch.support import Batcher
from helpers.sources import DelegatingSource, LaggingSource, TxSwappingSource

REGTEST_BITS = 0x207FFFFF


# --- the liars ----------------------------------------------------------------------------------
class ExtendingSource(DelegatingSource):
    """Claims one more block on top of the honest tip, whose header it made up."""

    def __init__(self, inner, forged: bytes) -> None:
        super().__init__(inner)
        self.forged = forged
        self.height = inner.tip().height + 1

    def tip(self):
        return Tip(self.height, BlockHeader.parse(self.forged).hash)

    def header(self, height):
        return self.forged if height == self.height else self.inner.header(height)

    def headers(self, start, count):
        return [self.header(h) for h in range(start, min(start + count, self.height + 1))]


# --- forging helpers ------------------------------------------------------------------------------
def _forged_header(source, *, bits: int, good_pow: bool) -> bytes:
    """A header on the honest tip with every field plausible (version, prev, a merkle root, a
    later time, the bits given); the nonce searched so the hash does (not) meet the bits' target."""
    tip = BlockHeader.parse(source.header(source.tip().height))
    header = BlockHeader(tip.version, tip.hash, os.urandom(32), tip.time + 1, bits, 0)
    for nonce in range(1 << 20):
        candidate = header._replace(nonce=nonce)
        meets = int.from_bytes(candidate.hash, "little") <= candidate.target
        if meets == good_pow:
            return candidate.serialize()
    raise AssertionError("no nonce found")


def _strip_witness(raw: bytes) -> bytes:
    tx = parse_tx(raw)
    for vin in tx.vin:
        vin.witness = Witness([])
    stripped = tx.serialize()
    assert parse_tx(stripped).txid() == parse_tx(raw).txid() and len(stripped) < len(raw)
    return stripped


def _honest_headers(source) -> HeaderChain:
    headers = HeaderChain(":memory:", source.network)
    headers.sync_from(source)
    return headers


@pytest.fixture(scope="module")
def ctx(world, tmp_path_factory):
    base = tmp_path_factory.mktemp("lying")
    batcher = Batcher.create(world.source, base / "batch")
    pats = batcher.new_pats(2)
    batch, mined = batcher.run(pats)
    for pat in pats:
        pat.confirm(world.source)
    pat = LocalIdentity.from_batch_pat(pats[0], world.source)
    # A weaker branch: the same genesis, fewer blocks, a party anchored on it alone.
    weak = EmbeddedSource.open(base / "weak")
    weak.mine(101)
    weak_party = Party.create(base / "weak-home", weak, role="service", name="weak.example")
    assert weak.tip().height < world.source.tip().height
    yield SimpleNamespace(world=world, source=world.source, alice=world.parties["alice"], pat=pat, batch_tx=mined,
                          weak=weak, weak_party=weak_party)
    weak.close()


def _resolve_single(ctx, source, headers):
    alice = ctx.alice
    return resolve_anchor(alice.locator, alice.certificate, source, headers)


def _resolve_batch(ctx, source, headers):
    return resolve_anchor(ctx.pat.locator, ctx.pat.certificate, source, headers)


# --- the table: (name, what the liar does, expected error, message) -------------------------------
def case_tip_behind(ctx, headers):
    _resolve_single(ctx, LaggingSource(ctx.source, hidden=2), headers)


def case_tx_under_headers_with_less_work(ctx, headers):
    party = ctx.weak_party
    resolve_anchor(party.locator, party.certificate, ctx.weak, headers)


def case_staple_from_a_branch_with_less_work(ctx, headers):
    party = ctx.weak_party
    weak_headers = _honest_headers(ctx.weak)
    proof = fetch_anchor_proof(ctx.weak, party.locator.txid, party.locator.block_hash,
                               weak_headers.height_of(party.locator.block_hash))
    verify_anchor(party.locator, party.certificate, proof, weak_headers)          # true on its own branch
    verify_anchor(party.locator, party.certificate, proof, headers)


def case_forged_header_with_bad_pow(ctx, headers):
    _resolve_single(ctx, ExtendingSource(ctx.source, _forged_header(ctx.source, bits=REGTEST_BITS, good_pow=False)),
                    headers)


def case_forged_header_with_wrong_bits(ctx, headers):
    # Valid PoW for the (harder) bits it claims, but not the bits the chain demands at that height.
    _resolve_single(ctx, ExtendingSource(ctx.source, _forged_header(ctx.source, bits=0x2000FFFF, good_pow=True)),
                    headers)


def case_single_anchor_with_stripped_witness(ctx, headers):
    alice = ctx.alice
    _resolve_single(ctx, TxSwappingSource(ctx.source, alice.locator.txid, _strip_witness(alice.anchor_tx)), headers)


def case_batch_tx_with_stripped_witness(ctx, headers):
    txid = ctx.pat.locator.txid
    _resolve_batch(ctx, TxSwappingSource(ctx.source, txid, _strip_witness(ctx.batch_tx)), headers)


def case_stapled_batch_tx_with_stripped_witness(ctx, headers):
    proof = dataclasses.replace(ctx.pat.proof, tx=_strip_witness(ctx.pat.proof.tx))
    verify_anchor(ctx.pat.locator, ctx.pat.certificate, proof, headers)


def case_batch_tx_under_a_forged_tip(ctx, headers):
    _resolve_batch(ctx, ExtendingSource(ctx.source, _forged_header(ctx.source, bits=REGTEST_BITS, good_pow=False)),
                   headers)


CASES = [
    (case_tip_behind, SourceBehind, "is behind our best header chain"),
    (case_tx_under_headers_with_less_work, SourceBehind, "not on our best header chain"),
    (case_staple_from_a_branch_with_less_work, UnknownBlock, "is not in the local header chain"),
    (case_forged_header_with_bad_pow, HeaderRejected, "high-hash"),
    (case_forged_header_with_wrong_bits, HeaderRejected, "bad-diffbits"),
    (case_single_anchor_with_stripped_witness, ProofMismatch, "witness does not match the block's witness commitment"),
    (case_batch_tx_with_stripped_witness, ProofMismatch, "witness does not match the block's witness commitment"),
    (case_stapled_batch_tx_with_stripped_witness, ProofMismatch, "witness does not match the block's witness commitment"),
    (case_batch_tx_under_a_forged_tip, HeaderRejected, "high-hash"),
]


@pytest.mark.parametrize("case, error, message", CASES, ids=[c[0].__name__[5:] for c in CASES])
def test_the_verifier_refuses_every_lying_source(ctx, case, error, message):
    headers = _honest_headers(ctx.source)
    tip_before = headers.tip()
    with pytest.raises(error, match=message) as info:
        case(ctx, headers)
    assert not isinstance(info.value, AnchorNotFound) or error is AnchorNotFound
    # The lie moved nothing: our best chain is the honest one, and the honest source still verifies.
    assert headers.tip() == tip_before == (ctx.source.tip().height, ctx.source.tip().block_hash)
    assert _resolve_single(ctx, ctx.source, headers)[0].locator == ctx.alice.locator
    assert _resolve_batch(ctx, ctx.source, headers)[0].locator == ctx.pat.locator


def test_the_table_covers_the_issue(ctx):
    names = {c[0].__name__ for c in CASES}
    assert {"case_tx_under_headers_with_less_work", "case_forged_header_with_bad_pow", "case_tip_behind",
            "case_batch_tx_with_stripped_witness"} <= names
