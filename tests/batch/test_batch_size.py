"""The issue's targets, measured on mined batches: vB per PAT (its share of the funding transaction
included, from the weights of the transactions as the block holds them) at most 36 at N = 32 and 30
at N = 128, and a staple (certificate + proof) of at most 16 KiB at N = 128 that passes the full
verifier, witness check included."""
from __future__ import annotations

import pytest

from milagro_tls.chain.verify import verify_anchor
from milagro_tls.handshake.messages import DEFAULT_MAX_STAPLE_SIZE
from milagro_tls.identity.batch import batch_weight
from milagro_tls.identity.local import LocalIdentity

from .support import Batcher, headers_of, mined_tx, weight


@pytest.fixture(scope="module")
def batcher(world, tmp_path_factory):
    return Batcher.create(world.source, tmp_path_factory.mktemp("sizes"))


def _vsize(raw: bytes) -> int:
    return -(-weight(raw) // 4)


@pytest.mark.parametrize("n, target", [(32, 36), (128, 30)])
def test_vbytes_per_pat_from_the_mined_transactions(world, batcher, n, target):
    pats = batcher.new_pats(n)
    batch, _ = batcher.run(pats)
    funding, mined = mined_tx(world.source, batch.funding.txid), mined_tx(world.source, batch.txid)
    assert weight(mined) == batch_weight(n, n)
    per_pat = (_vsize(funding) + _vsize(mined)) / n
    print(f"\nN={n}: funding {_vsize(funding)} vB + batch {_vsize(mined)} vB = {per_pat:.2f} vB per PAT")
    assert per_pat <= target
    if n == 128:
        pats[0].confirm(world.source)
        local = LocalIdentity.from_batch_pat(pats[0], world.source)
        verify_anchor(local.locator, local.certificate, local.proof, headers_of(world.source))
        staple = len(local.certificate_bytes) + len(local.proof_bytes)
        print(f"N=128 staple: certificate {len(local.certificate_bytes)} + proof {len(local.proof_bytes)} "
              f"= {staple} bytes; locator {len(local.locator.encode())} bytes")
        assert staple <= DEFAULT_MAX_STAPLE_SIZE == 16 * 1024


def test_absent_pats_cost_less(world, batcher):
    pats = batcher.new_pats(32)
    batch, _ = batcher.run(pats, absent=set(range(0, 32, 4)))
    mined = mined_tx(world.source, batch.txid)
    assert weight(mined) == batch_weight(32, 24) == batch_weight(32, 32) - 8 * 64
