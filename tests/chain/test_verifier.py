"""The anchor verifier against identities mined on the embedded chain: every failure class by a crafted case."""
from __future__ import annotations

import dataclasses

import pytest
from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import (AnchorNotFound, AnchorTooShallow, AnchorUnconfirmed, BadSignature,
                                      DigestMismatch, MalformedAnchor, ProofMismatch, UnknownBlock,
                                      UnknownMarkerType, WrongKey)
from milagro_tls.chain.header import BlockHeader
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.proof import AnchorProof, SpentOutput, fetch_anchor_proof
from milagro_tls.chain.sighash import SIGHASH_ALL, p2wpkh_sighash
from milagro_tls.chain.tx import parse_tx
from milagro_tls.chain.verify import resolve_anchor, verify_anchor
from milagro_tls.ciphersuites.nonce import N, parse_der_signature
from milagro_tls.errors import MalformedInput
from milagro_tls.identity.anchor import anchor_funding_amount
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.identity.locator import Locator, LocatorKind
from milagro_tls.identity.marker import Marker, MarkerType
from milagro_tls.identity.party import Party
from milagro_tls.identity.wallet import AnchoringWallet

from helpers.sources import TxSwappingSource


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("verifier")
    source = EmbeddedSource.open(base / "chain")
    source.mine(110)
    party = Party.create(base / "home", source, role="service", name="echo.example")
    yield source, party, base
    source.close()


def _headers(source) -> HeaderChain:
    headers = HeaderChain(":memory:", source.network)
    headers.sync_from(source)
    return headers


def _proof(source, party) -> AnchorProof:
    loc = party.locator
    return fetch_anchor_proof(source, loc.txid, loc.block_hash, _headers(source).height_of(loc.block_hash))


def _der(r: int, s: int) -> bytes:
    def integer(v: int) -> bytes:
        body = v.to_bytes((v.bit_length() + 8) // 8, "big")
        return b"\x02" + bytes([len(body)]) + body
    body = integer(r) + integer(s)
    return b"\x30" + bytes([len(body)]) + body


def _other_valid_witness(party: Party) -> bytes:
    """The anchor with the same signature negated (n − s): still a valid ECDSA signature by the
    same key over the same sighash, so the txid is unchanged but the wtxid and the nonce sign differ."""
    tx = parse_tx(party.anchor_tx)
    r, s = parse_der_signature(bytes(tx.vin[0].witness.items[0])[:-1])
    tx.vin[0].witness = Witness([_der(r, N - s) + bytes([SIGHASH_ALL]), party.key.public_key])
    assert tx.hash() == parse_tx(party.anchor_tx).hash()
    return tx.serialize()


def test_anchored_identity_verifies_with_exact_nonce_point(chain):
    source, party, _ = chain
    identity, proof = resolve_anchor(party.locator, party.certificate, source,
                                     HeaderChain(":memory:", source.network))
    assert identity.certificate == party.certificate
    assert identity.confirmations >= 6
    assert identity.nonce_point == party.nonce_key().public_key.format()
    assert identity.seal == (party.locator.txid, 1)
    assert identity.warnings == ()          # only signet verifications carry a warning
    assert AnchorProof.decode(proof.encode()) == proof


class BlockDuringSync:
    """The source finds a block right after our first header sync: its tip is then ahead of ours."""

    def __init__(self, inner) -> None:
        self.inner, self.mined = inner, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def headers(self, start, count):
        answer = self.inner.headers(start, count)
        if not self.mined:
            self.mined = True
            self.inner.mine(1)
        return answer


def test_a_block_found_while_headers_sync_is_synced_again_not_refused(chain):
    source, party, _ = chain
    moving = BlockDuringSync(source)
    headers = HeaderChain(":memory:", source.network)
    identity, _ = resolve_anchor(party.locator, party.certificate, moving, headers)
    assert moving.mined and headers.tip()[1] == source.tip().block_hash
    assert identity.certificate == party.certificate


def test_verify_is_pure_given_a_stapled_proof(chain):
    source, party, _ = chain
    proof = _proof(source, party)
    headers = _headers(source)
    first = verify_anchor(party.locator, party.certificate, proof, headers)
    assert verify_anchor(party.locator, party.certificate, AnchorProof.decode(proof.encode()), headers) == first


def test_digest_mismatch_when_certificate_is_not_the_anchored_one(chain):
    source, party, _ = chain
    forged = BirthCertificate.from_json({**party.certificate.to_json(), "name": "your-bank.example"})
    with pytest.raises(DigestMismatch):
        verify_anchor(party.locator, forged, _proof(source, party), _headers(source))


def test_too_shallow_below_min_confirmations(chain):
    source, party, _ = chain
    headers = _headers(source)
    depth = headers.tip()[0] - headers.height_of(party.locator.block_hash) + 1
    with pytest.raises(AnchorTooShallow) as info:
        verify_anchor(party.locator, party.certificate, _proof(source, party), headers,
                      min_confirmations=depth + 1)
    assert info.value.confirmations == depth


def test_unknown_block_when_local_header_chain_is_behind(chain):
    source, party, _ = chain
    genesis_only = HeaderChain(":memory:", source.network)
    with pytest.raises(UnknownBlock):
        verify_anchor(party.locator, party.certificate, _proof(source, party), genesis_only)


def test_not_found_when_locator_names_another_block(chain):
    source, party, _ = chain
    wrong = dataclasses.replace(party.locator, block_hash=BlockHeader.parse(source.header(5)).hash)
    with pytest.raises(AnchorNotFound):
        resolve_anchor(wrong, party.certificate, source, HeaderChain(":memory:", source.network))


def test_bad_signature_when_spent_amount_is_wrong(chain):
    source, party, _ = chain
    proof = _proof(source, party)
    spent = proof.spent_outputs[0]
    lying = dataclasses.replace(proof, spent_outputs=(SpentOutput(spent.value + 1, spent.script_pubkey),))
    with pytest.raises(BadSignature):
        verify_anchor(party.locator, party.certificate, lying, _headers(source))


def test_malformed_when_locator_names_missing_input(chain):
    source, party, _ = chain
    wrong = dataclasses.replace(party.locator, input_index=3)
    with pytest.raises(MalformedAnchor):
        verify_anchor(wrong, party.certificate, _proof(source, party), _headers(source))


def test_malformed_proof_bytes_are_refused(chain):
    source, party, _ = chain
    raw = _proof(source, party).encode()
    for bad in (raw[:-1], raw + b"\x00", b"\x02" + raw[1:], b""):
        with pytest.raises(MalformedInput):
            AnchorProof.decode(bad)


def test_proof_with_unequal_branch_depths_is_refused(chain):
    source, party, _ = chain
    proof = _proof(source, party)
    short = dataclasses.replace(proof, coinbase_branch=proof.coinbase_branch[:-1])
    with pytest.raises(ProofMismatch):
        verify_anchor(party.locator, party.certificate, short, _headers(source))


def test_stapled_proof_with_modified_witness_is_refused(chain):
    source, party, _ = chain
    lying = dataclasses.replace(_proof(source, party), tx=_other_valid_witness(party))
    with pytest.raises(ProofMismatch, match="witness"):
        verify_anchor(party.locator, party.certificate, lying, _headers(source))


def test_source_serving_modified_witness_is_refused(chain):
    source, party, _ = chain
    lying = TxSwappingSource(source, party.locator.txid, _other_valid_witness(party))
    with pytest.raises(ProofMismatch, match="witness"):
        resolve_anchor(party.locator, party.certificate, lying, HeaderChain(":memory:", source.network))


def _mine_custom_anchor(source, base, marker_script: bytes, signer: IdentityKey, *, seal: bool = True,
                        sighash_type: int = SIGHASH_ALL) -> Locator:
    """Fund ``signer`` and mine a transaction it signs whose first output is ``marker_script``
    (then a seal to the signer unless ``seal`` is False), signed with ``sighash_type``."""
    wallet = AnchoringWallet(base / "craft-home", source)
    amount = anchor_funding_amount()
    wallet.ensure_funded(amount)
    funding = wallet.fund(signer.p2wpkh_script, amount)
    outputs = [TransactionOutput(0, Script(marker_script))]
    if seal:
        outputs.append(TransactionOutput(1_000, Script(signer.p2wpkh_script)))
    else:   # pay the rest elsewhere, as a transaction without a seal would
        outputs.append(TransactionOutput(1_000, Script(IdentityKey.generate().p2wpkh_script)))
    tx = Transaction(version=2, vin=[TransactionInput(funding.txid[::-1], 0, sequence=0xFFFFFFFD)],
                     vout=outputs, locktime=0)
    sighash = p2wpkh_sighash(tx, 0, signer.public_key, amount, sighash_type)
    tx.vin[0].witness = Witness([signer._sign_own_anchor_input(sighash) + bytes([sighash_type]),
                                 signer.public_key])
    txid = source.broadcast(tx.serialize())
    source.mine(6)
    return Locator(network=source.network, kind=LocatorKind.P2WPKH, txid=txid, input_index=0,
                   block_hash=source.tx_status(txid).block_hash)


def test_wrong_key_when_certificate_names_another_key(chain):
    source, _, base = chain
    signer, named = IdentityKey.generate(), IdentityKey.generate()
    cert = BirthCertificate(role="service", name="wrong.example", pubkey=named.public_key, network="regtest")
    locator = _mine_custom_anchor(source, base, Marker(MarkerType.BIRTH_CERTIFICATE, cert.digest()).script(), signer)
    with pytest.raises(WrongKey):
        resolve_anchor(locator, cert, source, HeaderChain(":memory:", source.network))


def test_unknown_marker_type_is_refused(chain):
    source, _, base = chain
    key = IdentityKey.generate()
    cert = BirthCertificate(role="service", name="odd.example", pubkey=key.public_key, network="regtest")
    locator = _mine_custom_anchor(source, base, b"\x6a\x28MILAGRO\x09" + cert.digest(), key)
    with pytest.raises(UnknownMarkerType):
        resolve_anchor(locator, cert, source, HeaderChain(":memory:", source.network))


def test_reorged_out_anchor_is_unconfirmed_until_re_mined(tmp_path):
    with EmbeddedSource.open(tmp_path / "chain") as source:
        source.mine(110)
        party = Party.create(tmp_path / "home", source, role="service", name="reorg.example", confirm_blocks=1)
        headers = HeaderChain(":memory:", source.network)
        resolve_anchor(party.locator, party.certificate, source, headers, min_confirmations=1)
        node = source.node
        parent = BlockHeader.parse(node.header_by_hash(party.locator.block_hash)).prev_hash
        for _ in range(2):   # a longer branch from the anchor block's parent, without the anchor
            raw = node.build_block([], parent=parent)
            node.submit_block(raw)
            parent = Block.parse(raw).hash
        assert source.tip().block_hash == parent
        with pytest.raises(AnchorUnconfirmed):
            resolve_anchor(party.locator, party.certificate, source, headers, min_confirmations=1)
        # The anchor went back to the mempool; once re-mined it verifies again under its new block.
        source.mine(1)
        party.confirm(source)
        identity, _ = resolve_anchor(party.locator, party.certificate, source, headers, min_confirmations=1)
        assert identity.nonce_point == party.nonce_key().public_key.format()


def _anchored_cert(name: str) -> tuple[IdentityKey, BirthCertificate, bytes]:
    key = IdentityKey.generate()
    cert = BirthCertificate(role="service", name=name, pubkey=key.public_key, network="regtest")
    return key, cert, Marker(MarkerType.BIRTH_CERTIFICATE, cert.digest()).script()


def test_anchor_signed_with_a_weaker_sighash_type_is_refused(chain):
    """SIGHASH_SINGLE (valid on chain) would let anyone graft the signature onto other outputs."""
    source, _, base = chain
    key, cert, marker = _anchored_cert("single.example")
    locator = _mine_custom_anchor(source, base, marker, key, sighash_type=0x03)
    with pytest.raises(BadSignature, match="SIGHASH_ALL"):
        resolve_anchor(locator, cert, source, HeaderChain(":memory:", source.network))


def test_anchor_without_a_seal_output_is_refused(chain):
    source, _, base = chain
    key, cert, marker = _anchored_cert("unsealed.example")
    locator = _mine_custom_anchor(source, base, marker, key, seal=False)
    with pytest.raises(MalformedAnchor, match="seal"):
        resolve_anchor(locator, cert, source, HeaderChain(":memory:", source.network))


def test_proof_that_lies_about_its_height_block_or_transaction_is_refused(chain):
    source, party, _ = chain
    proof, headers = _proof(source, party), _headers(source)
    other_block = source.block(BlockHeader.parse(source.header(proof.height - 1)).hash)
    lies = {
        "claims height": dataclasses.replace(proof, height=proof.height - 1),
        "stapled header is not": dataclasses.replace(proof, header=other_block[:80]),
        "stapled transaction is not": dataclasses.replace(proof, tx=proof.coinbase),
    }
    for reason, lying in lies.items():
        with pytest.raises(ProofMismatch, match=reason):
            verify_anchor(party.locator, party.certificate, lying, headers)
