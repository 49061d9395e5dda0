"""Batch anchoring, the batcher's (TBS's) side: many PATs per transaction on one taproot output.

    funding tx  the TBS wallet's fee-key coins (P2WPKH only, so its txid is fixed before
                anyone signs over it)  →  [0: P2TR(internal = batch key, one leaf), fee-key change]
    batch tx    funding:0 through the script path  →  [0: OP_RETURN MILAGRO 0x02 ‖ root,
                                                       1: change to the fee key (CPFP)]
                root = milagro_tls.merkle root over the certificates' SHA256 digests, in
                position order; version 2, locktime 0, sequence 0xfffffffd

The leaf, witness layout and verifier are in chain.taproot and chain.batchverify. The flow, as
the TBS role drives it (this module does no network IO towards PATs):

    assembler = BatchAssembler(BatchKey.load_or_create(home), AnchoringWallet(home, source))
    batch = assembler.open(certificates, persist=store.save)    # funds and sends the funding tx
    for request in batch.requests(): ...send request.to_json() to its PAT...
    assembler.accept(batch, SigningResponse.from_json(answer))  # verified; False if refused
    built = assembler.finish(batch)                             # TBS signs; empty items elsewhere
    outcome = assembler.settle(batch, source)                   # once mined: who is anchored
    assembler.open([*outcome.requeue, *newcomers])              # slots that confirmed empty

A PAT that does not answer (or answers badly: any non-empty invalid signature would invalidate
the whole input) gets an empty item, so nobody signs twice. Anyone relaying the batch can also
empty a signature without changing the txid; ``settle`` reads the witness from the confirmed
block and re-queues every PAT whose slot is empty there. When nobody answers, ``reclaim`` spends
the funding output back through the key path. RBF would need every PAT to sign again (the
outputs change), so fees are bumped by CPFP on the change output: the wallet tracks the batch
and ``AnchoringWallet.bump`` spends that change.

The batch key is the TBS's own key (HOME/batch.key, mode 0600), named as ``batch_key`` in the
TBS's and in every PAT's certificate; the fee key (HOME/fee.key) pays through the wallet.

JSON between the TBS and a PAT (hex is lowercase; txids in display order as explorers print them):

    SigningRequest   {"tx": unsigned batch tx hex, "spent_outputs": [{"value": sat,
                      "script_pubkey": hex}, ...one per input], "input": j, "leaf": leaf script hex,
                      "position": i, "proof": {"index", "size", "path": [hex32, ...]}}
    SigningResponse  {"txid": display hex, "input": j, "position": i, "signature": 64-byte hex}

The PAT takes the whole leaf rather than only its tapleaf hash: it computes the hash itself and
finds its own key at ``position`` and its certificate's batch key first (34 bytes per PAT, 4.4 KB
at 128), so a batcher cannot have it sign for a slot that is not its own.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import coincurve
from embit.script import Script, Witness
from embit.transaction import SIGHASH, Transaction, TransactionInput, TransactionOutput

from ..chain.batchverify import read_batch_input
from ..chain.block import Block
from ..chain.errors import TxNotFound
from ..chain.hashes import from_display_hex, tagged_hash, to_display_hex
from ..chain.proof import SpentOutput
from ..chain.source import ChainSource
from ..chain.taproot import (MAX_LEAF_KEYS, batch_output, leaf_script, script_path_sighash, tapleaf_hash,
                             verify_schnorr)
from ..chain.tx import parse_tx, txid_of
from ..ciphersuites.nonce import N
from ..errors import IdentityError, MalformedInput
from ..merkle import InclusionProof, MerkleProofError, MerkleTree
from .anchor import DUST, BuiltTx
from .certificate import BirthCertificate
from .keys import _Key, write_key_file
from .locator import Locator
from .marker import Marker, MarkerType
from .wallet import AnchoringWallet

log = logging.getLogger(__name__)

#: PATs per batch transaction by default: every PAT's staple carries the whole transaction
#: (about 100 bytes per PAT), and 128 keeps it near 13 KB, under the 16 KiB staple bound.
DEFAULT_MAX_PATS = 128
#: The change output: above P2WPKH dust, and the coin a CPFP child starts from.
BATCH_CHANGE_VALUE = 1_000
BATCH_KEY_FILE = "batch.key"
_SEQUENCE = 0xFFFFFFFD
# Non-witness bytes of a one-input batch tx: version 4, counts 1+1, input 41, OP_RETURN output
# 8+1+42, P2WPKH change 8+1+22, locktime 4.
_BATCH_BASE_SIZE = 133
# A key-path reclaim, funding output -> P2WPKH: 82 non-witness bytes, 68 witness bytes = 396 WU.
_RECLAIM_VBYTES = 99


class BatchError(IdentityError):
    """A batch cannot be built, signed or settled as asked."""


def _compact_size_len(n: int) -> int:
    return 1 if n < 253 else 3 if n <= 0xFFFF else 5


def batch_weight(pats: int, signed: int, *, base_size: int = _BATCH_BASE_SIZE) -> int:
    """BIP141 weight of a one-input batch of ``pats`` listed PATs of which ``signed`` signed:
    4·base + marker/flag + item count + PAT items (65 or 1) + TBS item + leaf + control block.
    Per PAT: 99 WU (24.75 vB) signing, 35 WU (8.75 vB) absent."""
    leaf = 34 + 34 * pats
    return (4 * base_size + 2 + _compact_size_len(pats + 3) + 65 * signed + (pats - signed) + 65
            + _compact_size_len(leaf) + leaf + 34)


def batch_fee(pats: int, fee_rate: float) -> int:
    """The batch's fee, sized for everyone signing (the outputs are signed before anyone knows
    who will answer; absent PATs only raise the fee rate)."""
    return math.ceil(math.ceil(batch_weight(pats, pats) / 4) * fee_rate)


# --- the TBS's batching key ---------------------------------------------------------------------

class BatchKey(_Key):
    """The TBS's batching key: the P2TR internal key and the leaf's first key. It signs only
    batch inputs and key-path reclaims of funding outputs that this module built."""

    @classmethod
    def load_or_create(cls, home: Path) -> "BatchKey":
        """HOME/batch.key, created (mode 0600) on first use."""
        path = Path(home) / BATCH_KEY_FILE
        if not path.exists():
            Path(home).mkdir(parents=True, exist_ok=True, mode=0o700)
            write_key_file(path, coincurve.PrivateKey().secret)
        return cls.load(path)

    @property
    def xonly(self) -> bytes:
        return self.public_key[1:]

    def _sign_own_batch_input(self, sighash: bytes) -> bytes:
        return self._private.sign_schnorr(sighash, aux_randomness=os.urandom(32))

    def _sign_own_reclaim(self, sighash: bytes, leaf_hash: bytes) -> bytes:
        """Key-path signature with the BIP341-tweaked key d′ + t (d′ = d or n − d, even y)."""
        tweak = tagged_hash("TapTweak", self.xonly + leaf_hash)
        key = self._private
        if self.public_key[0] == 0x03:
            key = key.multiply((N - 1).to_bytes(32, "big"))       # −d, inside libsecp256k1
        return key.add(tweak).sign_schnorr(sighash, aux_randomness=os.urandom(32))


# --- what travels between the TBS and a PAT -----------------------------------------------------

def _spent_json(spent: Sequence[SpentOutput]) -> list[dict[str, Any]]:
    return [{"value": out.value, "script_pubkey": out.script_pubkey.hex()} for out in spent]


def _spent_from_json(doc: Any) -> tuple[SpentOutput, ...]:
    if not isinstance(doc, list):
        raise MalformedInput("spent_outputs must be a list")
    out = []
    for item in doc:
        if not isinstance(item, dict) or set(item) != {"value", "script_pubkey"} or type(item["value"]) is not int:
            raise MalformedInput("a spent output is {value: int, script_pubkey: hex}")
        out.append(SpentOutput(item["value"], bytes.fromhex(item["script_pubkey"])))
    return tuple(out)


def _exact(doc: Any, keys: set[str], what: str) -> dict:
    if not isinstance(doc, dict) or set(doc) != keys:
        raise MalformedInput(f"{what} is a JSON object with exactly the fields {sorted(keys)}")
    return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningRequest:
    """What a PAT needs to sign its slot without trusting the batcher: the unsigned batch
    transaction, every spent output, its input, the leaf (the PAT computes the tapleaf hash and
    finds its own key and the TBS's in it), its position, and its digest's inclusion proof."""
    tx: bytes                         # unsigned batch transaction (no witness)
    spent_outputs: tuple[SpentOutput, ...]
    input_index: int
    leaf: bytes
    position: int
    proof: InclusionProof

    @property
    def txid(self) -> bytes:
        return txid_of(parse_tx(self.tx))

    def to_json(self) -> dict[str, Any]:
        return {"tx": self.tx.hex(), "spent_outputs": _spent_json(self.spent_outputs),
                "input": self.input_index, "leaf": self.leaf.hex(), "position": self.position,
                "proof": self.proof.to_json()}

    @classmethod
    def from_json(cls, doc: Any) -> "SigningRequest":
        doc = _exact(doc, {"tx", "spent_outputs", "input", "leaf", "position", "proof"}, "a signing request")
        try:
            if type(doc["input"]) is not int or type(doc["position"]) is not int:
                raise MalformedInput("input and position are integers")
            return cls(tx=bytes.fromhex(doc["tx"]), spent_outputs=_spent_from_json(doc["spent_outputs"]),
                       input_index=doc["input"], leaf=bytes.fromhex(doc["leaf"]), position=doc["position"],
                       proof=InclusionProof.from_json(doc["proof"]))
        except MerkleProofError as exc:
            raise MalformedInput(f"signing request proof: {exc}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MalformedInput):
                raise
            raise MalformedInput(f"signing request is malformed: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningResponse:
    """A PAT's answer: its 64-byte BIP340 signature for (txid, input, position)."""
    txid: bytes                       # wire order
    input_index: int
    position: int
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"txid": to_display_hex(self.txid), "input": self.input_index, "position": self.position,
                "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> "SigningResponse":
        doc = _exact(doc, {"txid", "input", "position", "signature"}, "a signing response")
        if type(doc["input"]) is not int or type(doc["position"]) is not int:
            raise MalformedInput("input and position are integers")
        try:
            return cls(txid=from_display_hex(doc["txid"]), input_index=doc["input"], position=doc["position"],
                       signature=bytes.fromhex(doc["signature"]))
        except (TypeError, ValueError):
            raise MalformedInput("signing response txid or signature is not hex") from None


# --- one batch in progress ----------------------------------------------------------------------

@dataclass(eq=False)
class PendingBatch:
    """A funded, not yet settled batch. ``to_json``/``from_json`` let the TBS keep it in its store."""
    certificates: tuple[BirthCertificate, ...]
    tbs_key: bytes                    # x-only batch key
    funding: BuiltTx
    funding_vout: int
    funding_value: int
    unsigned: bytes                   # the batch tx without witness
    signatures: dict[int, bytes] = field(default_factory=dict)   # position -> 64-byte signature

    def __post_init__(self) -> None:
        keys = [cert.pubkey[1:] for cert in self.certificates]
        self.leaf = leaf_script(self.tbs_key, keys)
        self.script_pubkey, self.control_block = batch_output(self.tbs_key, self.leaf)
        self.tree = MerkleTree([cert.digest() for cert in self.certificates])
        funding = parse_tx(self.funding.raw)
        out = funding.vout[self.funding_vout]
        if out.script_pubkey.data != self.script_pubkey or out.value != self.funding_value:
            raise BatchError("funding output is not the batch's P2TR output")
        self.spent = (SpentOutput(self.funding_value, self.script_pubkey),)
        # Everyone signs the same message: compute it once (accept() checks every answer).
        self._sighash = script_path_sighash(parse_tx(self.unsigned), 0, self.spent, self.leaf)

    @property
    def txid(self) -> bytes:
        return txid_of(parse_tx(self.unsigned))

    @property
    def root(self) -> bytes:
        return self.tree.root

    def sighash(self) -> bytes:
        """The BIP341 script-path sighash every signer of this batch signs."""
        return self._sighash

    def request(self, position: int) -> SigningRequest:
        return SigningRequest(tx=self.unsigned, spent_outputs=self.spent, input_index=0, leaf=self.leaf,
                              position=position, proof=self.tree.inclusion_proof(position))

    def requests(self) -> list[SigningRequest]:
        return [self.request(position) for position in range(len(self.certificates))]

    def position_of(self, certificate: BirthCertificate) -> int:
        return self.certificates.index(certificate)

    def to_json(self) -> dict[str, Any]:
        return {"certificates": [cert.canonical_bytes().decode() for cert in self.certificates],
                "tbs_key": self.tbs_key.hex(), "funding": self.funding.raw.hex(),
                "funding_vout": self.funding_vout, "funding_value": self.funding_value,
                "unsigned": self.unsigned.hex(),
                "signatures": {str(p): s.hex() for p, s in sorted(self.signatures.items())}}

    @classmethod
    def from_json(cls, doc: Any) -> "PendingBatch":
        doc = _exact(doc, {"certificates", "tbs_key", "funding", "funding_vout", "funding_value", "unsigned",
                           "signatures"}, "a pending batch")
        funding = bytes.fromhex(doc["funding"])
        return cls(certificates=tuple(BirthCertificate.parse(c.encode()) for c in doc["certificates"]),
                   tbs_key=bytes.fromhex(doc["tbs_key"]),
                   funding=BuiltTx(funding, txid_of(parse_tx(funding))), funding_vout=doc["funding_vout"],
                   funding_value=doc["funding_value"], unsigned=bytes.fromhex(doc["unsigned"]),
                   signatures={int(p): bytes.fromhex(s) for p, s in doc["signatures"].items()})


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What the confirmed block says about a batch (read from its witness there)."""
    txid: bytes
    block_hash: bytes
    height: int
    anchored: tuple[BirthCertificate, ...]
    requeue: tuple[BirthCertificate, ...]        # slots that confirmed empty: next batch
    locators: dict[bytes, Locator]               # certificate digest -> its locator (anchored only)


# --- the assembler ------------------------------------------------------------------------------

class BatchAssembler:
    """Builds, funds, signs and settles batches for the PATs a TBS enrols."""

    def __init__(self, batch_key: BatchKey, wallet: AnchoringWallet, *, max_pats: int = DEFAULT_MAX_PATS) -> None:
        if not 1 <= max_pats <= MAX_LEAF_KEYS:
            raise BatchError(f"max_pats must be 1..{MAX_LEAF_KEYS} (consensus: one leaf)")
        self.batch_key = batch_key
        self.wallet = wallet
        self.max_pats = max_pats

    def open(self, certificates: Iterable[BirthCertificate], *, fee_rate: float | None = None,
             persist: Callable[[PendingBatch], None] | None = None) -> PendingBatch:
        """Fund and build a batch for ``certificates`` (in position order) and send the funding.

        ``persist(batch)`` runs after the funding is built and before the wallet records or sends
        it, so a crash never leaves a funding output the TBS does not know how to spend."""
        certificates = tuple(certificates)
        self._check_members(certificates)
        rate = self.wallet.fee_rate() if fee_rate is None else fee_rate
        fee = batch_fee(len(certificates), rate)
        amount = fee + BATCH_CHANGE_VALUE
        keys = [cert.pubkey[1:] for cert in certificates]
        script_pubkey, _ = batch_output(self.batch_key.xonly, leaf_script(self.batch_key.xonly, keys))
        self.wallet.ensure_funded(amount, fee_rate=rate)
        made: list[PendingBatch] = []

        def build_batch_first(funding: BuiltTx) -> None:
            batch = PendingBatch(certificates=certificates, tbs_key=self.batch_key.xonly, funding=funding,
                                 funding_vout=0, funding_value=amount,
                                 unsigned=self._unsigned(funding.txid, amount, fee, certificates))
            if persist is not None:
                persist(batch)
            made.append(batch)

        self.wallet.fund(script_pubkey, amount, fee_rate=rate, label=f"batch funding ({len(certificates)} PATs)",
                         before_record=build_batch_first)
        batch = made[0]
        log.info("batch %s opened for %d PATs (funding %s)", to_display_hex(batch.txid), len(certificates),
                 batch.funding.txid_hex)
        return batch

    def _check_members(self, certificates: tuple[BirthCertificate, ...]) -> None:
        if not 1 <= len(certificates) <= self.max_pats:
            raise BatchError(f"a batch holds 1 to {self.max_pats} PATs, not {len(certificates)}")
        network = self.wallet.source.network.label
        for cert in certificates:
            if cert.batch_key != self.batch_key.xonly:
                raise BatchError(f"certificate {cert.name!r} names another batch key")
            if cert.network != network:
                raise BatchError(f"certificate {cert.name!r} is for {cert.network}, not {network}")
        if len({cert.pubkey[1:] for cert in certificates}) != len(certificates):
            raise BatchError("two certificates share a key: a key may hold one slot per batch")

    def _unsigned(self, funding_txid: bytes, amount: int, fee: int,
                  certificates: tuple[BirthCertificate, ...]) -> bytes:
        root = MerkleTree([cert.digest() for cert in certificates]).root
        change = amount - fee
        if change < DUST:
            raise BatchError(f"batch change of {change} sat would be dust")
        tx = Transaction(version=2, vin=[TransactionInput(funding_txid[::-1], 0, sequence=_SEQUENCE)],
                         vout=[TransactionOutput(0, Script(Marker(MarkerType.BATCH_ROOT, root).script())),
                               TransactionOutput(change, Script(self.wallet.script_pubkey))],
                         locktime=0)
        return tx.serialize()

    def accept(self, batch: PendingBatch, response: SigningResponse) -> bool:
        """Keep the PAT's signature if it is exactly 64 bytes and verifies over the batch's
        sighash under the key at its position; otherwise log why and return False."""
        position = response.position
        why = None
        if response.txid != batch.txid or response.input_index != 0:
            why = "is for another transaction or input"
        elif not 0 <= position < len(batch.certificates):
            why = "names a position outside the batch"
        elif not verify_schnorr(batch.certificates[position].pubkey[1:], response.signature, batch.sighash()):
            why = "does not verify"
        if why is not None:
            log.warning("batch %s: response for position %s %s; its slot stays empty",
                        to_display_hex(batch.txid), position, why)
            return False
        batch.signatures[position] = response.signature
        return True

    def signed_transaction(self, batch: PendingBatch) -> bytes:
        """The batch with the TBS's signature, each accepted PAT signature at witness index
        N-1-position and an empty item for every other PAT."""
        if not batch.signatures:
            raise BatchError("no PAT signed: the batch cannot spend (reclaim the funding instead)")
        sighash = batch.sighash()
        n = len(batch.certificates)
        for position, signature in batch.signatures.items():       # the store may have been edited
            if not verify_schnorr(batch.certificates[position].pubkey[1:], signature, sighash):
                raise BatchError(f"stored signature for position {position} does not verify")
        tx = parse_tx(batch.unsigned)
        items = [batch.signatures.get(position, b"") for position in reversed(range(n))]
        items += [self.batch_key._sign_own_batch_input(sighash), batch.leaf, batch.control_block]
        tx.vin[0].witness = Witness(items)
        return tx.serialize()

    def finish(self, batch: PendingBatch, *, send: bool = True) -> BuiltTx:
        """Sign and assemble the batch, record it with the wallet (which rebroadcasts it and
        can bump it through the change) and, unless ``send`` is False, broadcast it."""
        built = BuiltTx(self.signed_transaction(batch), batch.txid)
        self.wallet.track(built, spent_value=batch.funding_value,
                          label=f"batch ({len(batch.signatures)}/{len(batch.certificates)} PATs)")
        if send:
            self.wallet.send(built.txid)
        log.info("batch %s: %d of %d PATs signed", built.txid_hex, len(batch.signatures), len(batch.certificates))
        return built

    def settle(self, batch: PendingBatch, source: ChainSource) -> BatchOutcome | None:
        """None while the batch is unconfirmed; then who it anchored, read from the witness in
        the confirmed block (the source's block, checked against the block hash it names: the
        TBS's own node is its witness here; PATs and peers verify with their headers)."""
        try:
            status = source.tx_status(batch.txid)
        except TxNotFound:
            return None
        if status.block_hash is None:
            return None
        block = Block.parse(source.block(status.block_hash))
        if block.hash != status.block_hash or batch.txid not in block.txids():
            raise BatchError("the source's block does not hold the batch it says it does")
        tx = block.txs[block.txids().index(batch.txid)]
        view = read_batch_input(tx, 0)
        sighash = script_path_sighash(tx, 0, batch.spent, batch.leaf)
        anchored, requeue, locators = [], [], {}
        for position, cert in enumerate(batch.certificates):
            if verify_schnorr(cert.pubkey[1:], view.signatures[position], sighash):
                anchored.append(cert)
                locators[cert.digest()] = Locator.taproot_batch(
                    network=source.network, txid=batch.txid, input_index=0, block_hash=status.block_hash,
                    position=position, proof=batch.tree.inclusion_proof(position))
            else:
                requeue.append(cert)
        if requeue:
            log.info("batch %s confirmed with %d empty slots: re-queued", to_display_hex(batch.txid), len(requeue))
        return BatchOutcome(batch.txid, status.block_hash, status.height, tuple(anchored), tuple(requeue), locators)

    def reclaim(self, batch: PendingBatch, *, fee_rate: float | None = None, send: bool = True) -> BuiltTx:
        """Spend the funding output back to the fee key through the key path (nobody answered,
        or the batch was abandoned); ~99 vB."""
        rate = self.wallet.fee_rate() if fee_rate is None else fee_rate
        fee = math.ceil(_RECLAIM_VBYTES * rate)
        value = batch.funding_value - fee
        if value < DUST:
            raise BatchError("the funding output cannot pay for its own reclaim")
        tx = Transaction(version=2,
                         vin=[TransactionInput(batch.funding.txid[::-1], batch.funding_vout, sequence=_SEQUENCE)],
                         vout=[TransactionOutput(value, Script(self.wallet.script_pubkey))], locktime=0)
        sighash = tx.sighash_taproot(0, [Script(batch.script_pubkey)], [batch.funding_value], SIGHASH.DEFAULT)
        tx.vin[0].witness = Witness([self.batch_key._sign_own_reclaim(sighash, tapleaf_hash(batch.leaf))])
        built = BuiltTx(tx.serialize(), txid_of(tx))
        self.wallet.track(built, spent_value=batch.funding_value, label="batch reclaim")
        if send:
            self.wallet.send(built.txid)
        return built
