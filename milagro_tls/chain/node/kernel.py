"""The thin wrapper around py-bitcoinkernel (``pbk``): Bitcoin Core's consensus code.

Everything the node knows about validity comes from here. The wrapper hides three
sharp edges of pbk 0.1.0a5:

* ``process_block`` raises only for failures before the block is stored; a block
  that fails when connected returns normally. The ``block_checked`` callback (called
  synchronously, inside ``process_block``) is the only place the verdict shows up,
  so it is recorded per block hash.
* ``PrecomputedTransactionData`` with fewer spent outputs than inputs aborts the
  process on a C assertion; the length is checked here first.
* pbk's constructors splat the input bytes into a ctypes array one argument per
  byte (about 0.3 s per MB); ``_from_buffer`` builds the same objects by copying.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path

import pbk
import pbk.capi.bindings as _capi
from pbk.script import PrecomputedTransactionData

from ..errors import BlockRejected
from ..hashes import to_display_hex
from ..header import BlockHeader

LOG_ENV = "MILAGRO_KERNEL_LOG"
_log_lock = threading.Lock()
_log_state: dict[str, object] = {}

# Reasons for the kernel's verdicts. The kernel reports only the class of failure,
# not Core's reason string, so these name the class (Core's string where it is one).
_RESULT_REASON = {
    pbk.BlockValidationResult.UNSET: "rejected",
    pbk.BlockValidationResult.CONSENSUS: "consensus-invalid",
    pbk.BlockValidationResult.CACHED_INVALID: "duplicate-invalid",
    pbk.BlockValidationResult.INVALID_HEADER: "invalid-header",
    pbk.BlockValidationResult.MUTATED: "mutated",
    pbk.BlockValidationResult.MISSING_PREV: "prev-blk-not-found",
    pbk.BlockValidationResult.INVALID_PREV: "bad-prevblk",
    pbk.BlockValidationResult.TIME_FUTURE: "time-too-new",
    pbk.BlockValidationResult.HEADER_LOW_WORK: "too-little-chainwork",
}


def _configure_logging() -> None:
    """Silence the kernel unless MILAGRO_KERNEL_LOG is set (then forward to ``logging``).

    The kernel buffers up to 1 MB of messages until a connection exists; disabling
    stops that buffering for good. Both are process-wide, so this runs once.
    """
    with _log_lock:
        if "done" in _log_state:
            return
        _log_state["done"] = True
        if os.environ.get(LOG_ENV):
            # Keep the viewer alive for the process: it owns the C callback.
            _log_state["viewer"] = pbk.KernelLogViewer(
                "bitcoinkernel", categories=[pbk.LogCategory.VALIDATION, pbk.LogCategory.KERNEL])
            logging.getLogger("bitcoinkernel").setLevel(logging.DEBUG)
        else:
            _capi.btck_logging_disable()


def _from_buffer(cls, create_fn, raw: bytes):
    buf = (ctypes.c_ubyte * len(raw)).from_buffer_copy(raw)
    ptr = create_fn(buf, len(raw))
    if not ptr:
        raise ValueError(f"the kernel cannot parse this {cls.__name__}")
    return cls._from_handle(ptr)


def kernel_block(raw: bytes) -> pbk.Block:
    return _from_buffer(pbk.Block, _capi.btck_block_create, raw)


def kernel_tx(raw: bytes) -> pbk.Transaction:
    return _from_buffer(pbk.Transaction, _capi.btck_transaction_create, raw)


def verify_scripts(raw_tx: bytes, spent: list[tuple[bytes, int]]) -> int | None:
    """Consensus script check of every input; the index of the first failing input, or None.

    ``spent`` is (scriptPubKey, amount) of each spent output, in input order. Flags
    are always ALL: without TAPROOT a v1 output is anyone-can-spend and forged
    signatures pass.
    """
    tx = kernel_tx(raw_tx)
    if len(tx.inputs) != len(spent) or not spent:
        # A mismatch here would hit a C assert and kill the process.
        raise ValueError("spent outputs must match the inputs one to one")
    outs = [pbk.TransactionOutput(pbk.ScriptPubkey(spk), amount) for spk, amount in spent]
    pre = PrecomputedTransactionData(tx, outs)
    for i, (spk, amount) in enumerate(spent):
        try:
            ok = pbk.ScriptPubkey(spk).verify(amount, tx, pre, i, pbk.ScriptVerificationFlags.ALL)
        except pbk.ScriptVerifyException:
            ok = False
        if not ok:
            return i
    return None


class Kernel:
    """One chainstate manager over DATADIR/kernel, regtest only."""

    def __init__(self, path: Path) -> None:
        _configure_logging()
        self._verdicts: dict[bytes, pbk.BlockValidationResult | None] = {}
        # The callbacks object must outlive the chainstate manager: the kernel keeps
        # raw pointers to its ctypes trampolines.
        self._callbacks = pbk.ValidationInterfaceCallbacks(block_checked=self._on_checked)
        self._cm = pbk.load_chainman(path, pbk.ChainType.REGTEST, validation_callbacks=self._callbacks)

    def _on_checked(self, _user, block, state) -> None:
        # `state` dies with the callback: copy what we need now. None means valid.
        invalid = state.validation_mode != pbk.ValidationMode.VALID
        self._verdicts[bytes(block.block_hash)] = state.block_validation_result if invalid else None

    def close(self) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            context = cm._context
            cm.__exit__(None, None, None)      # destroys the manager: flushes the chainstate
            context.__exit__(None, None, None)

    # --- the active chain ---

    @property
    def height(self) -> int:
        return self._cm.get_active_chain().height

    def entry_at(self, height: int) -> pbk.BlockTreeEntry:
        return self._cm.get_active_chain().block_tree_entries[height]

    def hash_at(self, height: int) -> bytes:
        return bytes(self.entry_at(height).block_hash)

    def entry(self, block_hash: bytes) -> pbk.BlockTreeEntry | None:
        if len(block_hash) != 32:
            return None
        key = pbk.BlockHash(block_hash)
        entries = self._cm.block_tree_entries
        return entries[key] if key in entries else None

    def header(self, block_hash: bytes) -> bytes | None:
        entry = self.entry(block_hash)
        return bytes(entry.block_header) if entry is not None else None

    def block(self, entry: pbk.BlockTreeEntry) -> pbk.Block | None:
        try:
            return self._cm.blocks[entry]
        except RuntimeError:               # header known, data not stored
            return None

    def median_time_past(self, entry: pbk.BlockTreeEntry) -> int:
        """BIP113: the median of the timestamps of this block and its 10 ancestors."""
        times = []
        for _ in range(11):
            times.append(BlockHeader.parse(bytes(entry.block_header)).time)
            if entry.height == 0:
                break
            entry = entry.previous
        times.sort()
        return times[len(times) // 2]

    # --- validation ---

    def process_block(self, raw: bytes) -> tuple[bytes, pbk.BlockValidationResult | None]:
        """Hand a block to the kernel. Returns (hash, verdict): verdict None unless the
        kernel checked the block and found it invalid. Raises BlockRejected if the
        kernel refused it before storing it."""
        try:
            block = kernel_block(raw)
        except ValueError:
            raise BlockRejected("block-decode-failed") from None
        block_hash = bytes(block.block_hash)
        self._verdicts.clear()
        try:
            self._cm.process_block(block)
        except pbk.ProcessBlockException:
            result = self._verdicts.get(block_hash)
            raise BlockRejected(self.reason(result), to_display_hex(block_hash)) from None
        finally:
            verdicts, self._verdicts = self._verdicts, {}
        if verdicts.get(block_hash) is not None:
            return block_hash, verdicts[block_hash]
        # A block of the submitted branch below it may be the one that failed to connect.
        failed = [r for r in verdicts.values() if r is not None]
        return block_hash, failed[0] if failed else None

    @staticmethod
    def reason(result: pbk.BlockValidationResult | None) -> str:
        return _RESULT_REASON.get(result, "rejected") if result is not None else "rejected"
