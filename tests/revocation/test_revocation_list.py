"""A TBS's revocation lists (type 0x04 chain): a non-membership proof against the current list
shows a PAT unrevoked; a revoked digest has no proof; a proof against the list before the
revocation is stale once the newer link is on the chain."""
from __future__ import annotations

import hashlib

import pytest

from milagro_tls.chain.errors import AnchorRevoked
from milagro_tls.chain.revocation_list import (REVOCATION_LIST, RevocationListStale, check_not_revoked_in_list,
                                               prove_not_revoked, revocation_list_root, sorted_revocation_list)
from milagro_tls.chain.rootchain import follow_root_chain
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.party import Party
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.merkle import EMPTY_ROOT, merkle_root


def _digest(n: int) -> bytes:
    return hashlib.sha256(b"certificate %d" % n).digest()


def test_sorted_list_and_root_recomputed():
    digests = [_digest(n) for n in (3, 1, 2, 1)]
    leaves = sorted_revocation_list(digests)
    assert leaves == tuple(sorted({_digest(1), _digest(2), _digest(3)}))
    assert revocation_list_root(digests) == merkle_root(list(leaves))
    assert revocation_list_root([]) == EMPTY_ROOT
    with pytest.raises(ValueError):
        sorted_revocation_list([b"\x00" * 31])


def test_current_list_decides_and_an_older_one_is_stale(own_world):
    world = own_world
    source = world.source
    tbs = Party.create(world.home, source, role="tbs", name="tbs.example", root_chains=(REVOCATION_LIST,))
    headers = world.headers()
    identity, proof = resolve_anchor(tbs.locator, tbs.certificate, source, headers)
    anchorer = RootAnchorer(world.home, "tbs.example", source)
    pat, other = _digest(100), _digest(200)

    # Nothing anchored yet: nobody is revoked, the proof is against the empty list.
    view = follow_root_chain(identity, proof.tx, REVOCATION_LIST, source, headers)
    check_not_revoked_in_list(pat, prove_not_revoked([], pat), EMPTY_ROOT, view)

    first = [_digest(1), _digest(2)]
    anchorer.anchor(REVOCATION_LIST, revocation_list_root(first))
    source.mine(1)
    view = follow_root_chain(identity, proof.tx, REVOCATION_LIST, source, headers)
    old_proof = prove_not_revoked(first, pat)
    check_not_revoked_in_list(pat, old_proof, revocation_list_root(first), view)
    with pytest.raises(RevocationListStale, match="no list anchored yet|not the TBS's current"):
        check_not_revoked_in_list(pat, prove_not_revoked([], pat), EMPTY_ROOT, view)

    second = first + [pat]
    with pytest.raises(AnchorRevoked, match="on the revocation list"):
        prove_not_revoked(second, pat)
    anchorer.anchor(REVOCATION_LIST, revocation_list_root(second))
    source.mine(1)
    view = follow_root_chain(identity, proof.tx, REVOCATION_LIST, source, headers)
    assert view.current.number == 2 and view.current.root == revocation_list_root(second)
    # The PAT's proof against the list before its revocation is refused now.
    with pytest.raises(RevocationListStale, match="link 2"):
        check_not_revoked_in_list(pat, old_proof, revocation_list_root(first), view)
    # A proof for another digest, passed off for the PAT against the current root: refused.
    other_proof = prove_not_revoked(second, other)
    with pytest.raises(AnchorRevoked, match="not shown absent"):
        check_not_revoked_in_list(pat, other_proof, revocation_list_root(second), view)
    check_not_revoked_in_list(other, other_proof, revocation_list_root(second), view)
