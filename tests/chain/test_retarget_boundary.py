"""A header with the wrong nBits at a retarget boundary is refused by the retarget rule itself,
even though its proof of work under the bits it carries passes.

Real mainnet headers cannot be re-ground with other bits in a test, so the case is derived on a
synthetic testnet4-rules chain (2016-block retarget, 20-minute rule, BIP94) with a high pow limit:
the period's first block is hard, every later block of the period is a 20-minute min-difficulty
block (cheap to grind), and BIP94 retargets from the first block. At the boundary the 20-minute
rule no longer applies, so a header that keeps the easy bits is refused as bad-diffbits although
its hash is far below the target those bits give.
"""
from __future__ import annotations

import pytest

from milagro_tls.chain.errors import HeaderRejected
from milagro_tls.chain.header import BlockHeader, bits_to_target
from milagro_tls.chain.headerchain import Checkpoint, HeaderChain
from milagro_tls.chain.network import Network
from milagro_tls.chain.rules import RETARGET_INTERVAL, Retargeting

POW_LIMIT = 0x207FFFFF
#: The period's first block: hard enough that target × timespan stays below 2**256 (as on the
#: real networks), so the retarget does not wrap like arith_uint256 would.
FIRST_BITS = 0x1E03FFFF
FIRST_TIME = 1_700_000_000
#: A solution for the first block, found once by ``_grind`` (about a million hashes); the
#: fixture re-checks it rather than trusting it.
FIRST_NONCE = 1_102_275
MIN_DIFFICULTY_GAP = 1201       # more than 20 minutes after the parent: pow-limit bits allowed


def _grind(header: BlockHeader) -> BlockHeader:
    nonce = header.nonce
    while True:
        candidate = BlockHeader(header.version, header.prev_hash, header.merkle_root, header.time,
                                header.bits, nonce)
        if int.from_bytes(candidate.hash, "little") <= bits_to_target(candidate.bits):
            return candidate
        nonce += 1


@pytest.fixture(scope="module")
def chain():
    first = BlockHeader(1, b"\x00" * 32, b"\x01" * 32, FIRST_TIME, FIRST_BITS, FIRST_NONCE)
    assert int.from_bytes(first.hash, "little") <= bits_to_target(FIRST_BITS)
    headers = [first]
    for _ in range(1, RETARGET_INTERVAL):
        parent = headers[-1]
        headers.append(_grind(BlockHeader(1, parent.hash, b"\x01" * 32, parent.time + MIN_DIFFICULTY_GAP,
                                          POW_LIMIT, 0)))
    chain = HeaderChain(":memory:", Network.TESTNET4, Checkpoint(RETARGET_INTERVAL, first.serialize(), 0),
                        rules=Retargeting(POW_LIMIT, allow_min_difficulty=True, enforce_bip94=True))
    assert chain.add_headers([h.serialize() for h in headers[1:]], now=headers[-1].time) == RETARGET_INTERVAL - 1
    return chain, headers


def test_boundary_header_with_easy_bits_is_refused_by_the_retarget_rule_although_its_pow_passes(chain):
    headers_chain, headers = chain
    parent = headers[-1]
    stale = _grind(BlockHeader(1, parent.hash, b"\x02" * 32, parent.time + MIN_DIFFICULTY_GAP, POW_LIMIT, 0))
    assert int.from_bytes(stale.hash, "little") <= bits_to_target(stale.bits)     # its own PoW passes
    expected = headers_chain.rules.expected_bits(headers_chain._view, 2 * RETARGET_INTERVAL, stale)
    assert expected != POW_LIMIT and bits_to_target(expected) < bits_to_target(POW_LIMIT)
    with pytest.raises(HeaderRejected) as info:
        headers_chain.add_headers([stale.serialize()], now=stale.time)
    assert info.value.rule == "bad-diffbits" and info.value.height == 2 * RETARGET_INTERVAL
    assert headers_chain.tip()[0] == 2 * RETARGET_INTERVAL - 1

