"""The TBS's revocation answer: answer_for (revoked from the store, anchored or not; a proof
against the anchored list otherwise), its strict JSON both ways, and the newest-link rule of
check_not_revoked_in_list (a pending link is current)."""
from __future__ import annotations

import copy
import hashlib

import pytest

from milagro_tls.chain.errors import AnchorRevoked
from milagro_tls.chain.revocation_list import (REVOCATION_LIST, RevocationAnswer, RevocationListStale, answer_for,
                                               check_not_revoked_in_list, revocation_list_root)
from milagro_tls.chain.rootchain import RootChainView, RootLink, _ChainOutput
from milagro_tls.errors import MalformedInput
from milagro_tls.merkle import EMPTY_ROOT, verify_non_membership


def _digest(n: int) -> bytes:
    return hashlib.sha256(b"certificate %d" % n).digest()


TXID = bytes(range(32))
ANCHORED = [_digest(n) for n in range(1, 6)]


def test_revoked_in_the_store_is_revoked_anchored_or_not():
    pending = _digest(9)                          # recorded, its list not anchored yet
    assert answer_for(ANCHORED, set(ANCHORED) | {pending}, pending, (TXID, 2)) == RevocationAnswer(True)
    assert answer_for(ANCHORED, set(ANCHORED), ANCHORED[0], (TXID, 2)).revoked
    assert RevocationAnswer(True).to_json() == {"revoked": True}


def test_unrevoked_answer_proves_absence_from_the_anchored_list():
    digest = _digest(100)
    answer = answer_for(ANCHORED, set(ANCHORED) | {_digest(9)}, digest, (TXID, 3))
    assert not answer.revoked and answer.root == revocation_list_root(ANCHORED)
    assert (answer.link_txid, answer.link_number) == (TXID, 3)
    verify_non_membership(digest, answer.proof, answer.root)
    doc = answer.to_json()
    assert doc["link"] == {"txid": TXID[::-1].hex(), "number": 3} and doc["root"] == answer.root.hex()
    assert RevocationAnswer.from_json(doc) == answer


def test_before_any_list_the_answer_is_against_the_empty_root():
    answer = answer_for([], set(), _digest(1), None)
    assert answer.root == EMPTY_ROOT and answer.link_txid is None and answer.proof.size == 0
    assert answer.to_json()["link"] is None
    assert RevocationAnswer.from_json(answer.to_json()) == answer
    with pytest.raises(ValueError, match="has a link"):
        answer_for(ANCHORED, set(ANCHORED), _digest(100), None)


def _mutations():
    good = answer_for(ANCHORED, set(ANCHORED), _digest(100), (TXID, 3)).to_json()

    def change(fn):
        doc = copy.deepcopy(good)
        fn(doc)
        return doc
    yield "not an object", ["revoked"]
    yield "revoked not bool", {"revoked": 1}
    yield "revoked with extras", {"revoked": True, "root": good["root"]}
    yield "missing proof", change(lambda d: d.pop("proof"))
    yield "extra field", change(lambda d: d.update(note="x"))
    yield "short root", change(lambda d: d.update(root=d["root"][:-2]))
    yield "uppercase root", change(lambda d: d.update(root=d["root"].upper()))
    yield "link without number", change(lambda d: d["link"].pop("number"))
    yield "link number zero", change(lambda d: d["link"].update(number=0))
    yield "link number bool", change(lambda d: d["link"].update(number=True))
    yield "link txid not hex", change(lambda d: d["link"].update(txid="zz" * 32))
    yield "no link for a non-empty root", change(lambda d: d.update(link=None))
    yield "proof not an object", change(lambda d: d.update(proof=[]))
    yield "proof neighbour leaf not 32 bytes", change(lambda d: d["proof"]["left"].update(leaf="00"))
    yield "path too long", change(lambda d: d["proof"]["left"]["proof"].update(path=["00" * 32] * 65))


@pytest.mark.parametrize("what,doc", list(_mutations()), ids=[m[0] for m in _mutations()])
def test_malformed_answers_are_refused(what, doc):
    with pytest.raises(MalformedInput):
        RevocationAnswer.from_json(doc)


def _view(links=(), pending_root=None) -> RootChainView:
    made = tuple(RootLink(i + 1, root, bytes([i + 1]) * 32, b"\x00" * 32, 100 + i) for i, root in enumerate(links))
    return RootChainView(root_type=REVOCATION_LIST, chain_key=b"\x02" * 33, certificate_digest=b"\x00" * 32,
                         birth_txid=b"\x00" * 32, links=made, pending_txid=b"\x09" * 32 if pending_root else None,
                         pending_root=pending_root, complete=True, _end=_ChainOutput(b"\x00" * 32, 1, 1000))


def test_the_newest_link_pending_included_is_the_current_list():
    pat = _digest(100)
    first, second = ANCHORED[:2], ANCHORED[:2] + [pat]
    old = answer_for(first, set(first), pat, (TXID, 1))
    confirmed_only = _view([revocation_list_root(first)])
    check_not_revoked_in_list(pat, old.proof, old.root, confirmed_only)
    # The TBS broadcast list 2 (naming the PAT): from then on the old proof is stale.
    with_pending = _view([revocation_list_root(first)], pending_root=revocation_list_root(second))
    with pytest.raises(RevocationListStale, match="pending link 2"):
        check_not_revoked_in_list(pat, old.proof, old.root, with_pending)
    # Another PAT's proof against the pending list is good.
    other = _digest(200)
    fine = answer_for(second, set(second), other, (TXID, 2))
    check_not_revoked_in_list(other, fine.proof, fine.root, with_pending)
    # A pending first list makes the empty root stale.
    empty = answer_for([], set(), other, None)
    check_not_revoked_in_list(other, empty.proof, EMPTY_ROOT, _view())
    with pytest.raises(RevocationListStale):
        check_not_revoked_in_list(other, empty.proof, EMPTY_ROOT, _view(pending_root=revocation_list_root(first)))
    with pytest.raises(AnchorRevoked, match="not shown absent"):
        check_not_revoked_in_list(pat, fine.proof, fine.root, with_pending)
