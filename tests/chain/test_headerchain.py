"""HeaderChain on real mainnet and testnet3 headers, and on regtest headers mined here."""
from __future__ import annotations

import sqlite3

import pytest
from helpers.fixtures import fixture_path

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import BlockNotFound, HeaderRejected, SourceError, TxNotFound
from milagro_tls.chain.hashes import from_display_hex, sha256d
from milagro_tls.chain.header import BlockHeader, bits_to_target, target_to_bits
from milagro_tls.chain.headerchain import GENESIS_HEADERS, RECENT_HEADERS, Checkpoint, HeaderChain
from milagro_tls.chain.network import PARAMS, Network
from milagro_tls.chain.rules import (RETARGET_INTERVAL, TARGET_TIMESPAN, Retargeting, UncheckedDifficulty,
                                     rules_for)
from milagro_tls.chain.source import ChainSource, Tip

MAINNET_START = 586656
MAINNET_TIP = "000000000000000000005d40cf4f919d7d113a563e9f1d735c0508b02baa6c5d"
TESTNET3_TIP = "000000002a936ca763904c3c35fce2f3556c559c0214345d31b1bcebf76acb70"
REGTEST_BITS = 0x207FFFFF
REGTEST_GENESIS = BlockHeader.parse(GENESIS_HEADERS[Network.REGTEST])


def _split(data: bytes) -> list[bytes]:
    return [data[i:i + 80] for i in range(0, len(data), 80)]


@pytest.fixture(scope="module")
def mainnet_headers() -> list[bytes]:
    return _split(fixture_path("headers", "mainnet_586656-589289.bin").read_bytes())


def _mainnet_chain(headers: list[bytes], path: str = ":memory:", **kwargs) -> HeaderChain:
    # Chainwork before 586656 is not in the fixture; counting from 0 keeps comparisons valid.
    return HeaderChain(path, Network.MAINNET, Checkpoint(MAINNET_START, headers[0], 0), **kwargs)


def mine(parent: BlockHeader, *, time: int | None = None, bits: int = REGTEST_BITS, tag: bytes = b"") -> bytes:
    """A regtest header on ``parent``; at 0x207fffff about every second nonce is valid."""
    root = sha256d(tag + parent.hash)
    timestamp = parent.time + 600 if time is None else time
    nonce = 0
    while True:
        header = BlockHeader(0x20000000, parent.hash, root, timestamp, bits, nonce)
        if int.from_bytes(header.hash, "little") <= header.target:
            return header.serialize()
        nonce += 1


def branch(parent: BlockHeader, count: int, tag: bytes) -> list[bytes]:
    raws = []
    for _ in range(count):
        raws.append(mine(parent, tag=tag))
        parent = BlockHeader.parse(raws[-1])
    return raws


def _hash(raw: bytes) -> bytes:
    return sha256d(raw)


# -- real mainnet headers -----------------------------------------------------

def test_mainnet_fixture_connects_with_valid_work_bits_and_times(mainnet_headers):
    chain = _mainnet_chain(mainnet_headers)
    assert chain.add_headers(mainnet_headers[1:]) == 2633
    assert chain.tip() == (589289, from_display_hex(MAINNET_TIP))
    # The retarget at 588672 was recomputed by the mainnet rules, not taken on trust.
    assert chain.header_at(588671).bits == 0x171F3A08
    assert chain.header_at(588672).bits == 0x171C3039
    assert chain.chainwork(chain.tip()[1]) == sum(BlockHeader.parse(h).work for h in mainnet_headers[1:])
    first = _hash(mainnet_headers[1])
    assert chain.height_of(first) == MAINNET_START + 1
    assert chain.confirmations(first) == 2633
    assert chain.header_at(MAINNET_START - 1) is None and chain.header_at(589290) is None


def test_mainnet_fixture_needs_median_time_past_not_parent_time(mainnet_headers):
    times = [BlockHeader.parse(h).time for h in mainnet_headers]
    assert any(later < earlier for earlier, later in zip(times, times[1:]))


def test_tampered_nonce_is_rejected_as_high_hash(mainnet_headers):
    chain = _mainnet_chain(mainnet_headers)
    tampered = bytearray(mainnet_headers[1])
    tampered[76] ^= 0x01
    with pytest.raises(HeaderRejected) as exc:
        chain.add_headers([bytes(tampered)])
    assert exc.value.rule == "high-hash" and exc.value.height == MAINNET_START + 1
    assert chain.tip()[0] == MAINNET_START


def test_broken_link_is_rejected_and_the_headers_before_it_are_kept(mainnet_headers):
    chain = _mainnet_chain(mainnet_headers)
    with pytest.raises(HeaderRejected) as exc:
        chain.add_headers(mainnet_headers[1:3] + mainnet_headers[4:6])
    assert exc.value.rule == "bad-prevblk"
    assert chain.tip() == (MAINNET_START + 2, _hash(mainnet_headers[2]))


def test_header_more_than_two_hours_ahead_is_rejected_as_time_too_new(mainnet_headers):
    chain = _mainnet_chain(mainnet_headers)
    header_time = BlockHeader.parse(mainnet_headers[1]).time
    with pytest.raises(HeaderRejected) as exc:
        chain.add_headers(mainnet_headers[1:2], now=header_time - 2 * 3600 - 1)
    assert exc.value.rule == "time-too-new"
    assert chain.add_headers(mainnet_headers[1:2], now=header_time - 2 * 3600) == 1


def test_known_headers_are_not_counted_again(mainnet_headers):
    chain = _mainnet_chain(mainnet_headers)
    assert chain.add_headers(mainnet_headers[1:100]) == 99
    assert chain.add_headers(mainnet_headers[:150]) == 50
    assert chain.tip()[0] == MAINNET_START + 149


def test_reopening_the_file_keeps_the_tip_and_continues(mainnet_headers, tmp_path):
    path = str(tmp_path / "headers.sqlite")
    with _mainnet_chain(mainnet_headers, path) as chain:
        chain.add_headers(mainnet_headers[1:1500])
        tip = chain.tip()
    with HeaderChain(path, Network.MAINNET) as chain:
        assert chain.tip() == tip
        assert chain.header_at(MAINNET_START + 700).serialize() == mainnet_headers[700]
        assert chain.add_headers(mainnet_headers[1500:]) == 1134        # crosses the retarget
        assert chain.tip() == (589289, from_display_hex(MAINNET_TIP))
    with pytest.raises(ValueError, match="opened as"):
        HeaderChain(path, Network.TESTNET3)
    with pytest.raises(ValueError, match="different checkpoint"):
        HeaderChain(path, Network.MAINNET, Checkpoint(MAINNET_START + 1, mainnet_headers[1], 0))


def test_mainnet_checkpoint_must_start_a_retarget_period(mainnet_headers):
    with pytest.raises(ValueError, match="multiple of 2016"):
        HeaderChain(":memory:", Network.MAINNET, Checkpoint(MAINNET_START + 1, mainnet_headers[1], 0))
    unchecked = UncheckedDifficulty(PARAMS[Network.MAINNET].pow_limit_bits)
    chain = HeaderChain(":memory:", Network.MAINNET, Checkpoint(MAINNET_START + 1, mainnet_headers[1], 0),
                        rules=unchecked)
    assert chain.add_headers(mainnet_headers[2:]) == 2632


# -- testnet3 from its genesis -------------------------------------------------

def test_testnet3_genesis_built_from_its_fields_has_the_known_hash():
    genesis = BlockHeader(1, b"\x00" * 32,
                          from_display_hex("4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"),
                          1296688602, 0x1D00FFFF, 414098458)
    assert genesis.hash == PARAMS[Network.TESTNET3].genesis_hash
    assert genesis.serialize() == GENESIS_HEADERS[Network.TESTNET3]


@pytest.mark.parametrize("network", list(Network), ids=lambda n: n.label)
def test_every_genesis_header_hashes_to_the_network_genesis(network):
    assert sha256d(GENESIS_HEADERS[network]) == PARAMS[network].genesis_hash


@pytest.mark.parametrize("explicit_checkpoint", [True, False])
def test_testnet3_fixture_connects_to_genesis(explicit_checkpoint):
    genesis = GENESIS_HEADERS[Network.TESTNET3]
    checkpoint = Checkpoint(0, genesis, BlockHeader.parse(genesis).work) if explicit_checkpoint else None
    chain = HeaderChain(":memory:", Network.TESTNET3, checkpoint)
    headers = _split(fixture_path("headers", "testnet3_000001-000546.bin").read_bytes())
    assert chain.add_headers(headers) == 546
    assert chain.tip() == (546, from_display_hex(TESTNET3_TIP))
    assert chain.chainwork(chain.tip()[1]) == 547 * BlockHeader.parse(genesis).work


# -- regtest: forks, bits, times ----------------------------------------------

def test_fork_with_more_work_becomes_the_active_chain():
    chain = HeaderChain(":memory:", Network.REGTEST)
    a = branch(REGTEST_GENESIS, 3, b"a")
    b = branch(REGTEST_GENESIS, 4, b"b")
    chain.add_headers(a)
    assert chain.tip() == (3, _hash(a[-1]))
    assert chain.add_headers(b[:3]) == 3                 # equal work: the first seen stays
    assert chain.tip() == (3, _hash(a[-1]))
    chain.add_headers(b[3:])
    assert chain.tip() == (4, _hash(b[-1]))
    assert chain.height_of(_hash(a[1])) is None and chain.confirmations(_hash(a[2])) == 0
    assert chain.header_at(2).serialize() == b[1] and chain.confirmations(_hash(b[0])) == 4
    assert chain.header_by_hash(_hash(a[2])).serialize() == a[2]       # side branches are kept
    # Extending the old branch past it switches back, heights re-mapped again.
    a += branch(BlockHeader.parse(a[-1]), 2, b"a")
    chain.add_headers(a[3:])
    assert chain.tip() == (5, _hash(a[-1]))
    assert [chain.header_at(h).serialize() for h in range(1, 6)] == a
    assert chain.height_of(_hash(b[3])) is None


def test_reorg_deeper_than_the_in_memory_tail(tmp_path):
    path = str(tmp_path / "regtest.sqlite")
    a = branch(REGTEST_GENESIS, RECENT_HEADERS + 50, b"a")
    b = branch(REGTEST_GENESIS, RECENT_HEADERS + 51, b"b")
    with HeaderChain(path, Network.REGTEST) as chain:
        chain.add_headers(a)
        chain.add_headers(b[:100])                        # a side branch, stored
    with HeaderChain(path, Network.REGTEST) as chain:     # its headers now come from the file
        assert chain.add_headers(b[:100]) == 0            # known, though no longer in memory
        chain.add_headers(b[100:])
        assert chain.tip() == (len(b), _hash(b[-1]))
        assert chain.header_at(10).serialize() == b[9]
        assert chain.height_of(_hash(a[-1])) is None


def test_regtest_header_with_other_bits_is_rejected_as_bad_diffbits():
    chain = HeaderChain(":memory:", Network.REGTEST)
    with pytest.raises(HeaderRejected) as exc:
        chain.add_headers([mine(REGTEST_GENESIS, bits=0x207FFFFE)])
    assert exc.value.rule == "bad-diffbits"


def test_header_at_or_below_median_time_past_is_rejected_as_time_too_old():
    chain = HeaderChain(":memory:", Network.REGTEST)
    raws, parent = [], REGTEST_GENESIS
    for step in (600, 600, -500, 600, 600, 600, 600, 600, 600, 600, 600, 600):   # one step back in time
        raws.append(mine(parent, time=parent.time + step))
        parent = BlockHeader.parse(raws[-1])
    chain.add_headers(raws)
    times = sorted(BlockHeader.parse(h).time for h in raws[-11:])
    median = times[5]
    with pytest.raises(HeaderRejected) as exc:
        chain.add_headers([mine(parent, time=median)])
    assert exc.value.rule == "time-too-old"
    assert chain.add_headers([mine(parent, time=median + 1)]) == 1


def test_near_genesis_the_median_is_over_the_headers_there_are():
    chain = HeaderChain(":memory:", Network.REGTEST)
    with pytest.raises(HeaderRejected) as exc:
        chain.add_headers([mine(REGTEST_GENESIS, time=REGTEST_GENESIS.time)])
    assert exc.value.rule == "time-too-old"


def test_regtest_time_too_new_uses_the_given_clock():
    chain = HeaderChain(":memory:", Network.REGTEST)
    raw = mine(REGTEST_GENESIS, time=REGTEST_GENESIS.time + 10_000)
    with pytest.raises(HeaderRejected) as exc:
        chain.add_headers([raw], now=REGTEST_GENESIS.time)
    assert exc.value.rule == "time-too-new"


# -- the SQLite file ----------------------------------------------------------

def test_reorg_in_a_file_moves_the_old_branch_aside_and_back(tmp_path):
    path = str(tmp_path / "regtest.sqlite")
    a = branch(REGTEST_GENESIS, 3, b"a")
    b = branch(REGTEST_GENESIS, 4, b"b")
    with HeaderChain(path, Network.REGTEST) as chain:
        chain.add_headers(a)
        chain.add_headers(b)
    with HeaderChain(path, Network.REGTEST) as chain:              # the old branch comes from the file
        assert chain.tip() == (4, _hash(b[-1]))
        assert chain.header_by_hash(_hash(a[2])).serialize() == a[2]
        assert chain.chainwork(_hash(a[2])) == 4 * REGTEST_GENESIS.work and chain.height_of(_hash(a[2])) is None
        assert chain.add_headers(a) == 0                          # known, though not in memory
        a += branch(BlockHeader.parse(a[-1]), 2, b"a")            # back to a, its start read from the file
        assert chain.add_headers(a[3:]) == 2
    with HeaderChain(path, Network.REGTEST) as chain:
        assert chain.tip() == (5, _hash(a[-1]))
        assert [chain.header_at(h).serialize() for h in range(1, 6)] == a
        assert chain.header_by_hash(_hash(b[3])).serialize() == b[3] and chain.height_of(_hash(b[3])) is None
        assert chain.confirmations(_hash(a[0])) == 5


def test_a_batch_with_both_a_side_branch_and_the_tip_extension_stores_both(tmp_path):
    path = str(tmp_path / "regtest.sqlite")
    a = branch(REGTEST_GENESIS, 3, b"a")
    side = branch(REGTEST_GENESIS, 2, b"side")
    with HeaderChain(path, Network.REGTEST) as chain:
        chain.add_headers(a[:2])
        assert chain.add_headers([side[0], a[2], side[1]]) == 3
    with HeaderChain(path, Network.REGTEST) as chain:
        assert chain.tip() == (3, _hash(a[2]))
        assert chain.header_by_hash(_hash(side[1])).serialize() == side[1]
        assert chain.height_of(_hash(side[1])) is None and chain.height_of(_hash(a[1])) == 2


def test_headers_whose_hashes_share_the_index_key_are_told_apart(mainnet_headers, tmp_path):
    # Rows are found by the hash's first 8 bytes, then checked by hashing the header: plant a
    # row with the same 8 bytes but another header, where only the file can answer.
    path = str(tmp_path / "headers.sqlite")
    with _mainnet_chain(mainnet_headers, path) as chain:
        chain.add_headers(mainnet_headers[1:])
    first = _hash(mainnet_headers[1])
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO forks VALUES (?, ?, ?, ?)",
                   (first[:8], MAINNET_START + 2, mainnet_headers[2], bytes(32)))
    db.close()
    with HeaderChain(path, Network.MAINNET) as chain:
        assert RECENT_HEADERS < 2633                              # so the first header is not in memory
        assert chain.header_by_hash(first).serialize() == mainnet_headers[1]
        assert chain.height_of(first) == MAINNET_START + 1
        assert chain.header_by_hash(first[:8] + bytes(24)) is None
        assert chain.add_headers(mainnet_headers[1:20]) == 0


def test_two_chains_on_one_file_see_each_others_headers(tmp_path):
    """Two processes (here two connections) syncing into the same default file: a write is
    validated against the file's tip, not against a copy of it that the other has moved on."""
    path = str(tmp_path / "regtest.sqlite")
    strong = branch(REGTEST_GENESIS, 6, b"strong")
    weak = branch(REGTEST_GENESIS, 4, b"weak")
    with HeaderChain(path, Network.REGTEST) as one:
        one.add_headers(strong[:2])
        with HeaderChain(path, Network.REGTEST) as two:       # its copy: tip 2
            assert one.add_headers(strong[2:]) == 4
            assert two.tip() == (6, _hash(strong[-1]))            # a read catches up
            assert two.add_headers(strong) == 0                   # known, though stored by the other
            assert two.add_headers(weak) == 4                     # 4 < 6: a side branch
            assert one.tip() == two.tip() == (6, _hash(strong[-1]))
        # the other way round: a chain whose copy is stale when it writes
        more = branch(BlockHeader.parse(strong[-1]), 2, b"strong")
        with HeaderChain(path, Network.REGTEST) as three:
            assert three.tip()[0] == 6
            assert one.add_headers(more) == 2
            assert three.add_headers(branch(BlockHeader.parse(weak[-1]), 3, b"weak")) == 3   # 7 < 8
            assert three.tip() == (8, _hash(more[-1])) and three.height_of(_hash(weak[0])) is None
    with HeaderChain(path, Network.REGTEST) as reopened:
        assert reopened.tip() == (8, _hash(more[-1]))
        assert [reopened.header_at(h).serialize() for h in range(1, 9)] == strong + more


class _FailingWrites:
    """A connection that fails the statement appending to the active chain (a full disk)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql, *args):
        if sql.startswith("WITH RECURSIVE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_a_failed_write_rolls_back_the_batch_and_the_memory(tmp_path):
    path = str(tmp_path / "regtest.sqlite")
    a = branch(REGTEST_GENESIS, 5, b"a")
    with HeaderChain(path, Network.REGTEST) as chain:
        chain.add_headers(a[:2])
        real, chain._db = chain._db, _FailingWrites(chain._db)
        with pytest.raises(sqlite3.OperationalError):
            chain.add_headers(a[2:])
        chain._db = real
        assert not real.in_transaction
        assert chain.tip() == (2, _hash(a[1])) and chain.header_by_hash(_hash(a[2])) is None
        assert chain.add_headers(a[2:]) == 3                     # not mistaken for known headers
        assert chain.tip() == (5, _hash(a[-1]))
    with HeaderChain(path, Network.REGTEST) as chain:
        assert [chain.header_at(h).serialize() for h in range(1, 6)] == a


def _write_unversioned_file(path: str, active: list[bytes], side: list[bytes]) -> None:
    """A regtest chain from genesis in the layout written before the file had a version."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
        CREATE TABLE headers (
            hash BLOB PRIMARY KEY, height INTEGER NOT NULL, chainwork BLOB NOT NULL, raw BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE active (height INTEGER PRIMARY KEY, hash BLOB NOT NULL);
    """)
    genesis = GENESIS_HEADERS[Network.REGTEST]
    with db:
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("network", int(Network.REGTEST)), ("checkpoint_height", 0),
                                                          ("checkpoint_hash", _hash(genesis))])
        for raws, is_active in (([genesis] + active, True), (side, False)):
            for height, raw in enumerate(raws, start=0 if is_active else 1):
                work = ((height + 1) * REGTEST_GENESIS.work).to_bytes(32, "big")
                db.execute("INSERT INTO headers VALUES (?, ?, ?, ?)", (_hash(raw), height, work, raw))
                if is_active:
                    db.execute("INSERT INTO active VALUES (?, ?)", (height, _hash(raw)))
    db.close()


def test_a_file_of_the_unversioned_layout_is_migrated_on_open(tmp_path):
    path = str(tmp_path / "regtest.sqlite")
    a = branch(REGTEST_GENESIS, 5, b"a")
    b = branch(REGTEST_GENESIS, 3, b"b")
    _write_unversioned_file(path, a, b)
    with HeaderChain(path, Network.REGTEST) as chain:
        assert chain.tip() == (5, _hash(a[-1]))
        assert chain.header_at(3).serialize() == a[2] and chain.chainwork(_hash(a[-1])) == 6 * REGTEST_GENESIS.work
        assert chain.header_by_hash(_hash(b[-1])).serialize() == b[-1] and chain.height_of(_hash(b[-1])) is None
        assert chain.add_headers(a + b) == 0
        b += branch(BlockHeader.parse(b[-1]), 3, b"b")            # 6 > 5: the migrated side branch wins
        assert chain.add_headers(b[3:]) == 3
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name IN ('headers', 'active')").fetchall()
    db.close()
    with HeaderChain(path, Network.REGTEST) as chain:
        assert chain.tip() == (6, _hash(b[-1]))
        assert [chain.header_at(h).serialize() for h in range(1, 7)] == b
        assert chain.header_by_hash(_hash(a[-1])).serialize() == a[-1]
    with pytest.raises(ValueError, match="different checkpoint"):
        HeaderChain(path, Network.REGTEST, Checkpoint(1, a[0], 0))


def test_a_file_of_a_newer_layout_is_refused(tmp_path):
    path = str(tmp_path / "regtest.sqlite")
    HeaderChain(path, Network.REGTEST).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.close()
    with pytest.raises(ValueError, match="layout version 2"):
        HeaderChain(path, Network.REGTEST)


# -- the difficulty rules on synthetic chains ---------------------------------

class ListView:
    """rules.ChainView over one linear list of headers starting at height ``base``."""

    def __init__(self, headers: list[BlockHeader], base: int) -> None:
        self.headers, self.base = headers, base
        self.by_hash = {h.hash: h for h in headers}

    def header(self, block_hash: bytes) -> BlockHeader:
        return self.by_hash[block_hash]

    def ancestor(self, block_hash: bytes, height: int) -> BlockHeader:
        return self.headers[height - self.base]


LIMIT = 0x1D00FFFF
REGULAR = 0x1C00FFFF


def _period(bits_at: dict[int, int], spacing: int = 600, last_time_offset: int = 0) -> ListView:
    """Heights 2016..4031 (one whole period), bits REGULAR unless ``bits_at`` says otherwise."""
    headers, prev = [], b"\x00" * 32
    for height in range(RETARGET_INTERVAL, 2 * RETARGET_INTERVAL):
        t = 1_700_000_000 + (height - RETARGET_INTERVAL) * spacing
        if height == 2 * RETARGET_INTERVAL - 1:
            t += last_time_offset
        header = BlockHeader(1, prev, b"\x00" * 32, t, bits_at.get(height, REGULAR), 0)
        headers.append(header)
        prev = header.hash
    return ListView(headers, RETARGET_INTERVAL)


def _next(view: ListView, delay: int) -> BlockHeader:
    parent = view.headers[-1]
    return BlockHeader(1, parent.hash, b"\x00" * 32, parent.time + delay, REGULAR, 0)


def test_retarget_keeps_bits_when_the_period_took_two_weeks_of_2015_intervals():
    view = _period({}, last_time_offset=600)          # 2015 intervals spanning exactly two weeks
    assert Retargeting(LIMIT).expected_bits(view, 2 * RETARGET_INTERVAL, _next(view, 600)) == REGULAR


@pytest.mark.parametrize("spacing, factor", [(1, 4), (600 * 100, 1 / 4)])
def test_retarget_is_clamped_to_a_factor_of_four(spacing, factor):
    view = _period({}, spacing=spacing)
    bits = Retargeting(0x207FFFFF).expected_bits(view, 2 * RETARGET_INTERVAL, _next(view, 600))
    expected = bits_to_target(REGULAR) * TARGET_TIMESPAN // 4 // TARGET_TIMESPAN if factor == 4 else \
        bits_to_target(REGULAR) * TARGET_TIMESPAN * 4 // TARGET_TIMESPAN
    assert bits == target_to_bits(expected)


def test_retarget_is_capped_at_the_pow_limit():
    view = _period({h: LIMIT for h in range(RETARGET_INTERVAL, 2 * RETARGET_INTERVAL)}, spacing=6000)
    assert Retargeting(LIMIT).expected_bits(view, 2 * RETARGET_INTERVAL, _next(view, 600)) == LIMIT


def test_testnet_twenty_minute_rule_and_walk_back_over_min_difficulty_blocks():
    view = _period({4029: LIMIT, 4030: LIMIT, 4031: LIMIT})
    testnet = Retargeting(LIMIT, allow_min_difficulty=True)
    height = 2 * RETARGET_INTERVAL - 1                 # 4031's child would retarget: use 4030's
    view.headers.pop()
    parent_hash = view.headers[-1].hash
    late = BlockHeader(1, parent_hash, b"\x00" * 32, view.headers[-1].time + 1201, REGULAR, 0)
    on_time = BlockHeader(1, parent_hash, b"\x00" * 32, view.headers[-1].time + 1200, REGULAR, 0)
    assert testnet.expected_bits(view, height, late) == LIMIT
    assert testnet.expected_bits(view, height, on_time) == REGULAR     # skips 4029 and 4030
    assert Retargeting(LIMIT).expected_bits(view, height, on_time) == LIMIT   # mainnet: parent's


def test_bip94_retargets_from_the_first_block_of_the_period():
    view = _period({4031: LIMIT}, last_time_offset=600)      # exactly two weeks
    child = _next(view, 600)
    testnet3 = Retargeting(LIMIT, allow_min_difficulty=True)
    testnet4 = rules_for(Network.TESTNET4)
    assert testnet3.expected_bits(view, 2 * RETARGET_INTERVAL, child) == LIMIT    # the storm bug
    assert testnet4.expected_bits(view, 2 * RETARGET_INTERVAL, child) == REGULAR


def test_bip94_rejects_a_time_warp_at_the_period_start():
    view = _period({})
    testnet4 = rules_for(Network.TESTNET4)
    testnet4.check_contextual(view, 2 * RETARGET_INTERVAL, _next(view, -600))
    with pytest.raises(HeaderRejected) as exc:
        testnet4.check_contextual(view, 2 * RETARGET_INTERVAL, _next(view, -601))
    assert exc.value.rule == "time-timewarp-attack"
    rules_for(Network.TESTNET3).check_contextual(view, 2 * RETARGET_INTERVAL, _next(view, -601))


# -- syncing from a source ----------------------------------------------------

class ListSource(ChainSource):
    """A ChainSource serving a list of regtest headers (genesis first); nothing else."""

    network = Network.REGTEST

    def __init__(self, raws: list[bytes]) -> None:
        self.raws = [GENESIS_HEADERS[Network.REGTEST]] + raws

    def tip(self) -> Tip:
        return Tip(len(self.raws) - 1, sha256d(self.raws[-1]))

    def header(self, height: int) -> bytes:
        if not 0 <= height < len(self.raws):
            raise BlockNotFound(str(height))
        return self.raws[height]

    def block(self, block_hash):
        raise BlockNotFound(block_hash.hex())

    def transaction(self, txid, block_hash=None):
        raise TxNotFound(txid.hex())

    tx_status = transaction

    def outspend_unverified(self, txid, vout):
        raise TxNotFound(txid.hex())

    def broadcast(self, raw_tx):
        raise AssertionError("header sync must never broadcast")


def test_sync_from_follows_a_source_on_another_branch_back_to_the_fork():
    shared = branch(REGTEST_GENESIS, 5, b"s")
    ours = shared + branch(BlockHeader.parse(shared[-1]), 3, b"ours")
    theirs = shared + branch(BlockHeader.parse(shared[-1]), 6, b"theirs")
    chain = HeaderChain(":memory:", Network.REGTEST)
    assert chain.sync_from(ListSource(ours), batch=3) == 8
    assert chain.tip() == (8, _hash(ours[-1]))
    assert chain.sync_from(ListSource(theirs), batch=4) == 6
    assert chain.tip() == (11, _hash(theirs[-1]))
    assert chain.sync_from(ListSource(theirs)) == 0


def test_sync_from_a_source_that_reorganises_mid_read_looks_for_the_fork_again():
    shared = branch(REGTEST_GENESIS, 5, b"s")
    old = shared + branch(BlockHeader.parse(shared[-1]), 4, b"old")
    new = shared + branch(BlockHeader.parse(shared[-1]), 7, b"new")

    class Reorganising(ListSource):
        """Serves ``old`` until its first page of headers is read, then ``new``."""
        pages = 0

        def headers(self, start, count):
            page = super().headers(start, count)
            self.pages += 1
            if self.pages == 1:
                self.raws = [GENESIS_HEADERS[Network.REGTEST]] + new
            return page

    chain = HeaderChain(":memory:", Network.REGTEST)
    chain.add_headers(shared)
    source = Reorganising(old)
    # 3 of old's; then new's 9..11 do not connect (bad-prevblk); the fork is found again at 5
    assert chain.sync_from(source, batch=3) == 3 + 7
    assert source.pages > 2
    assert chain.tip() == (12, _hash(new[-1]))
    assert chain.header_by_hash(_hash(old[7])) is not None and chain.height_of(_hash(old[7])) is None


def test_sync_from_a_weaker_branch_stores_it_without_moving_the_tip():
    chain = HeaderChain(":memory:", Network.REGTEST)
    strong = branch(REGTEST_GENESIS, 6, b"strong")
    weak = branch(REGTEST_GENESIS, 4, b"weak")
    chain.add_headers(strong)
    assert chain.sync_from(ListSource(weak)) == 4
    assert chain.tip() == (6, _hash(strong[-1]))
    assert chain.header_by_hash(_hash(weak[-1])) is not None


def test_sync_from_a_source_of_another_chain_or_network_fails():
    with pytest.raises(ValueError, match="regtest"):
        HeaderChain(":memory:", Network.MAINNET).sync_from(ListSource([]))
    ours = branch(REGTEST_GENESIS, 2, b"x")
    chain = HeaderChain(":memory:", Network.REGTEST, Checkpoint(2, ours[1], 3 * REGTEST_GENESIS.work))
    with pytest.raises(SourceError):                   # disagrees at the checkpoint itself
        chain.sync_from(ListSource(branch(REGTEST_GENESIS, 4, b"y")))
    assert chain.sync_from(ListSource(ours + branch(BlockHeader.parse(ours[1]), 2, b"x"))) == 2


def test_sync_from_the_embedded_node_follows_its_reorg(tmp_path):
    with EmbeddedSource.open(tmp_path / "node") as source:
        source.mine(5)
        chain = HeaderChain(":memory:", Network.REGTEST)
        assert chain.sync_from(source) == 5
        parent = source.node.block_hash(3)
        for _ in range(4):                                # 3 + 4 = 7 > 5: the node reorgs
            raw = source.node.build_block([], parent=parent)
            source.node.submit_block(raw)
            parent = _hash(raw[:80])
        assert source.tip().height == 7
        assert chain.sync_from(source) == 4                # the new branch from height 4 on
        assert chain.tip() == (source.tip().height, source.tip().block_hash)
        assert [chain.header_at(h).serialize() for h in range(8)] == source.headers(0, 8)
