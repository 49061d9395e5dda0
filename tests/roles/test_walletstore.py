"""The store-backed wallet record and root-chain lock (roles.walletstore), on SQLite and on a real
PostgreSQL: concurrent funders with separate engines (as separate machines would have) never pick
the same coin, the lock really excludes, wallet.json is adopted once, and concurrent root
anchorers build one chain."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from milagro_tls.chain.errors import TxRejected
from milagro_tls.chain.tx import parse_tx
from milagro_tls.identity.marker import Marker, MarkerType
from milagro_tls.identity.party import Party
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.identity.wallet import AnchoringWallet
from milagro_tls.identity.wallet_record import SentTx, WalletRecord
from milagro_tls.roles.store import open_store
from milagro_tls.roles.walletstore import (StoreWalletRecord, advisory_key, pg_advisory_lock, store_root_anchorer,
                                           store_wallet, wallet_id)

COIN = 20_000


def _script(i: int) -> bytes:
    """A distinct P2WPKH payee per payment."""
    return b"\x00\x14" + hashlib.sha256(b"payee %d" % i).digest()[:20]


def _fund_fee_key(world, home, coins: int) -> None:
    script = AnchoringWallet(home, world.source).script_pubkey
    for _ in range(coins):
        world.source.faucet(script, COIN)
    world.source.mine(1)


def _prepare(store_url, home) -> None:
    """Create and migrate the store once before the concurrent workers start, as gunicorn's master
    does: two connections switching a brand-new SQLite file to WAL at the same instant can get
    "database is locked" at once (SQLite does not wait on the busy timeout for that)."""
    with open_store(store_url, home) as store:
        StoreWalletRecord(store, wallet_id(home), home)


def _inputs(source, txid: bytes) -> set:
    return {(bytes(i.txid), i.vout) for i in parse_tx(source.transaction(txid)).vin}


def _entry(n: int, created: int = 1) -> SentTx:
    return SentTx(hashlib.sha256(b"tx %d" % n).digest(), b"raw %d" % n, 100 + n, None if n % 2 else 1, created,
                  f"label {n}")


def test_record_keeps_order_drops_and_moves_to_the_end(tmp_path, store_url):
    store = open_store(store_url, tmp_path)
    record, other = StoreWalletRecord(store, "w1", tmp_path), StoreWalletRecord(store, "w2", tmp_path)
    a, b, c = _entry(1), _entry(2), _entry(3)
    record.save([a, b, c])
    other.save([c])
    assert record.load() == [a, b, c]
    b_again = _entry(2, created=99)            # the wallet re-records a transaction: it moves to the end
    record.save([a, c, b_again])
    assert record.load() == [a, c, b_again]
    record.save([c, b_again, _entry(4)])
    assert record.load() == [c, b_again, _entry(4)]
    assert other.load() == [c]                 # another fee key's record is untouched
    record.save([])
    assert record.load() == [] and other.load() == [c]


def test_concurrent_funders_with_separate_engines_never_pick_one_coin(tmp_path, store_url, world):
    home = tmp_path / "home"
    _fund_fee_key(world, home, 6)
    _prepare(store_url, home)
    threads_n, each = 4, 3
    barrier = threading.Barrier(threads_n)
    sent: list[bytes] = []
    errors: list[BaseException] = []

    def funder(t: int) -> None:
        store = open_store(store_url, home)    # its own engine and connections, like another machine
        try:
            wallet = store_wallet(home, world.source, store)
            barrier.wait()
            for k in range(each):
                sent.append(wallet.fund(_script(100 * t + k), 5_000, fee_rate=1.0, label=f"t{t} #{k}").txid)
        except BaseException as exc:           # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=funder, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(set(sent)) == threads_n * each
    spent = [_inputs(world.source, txid) for txid in sent]
    assert sum(len(s) for s in spent) == len(set().union(*spent))        # no outpoint spent twice
    world.source.mine(1)
    assert all(world.source.tx_status(txid).block_hash is not None for txid in sent)
    with open_store(store_url, home) as store:
        recorded = StoreWalletRecord(store, wallet_id(home), home).load()
    assert sorted(e.txid for e in recorded) == sorted(sent)
    assert not (home / "wallet.json").exists()                          # nothing went to the file


class _UnlockedRecord(StoreWalletRecord):
    """The negative control's record: the same table, no lock."""

    def lock(self):
        return contextlib.nullcontext()


def test_without_the_lock_two_funders_do_pick_one_coin(tmp_path, world):
    """What the tests above would catch: a second funder selecting while the first has built but
    not yet recorded and sent (here: from inside the first's before_record) takes the same coin,
    and one of the two spends is refused."""
    home = tmp_path / "home"
    _fund_fee_key(world, home, 2)
    first_store, second_store = open_store(None, home), open_store(None, home)
    first = AnchoringWallet(home, world.source, record=_UnlockedRecord(first_store, wallet_id(home), home))
    second = AnchoringWallet(home, world.source, record=_UnlockedRecord(second_store, wallet_id(home), home))
    built: list = []

    def meanwhile(first_built) -> None:
        built.append(first_built)
        built.append(second.fund(_script(902), 5_000, fee_rate=1.0))

    with pytest.raises(TxRejected) as refused:
        first.fund(_script(901), 5_000, fee_rate=1.0, before_record=meanwhile)
    first_inputs = {(bytes(i.txid), i.vout) for i in parse_tx(built[0].raw).vin}
    assert first_inputs == _inputs(world.source, built[1].txid)       # the same coin, twice
    assert "conflict" in refused.value.reason or "spent" in refused.value.reason, refused.value.reason
    first_store.close()
    second_store.close()


def test_the_lock_holds_across_build_record_and_send(tmp_path, store_url, world):
    """A second funder (own engine) waits while the first is between building and sending."""
    home = tmp_path / "home"
    _fund_fee_key(world, home, 2)
    _prepare(store_url, home)
    inside, release = threading.Event(), threading.Event()
    built: dict[str, object] = {}

    def first() -> None:
        with open_store(store_url, home) as store:
            def hold(_built) -> None:
                inside.set()
                release.wait(20)
            built["first"] = store_wallet(home, world.source, store).fund(_script(1), 5_000, fee_rate=1.0,
                                                                          before_record=hold)

    def second() -> None:
        with open_store(store_url, home) as store:
            built["second"] = store_wallet(home, world.source, store).fund(_script(2), 5_000, fee_rate=1.0)

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(20)
    two = threading.Thread(target=second)
    two.start()
    two.join(1.5)
    assert two.is_alive() and "second" not in built          # blocked on the first one's lock
    release.set()
    one.join(20)
    two.join(20)
    assert _inputs(world.source, built["first"].txid).isdisjoint(_inputs(world.source, built["second"].txid))


def test_wallet_json_is_adopted_once(tmp_path, store_url, world):
    home = tmp_path / "home"
    _fund_fee_key(world, home, 2)
    earlier = AnchoringWallet(home, world.source).fund(_script(7), 5_000, fee_rate=1.0, label="file wallet")
    store = open_store(store_url, home)
    wallet = store_wallet(home, world.source, store)
    record = StoreWalletRecord(store, wallet_id(home), home)
    assert [e.txid for e in record.load()] == [earlier.txid]
    later = wallet.fund(_script(8), 5_000, fee_rate=1.0)          # the file's spend is reserved here too
    assert _inputs(world.source, earlier.txid).isdisjoint(_inputs(world.source, later.txid))
    record.save([e for e in record.load() if e.txid != earlier.txid])   # pruned, say
    store_wallet(home, world.source, store)
    assert [e.txid for e in record.load()] == [later.txid]             # not adopted a second time
    assert [e.txid for e in WalletRecord(home).load()] == [earlier.txid]  # the file is left as it was
    store.close()


def test_concurrent_root_anchorers_with_separate_engines_build_one_chain(tmp_path, store_url, world):
    """A first root through the file-based anchorer (its rootchain.json is adopted), then two
    anchorers at once; on PostgreSQL the second runs on a copy of the home, as another machine
    would, so only the store's lock and state keep the chain whole."""
    home = tmp_path / "home"
    party = Party.create(home, world.source, role="idp", name="log.example",
                         root_chains=(MarkerType.ACTIVITY_LOG_ROOT,), confirm_blocks=1)
    AnchoringWallet(home, world.source).ensure_funded(50_000, fee_rate=1.0)
    roots = [hashlib.sha256(b"root %d" % i).digest() for i in range(7)]
    RootAnchorer(home, "log.example", world.source).anchor(MarkerType.ACTIVITY_LOG_ROOT, roots[0], fee_rate=1.0)
    _prepare(store_url, home)
    homes = [home, home]
    if store_url is not None:
        homes[1] = tmp_path / "other-machine"
        shutil.copytree(home, homes[1])
    errors: list[BaseException] = []

    def anchorer(t: int) -> None:
        store = open_store(store_url, homes[t])
        try:
            anchor = store_root_anchorer(homes[t], "log.example", world.source, store)
            for root in roots[1 + t::2]:
                anchor.anchor(MarkerType.ACTIVITY_LOG_ROOT, root, fee_rate=1.0)
        except BaseException as exc:           # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=anchorer, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    spent, found = (party.anchor_txid, 2), []
    for _ in roots:                            # one unbroken chain through the mempool
        txid = world.source.outspend_unverified(*spent)
        tx = parse_tx(world.source.transaction(txid))
        found.append(Marker.parse_script(tx.vout[0].script_pubkey.data).digest)
        spent = (txid, 1)
    assert world.source.outspend_unverified(*spent) is None
    assert found[0] == roots[0] and sorted(found) == sorted(roots)
    world.source.mine(1)


def test_a_killed_holder_releases_the_advisory_lock(tmp_path, postgres_database):
    """SIGKILL a process holding the wallet lock: PostgreSQL drops its session and the lock."""
    from sqlalchemy.engine import make_url
    url = make_url(postgres_database)
    key = advisory_key("wallet", "killed")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import psycopg, sys, time\n"
         f"c = psycopg.connect(host='127.0.0.1', port={url.port}, user='{url.username}', dbname='{url.database}',"
         " autocommit=True)\n"
         f"c.execute('SELECT pg_advisory_lock({key})'); print('held', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        store = open_store(postgres_database, tmp_path)
        got = threading.Event()

        def take() -> None:
            with pg_advisory_lock(store, key):
                got.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not got.wait(1.0)                 # held by the other process
        os.kill(holder.pid, signal.SIGKILL)
        started = time.monotonic()
        assert got.wait(10)
        taker.join(5)
        assert time.monotonic() - started < 10
        with pg_advisory_lock(store, key):       # and released again by us
            pass
        store.close()
    finally:
        holder.kill()
        holder.wait()
