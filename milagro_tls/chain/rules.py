"""Per-network header rules: which nBits a header must carry, and network-only checks.

HeaderChain does the checks every network shares (linkage, proof of work, median
time past, future time); a ``NetworkRules`` object adds what differs per network.
They mirror Core's pow.cpp (``GetNextWorkRequired``, ``CalculateNextWorkRequired``)
and the BIP94 part of ``ContextualCheckBlockHeader``.

    NetworkRules               the interface
     ├── NoRetargeting         regtest (fPowNoRetargeting)
     ├── Retargeting           mainnet, signet; testnet3 (20-minute rule); testnet4 (+ BIP94)
     └── UncheckedDifficulty   tests and benchmarks only: any nBits the PoW check accepts
"""
from __future__ import annotations

import abc
from typing import Protocol

from .errors import HeaderRejected
from .header import BlockHeader, bits_to_target, target_to_bits
from .network import PARAMS, Network

#: Core's consensus params: nPowTargetSpacing (10 min) and nPowTargetTimespan (two weeks).
TARGET_SPACING = 10 * 60
TARGET_TIMESPAN = 14 * 24 * 60 * 60
#: DifficultyAdjustmentInterval() = timespan / spacing.
RETARGET_INTERVAL = TARGET_TIMESPAN // TARGET_SPACING
#: BIP94: the first block of a period may not be more than 600 s before its parent.
MAX_TIMEWARP = 600
#: Entries kept by the testnet walk-back memo before it is dropped (bounded memory).
_MEMO_LIMIT = 50_000
_UINT256 = (1 << 256) - 1


class ChainView(Protocol):
    """What a rule may read: headers already accepted, including earlier ones of the batch."""

    def header(self, block_hash: bytes) -> BlockHeader:
        """The known header with this hash (KeyError if unknown)."""

    def ancestor(self, block_hash: bytes, height: int) -> BlockHeader:
        """The header at ``height`` on the branch that ends at ``block_hash``."""


class NetworkRules(abc.ABC):
    """The rules HeaderChain asks about one header at ``height``; its parent is known."""

    def __init__(self, pow_limit_bits: int) -> None:
        self.pow_limit_bits = pow_limit_bits

    @abc.abstractmethod
    def expected_bits(self, chain: ChainView, height: int, header: BlockHeader) -> int:
        """The nBits ``header`` must carry (Core: GetNextWorkRequired); else bad-diffbits."""

    def check_contextual(self, chain: ChainView, height: int, header: BlockHeader) -> None:
        """Network-only checks beyond bits and time; raise HeaderRejected. Default: none."""

    def validate_checkpoint(self, height: int) -> None:
        """Raise ValueError if a chain starting at ``height`` could not apply these rules."""


class NoRetargeting(NetworkRules):
    """Regtest: nBits never changes (fPowNoRetargeting).

    Core also sets fPowAllowMinDifficultyBlocks on regtest, but its chain sits at the
    pow limit from genesis on, so that rule yields the parent's bits as well.
    """

    def expected_bits(self, chain: ChainView, height: int, header: BlockHeader) -> int:
        return chain.header(header.prev_hash).bits


class Retargeting(NetworkRules):
    """The 2016-block retarget of Core's pow.cpp, with the testnet exceptions as flags.

    ``allow_min_difficulty``: testnet3/testnet4's 20-minute rule (fPowAllowMinDifficultyBlocks).
    ``enforce_bip94``: testnet4 retargets from the period's first block and rejects time warps.
    """

    def __init__(self, pow_limit_bits: int, *, allow_min_difficulty: bool = False,
                 enforce_bip94: bool = False) -> None:
        super().__init__(pow_limit_bits)
        self.allow_min_difficulty = allow_min_difficulty
        self.enforce_bip94 = enforce_bip94
        # Core caps at the full-precision powLimit; capping at the compact form's
        # target gives the same GetCompact() result for every network's limit.
        self._pow_limit = bits_to_target(pow_limit_bits)
        self._regular_bits_memo: dict[bytes, int] = {}

    def validate_checkpoint(self, height: int) -> None:
        # A retarget at height h reads the header at h - 2016, and the testnet walk-back
        # stops at period starts; both stay above a checkpoint that starts a period.
        if height % RETARGET_INTERVAL:
            raise ValueError(f"checkpoint height {height} must be a multiple of {RETARGET_INTERVAL}")

    def expected_bits(self, chain: ChainView, height: int, header: BlockHeader) -> int:
        parent = chain.header(header.prev_hash)
        if height % RETARGET_INTERVAL:
            if not self.allow_min_difficulty:
                return parent.bits
            # The 20-minute rule: a block more than twice the spacing after its parent may
            # use the pow limit; otherwise the last bits that were not such an exception.
            if header.time > parent.time + 2 * TARGET_SPACING:
                return self.pow_limit_bits
            return self._last_regular_bits(chain, header.prev_hash, height - 1)
        # Off-by-one kept from Satoshi's code: the span is measured over 2015 intervals,
        # from the period's first block (h - 2016) to its last (h - 1).
        first = chain.ancestor(header.prev_hash, height - RETARGET_INTERVAL)
        timespan = min(max(parent.time - first.time, TARGET_TIMESPAN // 4), TARGET_TIMESPAN * 4)
        # BIP94 ("block storm" fix): start from the period's first block, which the
        # 20-minute rule cannot have lowered, instead of its last.
        base_bits = first.bits if self.enforce_bip94 else parent.bits
        # arith_uint256 arithmetic wraps at 2**256; mirror it.
        target = (bits_to_target(base_bits) * timespan) & _UINT256
        target //= TARGET_TIMESPAN
        return target_to_bits(min(target, self._pow_limit))

    def check_contextual(self, chain: ChainView, height: int, header: BlockHeader) -> None:
        # BIP94 time-warp fix, Core's "time-timewarp-attack".
        if self.enforce_bip94 and height % RETARGET_INTERVAL == 0:
            parent = chain.header(header.prev_hash)
            if header.time < parent.time - MAX_TIMEWARP:
                raise HeaderRejected("time-timewarp-attack", header.hash_hex, height)

    def _last_regular_bits(self, chain: ChainView, block_hash: bytes, height: int) -> int:
        """Core's walk back over pow-limit blocks inside the period (GetNextWorkRequired).

        Memoised by hash: during a testnet min-difficulty storm every header would
        otherwise walk up to 2015 ancestors.
        """
        memo = self._regular_bits_memo
        walked = []
        while block_hash not in memo:
            header = chain.header(block_hash)
            if height % RETARGET_INTERVAL == 0 or header.bits != self.pow_limit_bits:
                bits = header.bits
                break
            walked.append(block_hash)
            block_hash, height = header.prev_hash, height - 1
        else:
            bits = memo[block_hash]
        if len(memo) + len(walked) > _MEMO_LIMIT:
            memo.clear()
        for seen in walked:
            memo[seen] = bits
        return bits


class UncheckedDifficulty(NetworkRules):
    """Accepts any nBits (the PoW check still caps the target at the pow limit).

    For tests and benchmarks that start from a checkpoint without a period's history.
    Never use it for a chain whose headers come from someone else.
    """

    def expected_bits(self, chain: ChainView, height: int, header: BlockHeader) -> int:
        return header.bits


def rules_for(network: Network) -> NetworkRules:
    params = PARAMS[network]
    if params.no_retargeting:
        return NoRetargeting(params.pow_limit_bits)
    return Retargeting(params.pow_limit_bits, allow_min_difficulty=params.allow_min_difficulty,
                       enforce_bip94=network is Network.TESTNET4)
