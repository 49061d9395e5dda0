"""Batch anchoring on one taproot output against one P2WPKH input per PAT, on the embedded chain.

    .venv/bin/python benchmarks/bench_batch.py [--sizes 1,8,32,128,1000]

For each N and each share of PATs that do not answer (0% and 25%: every PAT whose index is 3 mod
4), real batches are built, signed by real PATs, mined, and measured from the transactions as
the blocks hold them (BIP141 weight, vsize = ceil(weight / 4)):

taproot   the library's form (identity.batch): per group a funding transaction (fee-key coins ->
          the group's P2TR output + change) and the batch transaction (script path, one BIP340
          signature or an empty item per PAT, type-0x02 root, change). Groups of at most 128
          PATs; N = 1000 is eight transactions of 125. A batch of one uses the single P2WPKH
          anchor instead (identity.party: funding + anchor tx), cheaper at N = 1.
staple    one anchored PAT's staple (canonical certificate + proof bundle, which holds the whole
          batch transaction), measured on a staple that passes verify_anchor: SPV with the
          witness commitment, the leaf, the control block, the signature, the Merkle path.
baseline  one P2WPKH input per PAT: a funding transaction (one fee-key coin -> one 1,000 sat
          P2WPKH output per PAT + change) and a transaction spending the outputs of the PATs
          that answered (each an ECDSA SIGHASH_ALL signature by its PAT) to the same 0x02 root
          marker + change, grouped as the taproot batches. An absent PAT's output stays locked
          to its key and everyone else signs again: it is counted in the funding, not spent.

vB/PAT divides the funding and batch vsizes by the N PATs listed; "per anchored" by those whose
signature confirmed.
"""
from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import coincurve
from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from milagro_tls.chain.block import Block
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.sighash import SIGHASH_ALL, p2wpkh_script, p2wpkh_sighash
from milagro_tls.chain.source import UnspentOutput
from milagro_tls.chain.tx import parse_tx, tx_weight, txid_of
from milagro_tls.chain.verify import verify_anchor
from milagro_tls.identity.anchor import build_fee_key_spend, fee_key_spend_fee
from milagro_tls.identity.batch import BatchAssembler, BatchKey, batch_weight
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.identity.keys import FeeKey
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.marker import Marker, MarkerType
from milagro_tls.identity.party import Party
from milagro_tls.identity.wallet import AnchoringWallet
from milagro_tls.merkle import merkle_root

GROUP = 125                  # N = 1000 as eight transactions of 125 (the default bound is 128)
CONFIRMATIONS = 6            # the verifier's default depth
BASELINE_OUTPUT = 1_000      # sat per PAT output in the baseline


def _mined(source, txid: bytes) -> bytes:
    """The transaction as its block holds it, witness included."""
    status = source.tx_status(txid)
    block = Block.parse(source.block(status.block_hash))
    return block.raw_txs[block.txids().index(txid)]


def _vsize(raw: bytes) -> int:
    return math.ceil(tx_weight(raw, parse_tx(raw)) / 4)


def _groups(n: int) -> list[range]:
    size = n if n <= 128 else GROUP
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def _absent(n: int, share: float) -> set[int]:
    return {i for i in range(n) if i % 4 == 3} if share else set()


@dataclass
class Row:
    n: int
    absent: int
    vbytes: int              # funding + batch, every group
    anchored: int
    staple: int
    baseline: int            # baseline funding + batch, every group
    transactions: int


class Bench:
    def __init__(self, source: EmbeddedSource, home: Path) -> None:
        self.source, self.home = source, home
        self.assembler = BatchAssembler(BatchKey.load_or_create(home / "tbs"), AnchoringWallet(home / "tbs", source))
        self.headers = HeaderChain(":memory:", source.network)
        self.count = 0
        self.fee_key = FeeKey.generate()

    def _pats(self, n: int) -> list[BatchPat]:
        made = []
        for _ in range(n):
            self.count += 1
            made.append(BatchPat.create(self.home / "pats", name=f"pat{self.count}",
                                        batch_key=self.assembler.batch_key.xonly, network=self.source.network))
        return made

    def _staple(self, pat: BatchPat | Party) -> int:
        """certificate + proof bundle of an anchored PAT, after the full verifier accepted it."""
        local = LocalIdentity.from_party(pat, self.source)
        self.headers.sync_from(self.source)
        verify_anchor(local.locator, local.certificate, local.proof, self.headers)
        return len(local.certificate_bytes) + len(local.proof_bytes)

    # --- taproot ----------------------------------------------------------------------------
    def taproot(self, n: int, absent: set[int]) -> tuple[int, int, int, int]:
        """(vbytes, anchored, staple bytes, transactions) of N PATs in groups."""
        pats = self._pats(n)
        batches = []
        for group in _groups(n):
            members = [pats[i] for i in group]
            batch = self.assembler.open([pat.certificate for pat in members])
            for position, request in enumerate(batch.requests()):
                if group[position] not in absent:
                    assert self.assembler.accept(batch, members[position].sign(request))
            self.assembler.finish(batch)
            batches.append((batch, members))
        self.source.mine(CONFIRMATIONS)
        vbytes = anchored = 0
        for batch, members in batches:
            mined = _mined(self.source, batch.txid)
            signed = len(batch.signatures)
            # The mined batch is exactly the library's weight formula: nothing was stripped.
            assert tx_weight(mined, parse_tx(mined)) == batch_weight(len(members), signed)
            vbytes += _vsize(_mined(self.source, batch.funding.txid)) + _vsize(mined)
            outcome = self.assembler.settle(batch, self.source)
            assert len(outcome.anchored) == signed
            anchored += signed
        first = next(pat for i, pat in enumerate(pats) if i not in absent)
        first.confirm(self.source)
        return vbytes, anchored, self._staple(first), 2 * len(batches)

    def single(self) -> tuple[int, int]:
        """(vbytes, staple) of one PAT on the single P2WPKH anchor: its funding + its anchor."""
        self.count += 1
        party = Party.create(self.home / "single", self.source, role="pat", name=f"single{self.count}",
                             confirm_blocks=CONFIRMATIONS)
        funding_txid = bytes(parse_tx(party.anchor_tx).vin[0].txid)[::-1]
        vbytes = _vsize(_mined(self.source, funding_txid)) + _vsize(_mined(self.source, party.anchor_txid))
        return vbytes, self._staple(party)

    # --- baseline: one P2WPKH input per PAT -------------------------------------------------
    def _coin(self, amount: int) -> UnspentOutput:
        txid = self.source.faucet(self.fee_key.p2wpkh_script, amount)
        self.source.mine(1)
        tx = parse_tx(self.source.transaction(txid))
        vout = next(i for i, out in enumerate(tx.vout) if out.script_pubkey.data == self.fee_key.p2wpkh_script)
        return UnspentOutput(txid, vout, tx.vout[vout].value, self.fee_key.p2wpkh_script, None)

    def baseline(self, n: int, absent: set[int]) -> int:
        vbytes = 0
        for group in _groups(n):
            keys = [coincurve.PrivateKey() for _ in group]
            scripts = [p2wpkh_script(key.public_key.format()) for key in keys]
            payments = [(BASELINE_OUTPUT, script) for script in scripts]
            fee = fee_key_spend_fee(1, scripts, 1.0)
            funding = build_fee_key_spend(self.fee_key, [self._coin(BASELINE_OUTPUT * len(keys) + fee + 10_000)],
                                          payments, fee)
            self.source.broadcast(funding.raw)
            answering = [i for i, index in enumerate(group) if index not in absent]
            root = merkle_root([key.public_key.format() for key in keys])  # stands for the digests: 32 bytes
            tx = Transaction(version=2, locktime=0,
                             vin=[TransactionInput(funding.txid[::-1], i, sequence=0xFFFFFFFD) for i in answering],
                             vout=[TransactionOutput(0, Script(Marker(MarkerType.BATCH_ROOT, root).script())),
                                   TransactionOutput(0, Script(self.fee_key.p2wpkh_script))])
            # Size the fee with 72-byte signatures, then sign (the fee is 1 sat/vB, sizes only matter).
            estimate = math.ceil(10.5 + 68.25 * len(answering) + 51 + 31)
            tx.vout[1].value = BASELINE_OUTPUT * len(answering) - estimate
            for index, i in enumerate(answering):
                public = keys[i].public_key.format()
                sighash = p2wpkh_sighash(tx, index, public, BASELINE_OUTPUT)
                tx.vin[index].witness = Witness([keys[i].sign(sighash, hasher=None) + bytes([SIGHASH_ALL]), public])
            raw = tx.serialize()
            self.source.broadcast(raw)
            self.source.mine(1)
            vbytes += _vsize(_mined(self.source, funding.txid)) + _vsize(_mined(self.source, txid_of(tx)))
        return vbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,8,32,128,1000")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    # The TBS wallet tops itself up from the regtest faucet; its low-balance warnings are noise here.
    logging.getLogger("milagro_tls.wallet").setLevel(logging.ERROR)
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedSource.open(Path(tmp) / "chain") as source:
        source.mine(110)
        bench = Bench(source, Path(tmp) / "home")
        for n in sizes:
            for share in (0.0, 0.25):
                absent = _absent(n, share)
                if n == 1:
                    if share:
                        continue          # a quarter of one PAT: nothing to measure
                    vbytes, staple = bench.single()
                    rows.append(Row(n, 0, vbytes, 1, staple, bench.baseline(n, absent), 2))
                    continue
                vbytes, anchored, staple, count = bench.taproot(n, absent)
                rows.append(Row(n, len(absent), vbytes, anchored, staple, bench.baseline(n, absent), count))
        one = bench.taproot(1, set())      # for comparison: what a taproot batch of one would cost
    print(f"{'N':>5} {'absent':>7} {'txs':>4} {'vB total':>9} {'vB/PAT':>7} {'vB/anchored':>12} "
          f"{'staple B':>9} {'P2WPKH vB/PAT':>14} {'ratio':>6}")
    for row in rows:
        print(f"{row.n:>5} {row.absent:>7} {row.transactions:>4} {row.vbytes:>9} {row.vbytes / row.n:>7.2f} "
              f"{row.vbytes / row.anchored:>12.2f} {row.staple:>9} {row.baseline / row.n:>14.2f} "
              f"{row.baseline / row.vbytes:>6.2f}")
    print(f"(N = 1 is the single P2WPKH anchor; a taproot batch of one measured {one[0]} vB with a "
          f"{one[2]}-byte staple. {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
