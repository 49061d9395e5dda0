"""PostgreSQL restarted under two TBS workers: nothing is lost.

One ``milagro tbs serve --workers 2`` on its own PostgreSQL (a server of this module's own, so
that restarting it disturbs no other test). PATs enrol from four threads and a miner mines a block
a second; while enrolments are still arriving and batches are under way, PostgreSQL is stopped
with ``pg_ctl -m immediate`` (a crash: no checkpoint, every connection cut) and started again
2 s later, twice. A request the TBS answers with 5xx while the database is away was not
acknowledged and is sent again, as a PAT would; an acknowledged one (202) is never sent again.
Afterwards every acknowledged PAT is anchored exactly once on chain (one enrolment row per
certificate, each PAT key signed into exactly one mined batch), every transaction the store's
wallet recorded was mined, and no mined transaction spends a coin twice."""
from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from milagro_tls.chain.tx import outpoint
from milagro_tls.roles.tbs.tables import batches
from milagro_tls.roles.walletstore import StoreWalletRecord, wallet_id

from helpers.postgres import PostgresServer

from .patclient import PatClient
from .test_durability import Fleet, Miner, check_every_pat_anchored_once, mined_transactions

BUDGET = 75.0
PATS = 20


class ServerDown(httpx.TransportError):
    """A 5xx from the TBS: the request was not acknowledged (the database was away)."""


class RetryingPat(PatClient):
    """A PAT that treats a 5xx like a dropped connection: not acknowledged, send again."""

    server_errors: Counter = Counter()
    bodies: list[str] = []

    def _checked(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            RetryingPat.server_errors[response.status_code] += 1
            RetryingPat.bodies.append(response.text)
            raise ServerDown(f"HTTP {response.status_code}: {response.text[:200]}")
        return response

    def get(self, path, **params):
        return self._checked(super().get(path, **params))

    def post(self, path, **kwargs):
        return self._checked(super().post(path, **kwargs))


@pytest.fixture(scope="module")
def own_postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


def restart_postgres(server: PostgresServer, down: float = 2.0) -> None:
    """A crash and a restart on the same data directory and port."""
    pg_ctl = str(server.bin / "pg_ctl")
    server._run(pg_ctl, "-D", str(server.data), "-m", "immediate", "-w", "stop", timeout=60)
    time.sleep(down)
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.sockets} "
               "-c fsync=off -c full_page_writes=off -c max_connections=200")
    server._run(pg_ctl, "-D", str(server.data), "-l", str(server.log), "-o", options, "-w", "-t", "60", "start")


def test_postgresql_restarted_twice_under_two_tbs_workers_loses_nothing(world, tbs_server, tmp_path, own_postgres):
    started = time.monotonic()
    db = own_postgres.create_database("tbsrestart")
    tbs = tbs_server("tbs-pg-restart", db=db, workers=2, batch_wait=3, gather=0.5, max_batch=6, period=4, lease=8)
    first_height = world.source.tip().height + 1
    pats = [RetryingPat(world, tbs, tmp_path / "pats", f"pgr-{i}") for i in range(PATS)]
    fleet = Fleet(pats, threads=4, deadline=started + BUDGET - 10)
    restarts = []
    try:
        with Miner(world):
            fleet.start()
            for when in (lambda: len(fleet.acked) >= 6, lambda: len(fleet.anchored) >= 6):
                while not when():
                    assert time.monotonic() < started + 45, (len(fleet.acked), len(fleet.anchored), fleet.failures)
                    time.sleep(0.05)
                before = (len(fleet.acked), len(fleet.anchored))
                restart_postgres(own_postgres)
                restarts.append(before)
            fleet.join()
        assert restarts[0][0] < PATS, "the first restart came after every enrolment had arrived"
        assert any(acked > anchored for acked, anchored in restarts), "no restart with enrolments in flight"
        mined = check_every_pat_anchored_once(world, tbs, fleet, first_height)
    finally:
        fleet.close()
    tbs.stop()
    world.source.mine(1)
    mined = mined_transactions(world, first_height)
    store = tbs.store()
    try:
        record = StoreWalletRecord(store, wallet_id(tbs.home), tbs.home).load()
        with store.read() as connection:
            states = Counter(row.state for row in connection.execute(select(batches.c.state)))
    finally:
        store.close()
    for entry in record:                        # nothing the wallet recorded was dropped or double-spent
        assert world.source.tx_status(entry.txid).block_hash is not None, entry.label
    spends = Counter(op for tx in mined for op in map(outpoint, tx.vin))
    assert max(spends.values()) == 1
    assert set(states) <= {"settled", "reclaimed", "abandoned"}, states
    # While the database was away the peers got "try again later" as JSON, never a traceback.
    for body in RetryingPat.bodies:
        assert "traceback" not in body.lower() and isinstance(httpx.Response(500, content=body).json().get("error"), str), body
    assert set(RetryingPat.server_errors) <= {503}, (dict(RetryingPat.server_errors), RetryingPat.bodies[:3])
    print("a 5xx body:", RetryingPat.bodies[:1])
    print(f"\nPostgreSQL restarted twice (at {restarts} acknowledged/anchored) under two TBS workers: "
          f"{PATS} PATs anchored once each, batches {dict(states)}, {len(record)} wallet transactions mined, "
          f"5xx answers {dict(RetryingPat.server_errors)}, transport errors {fleet.transport_errors}, "
          f"{time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < BUDGET + 5
