"""Independent references and a batch driver for the batch-anchoring tests.

The BIP341 signature hash, the tapleaf hash and the transaction parser here are written from the
BIP texts with hashlib only (no embit): every sighash the library computes is compared with them.
Every transaction the library builds goes through the kernel (libbitcoinkernel, flags ALL, one
spent output per input) as well as through the node's mempool.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import coincurve
from embit.script import Witness

from milagro_tls.chain.block import Block
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.node.kernel import verify_scripts
from milagro_tls.chain.proof import SpentOutput
from milagro_tls.chain.tx import parse_tx, tx_weight
from milagro_tls.identity.batch import BatchAssembler, BatchKey, PendingBatch
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.identity.wallet import AnchoringWallet


# --- BIP341 from the text, hashlib only -----------------------------------------------------------

def tagged(tag: str, data: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _varint(raw: bytes, i: int) -> tuple[int, int]:
    first = raw[i]
    if first < 0xFD:
        return first, i + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(raw[i + 1:i + 1 + size], "little"), i + 1 + size


def _ser_varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    return b"\xfe" + n.to_bytes(4, "little")


def ser_string(data: bytes) -> bytes:
    return _ser_varint(len(data)) + data


@dataclass
class RawTx:
    version: int
    inputs: list            # (prevout 36 bytes, script_sig, sequence)
    outputs: list           # (value, script_pubkey)
    witnesses: list         # per input: list of items
    locktime: int


def parse_raw_tx(raw: bytes) -> RawTx:
    """BIP144 serialization, by hand."""
    version = int.from_bytes(raw[:4], "little")
    i = 4
    segwit = raw[i] == 0 and raw[i + 1] == 1
    if segwit:
        i += 2
    n_in, i = _varint(raw, i)
    inputs = []
    for _ in range(n_in):
        prevout = raw[i:i + 36]
        length, i = _varint(raw, i + 36)
        script_sig = raw[i:i + length]
        i += length
        inputs.append((prevout, script_sig, int.from_bytes(raw[i:i + 4], "little")))
        i += 4
    n_out, i = _varint(raw, i)
    outputs = []
    for _ in range(n_out):
        value = int.from_bytes(raw[i:i + 8], "little")
        length, i = _varint(raw, i + 8)
        outputs.append((value, raw[i:i + length]))
        i += length
    witnesses = [[] for _ in inputs]
    if segwit:
        for stack in witnesses:
            count, i = _varint(raw, i)
            for _ in range(count):
                length, i = _varint(raw, i)
                stack.append(raw[i:i + length])
                i += length
    locktime = int.from_bytes(raw[i:i + 4], "little")
    assert i + 4 == len(raw)
    return RawTx(version, inputs, outputs, witnesses, locktime)


def bip341_sighash(raw: bytes, index: int, spent: list[tuple[int, bytes]], leaf: bytes | None) -> bytes:
    """SigMsg(0x00 = SIGHASH_DEFAULT, ext_flag) of BIP341, with BIP342's extension for a leaf."""
    tx = parse_raw_tx(raw)
    msg = bytes([0x00])                                             # hash_type
    msg += tx.version.to_bytes(4, "little") + tx.locktime.to_bytes(4, "little")
    msg += _sha(b"".join(prevout for prevout, _, _ in tx.inputs))
    msg += _sha(b"".join(value.to_bytes(8, "little") for value, _ in spent))
    msg += _sha(b"".join(ser_string(spk) for _, spk in spent))
    msg += _sha(b"".join(seq.to_bytes(4, "little") for _, _, seq in tx.inputs))
    msg += _sha(b"".join(value.to_bytes(8, "little") + ser_string(spk) for value, spk in tx.outputs))
    ext_flag = 0 if leaf is None else 1
    msg += bytes([2 * ext_flag]) + index.to_bytes(4, "little")     # spend_type (no annex)
    if leaf is not None:
        msg += tapleaf(leaf) + b"\x00" + b"\xff\xff\xff\xff"       # key_version, codesep_pos
    return tagged("TapSighash", b"\x00" + msg)                      # epoch 0


def tapleaf(leaf: bytes) -> bytes:
    return tagged("TapLeaf", b"\xc0" + ser_string(leaf))


def weight(raw: bytes) -> int:
    return tx_weight(raw, parse_tx(raw))


def kernel_accepts(raw: bytes, spent: list[tuple[int, bytes]]) -> bool:
    """libbitcoinkernel, ScriptVerificationFlags.ALL, one spent output per input."""
    return verify_scripts(raw, [(spk, value) for value, spk in spent]) is None


def spent_of(source, raw: bytes) -> list[tuple[int, bytes]]:
    """(value, scriptPubKey) of every input's spent output, read from the source."""
    spent = []
    for prevout, _, _ in parse_raw_tx(raw).inputs:
        prev = parse_raw_tx(source.transaction(prevout[:32]))
        spent.append(prev.outputs[int.from_bytes(prevout[32:], "little")])
    return spent


def headers_of(source) -> HeaderChain:
    headers = HeaderChain(":memory:", source.network)
    headers.sync_from(source)
    return headers


# --- a TBS and its PATs on the embedded chain -----------------------------------------------------

@dataclass
class Batcher:
    source: object
    home: Path
    assembler: BatchAssembler
    pats: dict[str, BatchPat] = field(default_factory=dict)
    counter: int = 0

    @classmethod
    def create(cls, source, home: Path, *, max_pats: int = 128) -> "Batcher":
        key = BatchKey.load_or_create(home / "tbs")
        return cls(source, home, BatchAssembler(key, AnchoringWallet(home / "tbs", source), max_pats=max_pats))

    @property
    def batch_key(self) -> bytes:
        return self.assembler.batch_key.xonly

    def new_pats(self, n: int, prefix: str = "pat") -> list[BatchPat]:
        made = []
        for _ in range(n):
            self.counter += 1
            name = f"{prefix}{self.counter}"
            pat = BatchPat.create(self.home / "pats", name=name, batch_key=self.batch_key,
                                  network=self.source.network)
            self.pats[name] = pat
            made.append(pat)
        return made

    def run(self, pats: list[BatchPat], *, absent: set[int] = frozenset(), strip: set[int] = frozenset(),
            confirmations: int = 6) -> tuple[PendingBatch, bytes]:
        """Open, collect signatures (positions in ``absent`` do not answer), finish, optionally
        strip signatures before broadcast, mine. Returns the batch and the transaction as mined.
        Checks every sighash against the reference and every built transaction with the kernel."""
        batch = self.assembler.open([pat.certificate for pat in pats])
        funding_spent = spent_of(self.source, batch.funding.raw)
        assert kernel_accepts(batch.funding.raw, funding_spent)
        reference = bip341_sighash(batch.unsigned, 0, [(batch.funding_value, batch.script_pubkey)], batch.leaf)
        assert batch.sighash() == reference
        for position, request in enumerate(batch.requests()):
            if position in absent:
                continue
            response = pats[position].sign(request)
            # The PAT computed its sighash itself: its signature verifies over the reference one.
            assert coincurve.PublicKeyXOnly(pats[position].certificate.pubkey[1:]).verify(response.signature, reference)
            assert self.assembler.accept(batch, response)
        built = self.assembler.finish(batch, send=not strip)
        raw = built.raw
        if strip:
            raw = strip_signatures(raw, len(pats), strip)
            assert parse_tx(raw).txid() == parse_tx(built.raw).txid()
            self.source.broadcast(raw)
        assert kernel_accepts(raw, [(batch.funding_value, batch.script_pubkey)])
        self.source.mine(confirmations)
        return batch, raw


def strip_signatures(raw: bytes, n: int, positions: set[int]) -> bytes:
    """What any relay can do: empty PAT signatures (witness index N-1-position); txid unchanged."""
    tx = parse_tx(raw)
    items = [bytes(item) for item in tx.vin[0].witness.items]
    for position in positions:
        items[n - 1 - position] = b""
    tx.vin[0].witness = Witness(items)
    return tx.serialize()


def mined_tx(source, txid: bytes) -> bytes:
    """The transaction as the block holds it (witness included)."""
    status = source.tx_status(txid)
    block = Block.parse(source.block(status.block_hash))
    return block.raw_txs[block.txids().index(txid)]


def spent_outputs(pairs: list[tuple[int, bytes]]) -> tuple[SpentOutput, ...]:
    return tuple(SpentOutput(value, spk) for value, spk in pairs)
