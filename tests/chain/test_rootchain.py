"""follow_root_chain against roots anchored on the embedded chain: the real chain verifies, a
stranger's anchor of the same root is not in it, and every malformed link a lying source can
serve is refused by name."""
from __future__ import annotations

import dataclasses
import hashlib

import coincurve
import pytest
from embit.script import Script, Witness
from embit.transaction import SIGHASH, Transaction, TransactionInput, TransactionOutput

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import AnchorNotFound, NoRootChain, RootChainError, RootNotInChain
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.rootchain import follow_root_chain
from milagro_tls.chain.sighash import SIGHASH_ALL, p2wpkh_script, p2wpkh_sighash
from milagro_tls.chain.source import TxStatus
from milagro_tls.chain.tx import parse_tx
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.anchor import CHAIN_VALUE
from milagro_tls.identity.marker import Marker, MarkerType
from milagro_tls.identity.party import Party
from milagro_tls.identity.rootchain import RootAnchorer

from helpers.sources import DelegatingSource

LOG = MarkerType.ACTIVITY_LOG_ROOT


def _root(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


ROOTS = [_root(f"period {i}") for i in range(3)]


@dataclasses.dataclass
class Chain:
    source: EmbeddedSource
    home: object
    party: Party
    identity: object
    birth_tx: bytes
    links: list
    stranger: Party

    def headers(self) -> HeaderChain:
        return HeaderChain(":memory:", self.source.network)

    def follow(self, source=None, **options):
        return follow_root_chain(self.identity, self.birth_tx, LOG, source or self.source, self.headers(),
                                 **options)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("rootchain")
    source = EmbeddedSource.open(base / "chain")
    source.mine(110)
    home = base / "home"
    party = Party.create(home, source, role="idp", name="idp.example", root_chains=(LOG,))
    anchorer = RootAnchorer(home, "idp.example", source)
    links = [anchorer.anchor(LOG, ROOTS[0]), anchorer.anchor(LOG, ROOTS[1])]
    source.mine(1)
    links.append(anchorer.anchor(LOG, ROOTS[2]))
    source.mine(1)
    # A stranger with its own keys anchors the same root as a type-0x03 marker in its own chain.
    stranger = Party.create(home, source, role="idp", name="stranger.example", root_chains=(LOG,))
    RootAnchorer(home, "stranger.example", source).anchor(LOG, _root("stranger only"))
    RootAnchorer(home, "stranger.example", source).anchor(LOG, ROOTS[0])
    source.mine(1)
    identity, proof = resolve_anchor(party.locator, party.certificate, source, HeaderChain(":memory:", source.network))
    yield Chain(source, home, party, identity, proof.tx, links, stranger)
    source.close()


def test_the_chain_of_three_roots_verifies_and_the_last_is_current(chain):
    view = chain.follow()
    assert [(link.number, link.root, link.txid) for link in view.links] == [
        (i + 1, ROOTS[i], chain.links[i].txid) for i in range(3)]
    assert view.complete and view.pending_txid is None and view.pending_root is None
    assert view.current == view.links[-1]
    assert view.is_current(ROOTS[2]) and not view.is_current(ROOTS[0])
    first = view.find(ROOTS[0])
    assert first.number == 1 and chain.source.tx_status(first.txid).block_hash == first.block_hash
    assert view.links[0].height == view.links[1].height == view.links[2].height - 1


def test_a_strangers_anchor_of_the_same_root_is_not_in_the_chain(chain):
    stranger_txid = RootAnchorer(chain.home, "stranger.example", chain.source).latest(LOG).txid
    tx = parse_tx(chain.source.transaction(stranger_txid))
    assert Marker.parse_script(tx.vout[0].script_pubkey.data) == Marker(LOG, ROOTS[0])   # really there
    view = chain.follow()
    with pytest.raises(RootNotInChain, match="is not in the party's ACTIVITY_LOG_ROOT chain"):
        view.find(_root("stranger only"))
    assert view.find(ROOTS[0]).txid == chain.links[0].txid       # ours, not the stranger's
    # In the stranger's own chain the root verifies, and is its current one.
    identity, proof = resolve_anchor(chain.stranger.locator, chain.stranger.certificate, chain.source,
                                     chain.headers())
    theirs = follow_root_chain(identity, proof.tx, LOG, chain.source, chain.headers())
    assert theirs.is_current(ROOTS[0]) and theirs.find(ROOTS[0]).txid == stranger_txid


def test_a_source_pointing_at_the_strangers_transaction_is_refused(chain):
    stranger_txid = RootAnchorer(chain.home, "stranger.example", chain.source).latest(LOG).txid

    class Lying(DelegatingSource):
        def outspend_unverified(self, txid, vout):
            if (txid, vout) == (chain.links[-1].txid, 1):
                return stranger_txid
            return self.inner.outspend_unverified(txid, vout)

    with pytest.raises(RootChainError, match="input 0 does not spend the previous chain output"):
        chain.follow(Lying(chain.source))


def test_no_chain_of_that_type(chain):
    with pytest.raises(NoRootChain, match="names no REVOCATION_LIST_ROOT chain"):
        follow_root_chain(chain.identity, chain.birth_tx, MarkerType.REVOCATION_LIST_ROOT, chain.source,
                          chain.headers())
    with pytest.raises(ValueError, match="not a root chain type"):
        follow_root_chain(chain.identity, chain.birth_tx, MarkerType.BIRTH_CERTIFICATE, chain.source,
                          chain.headers())


def test_the_wrong_birth_transaction_is_refused(chain):
    with pytest.raises(RootChainError, match="not the identity's anchor"):
        follow_root_chain(chain.identity, chain.stranger.anchor_tx, LOG, chain.source, chain.headers())


def test_a_bounded_walk_continues_from_the_previous_view(chain):
    partial = chain.follow(max_links=2)
    assert [link.root for link in partial.links] == ROOTS[:2] and not partial.complete
    with pytest.raises(RootChainError, match="stopped after 2 links"):
        partial.current
    with pytest.raises(RootChainError):
        partial.is_current(ROOTS[1])
    with pytest.raises(RootNotInChain, match="has not reached the chain's end"):
        partial.find(ROOTS[2])
    rest = chain.follow(previous=partial, max_links=2)
    assert rest.complete and rest.links == chain.follow().links
    with pytest.raises(ValueError, match="another party's"):
        follow_root_chain(chain.identity, chain.birth_tx, LOG, chain.source, chain.headers(),
                          previous=dataclasses.replace(partial, root_type=MarkerType.BATCH_ROOT))


def test_min_confirmations_leaves_the_shallow_link_pending(chain):
    # Link 3 was mined one block after links 1 and 2: one confirmation fewer.
    depth = chain.source.tip().height - chain.follow().links[2].height + 1
    view = chain.follow(min_confirmations=depth + 1)
    assert [link.root for link in view.links] == ROOTS[:2]
    assert (view.pending_txid, view.pending_root) == (chain.links[2].txid, ROOTS[2])
    assert view.is_current(ROOTS[1])


# --- links a lying source serves as the unconfirmed next link ------------------------------

def _craft(chain: Chain, *, marker_type=LOG, sign_with=None, witness_key=None, sighash_type=SIGHASH_ALL,
           chain_output=True, spend=None, value=CHAIN_VALUE) -> bytes:
    """A transaction spending the chain's unspent output, signed as told (by the chain key unless
    ``sign_with``), the kind only the chain key's holder or a lying source could produce."""
    key = chain.party.chain_key()
    signer = sign_with or key._private
    pubkey = witness_key or key.public_key
    spend = spend or (chain.links[-1].txid, 1)
    outputs = [TransactionOutput(0, Script(Marker(marker_type, _root("crafted")).script()))]
    if chain_output:
        outputs.append(TransactionOutput(CHAIN_VALUE, Script(p2wpkh_script(key.public_key))))
    tx = Transaction(version=2, vin=[TransactionInput(spend[0][::-1], spend[1])], vout=outputs, locktime=0)
    sighash = p2wpkh_sighash(tx, 0, pubkey, value, sighash_type)
    tx.vin[0].witness = Witness([signer.sign(sighash, hasher=None) + bytes([sighash_type]), pubkey])
    return tx.serialize()


def _serving(chain: Chain, raw: bytes) -> DelegatingSource:
    crafted = parse_tx(raw).hash()

    class Lying(DelegatingSource):
        def outspend_unverified(self, txid, vout):
            if (txid, vout) == (chain.links[-1].txid, 1):
                return crafted
            return self.inner.outspend_unverified(txid, vout)

        def tx_status(self, txid, block_hash=None):
            if txid == crafted:
                return TxStatus(txid, None, None)
            return self.inner.tx_status(txid, block_hash)

        def transaction(self, txid, block_hash=None):
            return raw if txid == crafted else self.inner.transaction(txid, block_hash)

    return Lying(chain.source)


def test_an_honest_unconfirmed_link_shows_as_pending(chain):
    raw = _craft(chain)
    view = chain.follow(_serving(chain, raw))
    assert (view.pending_txid, view.pending_root) == (parse_tx(raw).hash(), _root("crafted"))
    assert view.is_current(ROOTS[2])                     # the latest *confirmed* root
    with pytest.raises(RootNotInChain, match="not confirmed yet"):
        view.find(_root("crafted"))


STRANGER_KEY = coincurve.PrivateKey(hashlib.sha256(b"stranger").digest())


@pytest.mark.parametrize("changes, message", [
    (dict(sign_with=STRANGER_KEY, witness_key=STRANGER_KEY.public_key.format()),
     "not signed by the certificate's chain key"),
    (dict(sign_with=STRANGER_KEY), "signature does not verify"),
    (dict(value=CHAIN_VALUE + 1), "signature does not verify"),
    (dict(sighash_type=SIGHASH.NONE), "not SIGHASH_ALL"),
    (dict(marker_type=MarkerType.REVOCATION_LIST_ROOT), "carries a REVOCATION_LIST_ROOT marker"),
    (dict(marker_type=MarkerType.BIRTH_CERTIFICATE), "carries a BIRTH_CERTIFICATE marker"),
    (dict(chain_output=False), "no chain output to the chain key at output 1"),
])
def test_a_bad_link_is_refused(chain, changes, message):
    with pytest.raises(RootChainError, match=message):
        chain.follow(_serving(chain, _craft(chain, **changes)))


def test_a_link_without_marker_is_refused(chain):
    raw = _craft(chain)
    tx = parse_tx(raw)
    tx.vout[0] = TransactionOutput(0, Script(b"\x6a\x04test"))           # a foreign OP_RETURN
    key = chain.party.chain_key()
    sighash = p2wpkh_sighash(tx, 0, key.public_key, CHAIN_VALUE)
    tx.vin[0].witness = Witness([key._private.sign(sighash, hasher=None) + bytes([SIGHASH_ALL]), key.public_key])
    with pytest.raises(RootChainError, match="exactly one MILAGRO marker, at output 0"):
        chain.follow(_serving(chain, tx.serialize()))


def test_a_source_serving_another_transaction_under_the_txid_is_refused(chain):
    lying = _serving(chain, _craft(chain))
    different = _craft(chain, chain_output=False)
    lying.transaction = lambda txid, block_hash=None: different
    with pytest.raises(RootChainError, match="returned another transaction"):
        chain.follow(lying)


def test_a_link_the_source_places_in_a_block_is_proven_against_it(chain):
    lying = _serving(chain, _craft(chain))
    tip = chain.source.tip()
    inner_status = type(lying).tx_status
    lying.tx_status = lambda txid, block_hash=None: (
        TxStatus(txid, tip.block_hash, tip.height) if txid == parse_tx(_craft(chain)).hash()
        else inner_status(lying, txid, block_hash))
    with pytest.raises(AnchorNotFound, match="not in the block"):
        chain.follow(lying)
