"""The roles' store on SQLite and on a real PostgreSQL: durability settings, committed writes,
versioned migrations (serialized across processes, refusing a newer database) and work claims."""
from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
import time

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from milagro_tls.roles.store import SchemaTooNew, StoreError, claim, open_store

metadata = MetaData()
jobs = Table("jobs", metadata, Column("id", Integer, primary_key=True, autoincrement=False),
             Column("owner", String(32)))
runs = Table("migration_runs", metadata, Column("id", Integer, primary_key=True), Column("pid", Integer))
children = Table("children", metadata, Column("id", Integer, primary_key=True),
                 Column("job", Integer, ForeignKey("jobs.id"), nullable=False))


def create_jobs(connection) -> None:
    metadata.create_all(connection, tables=[jobs, runs])
    connection.execute(insert(runs).values(pid=os.getpid()))


def create_children(connection) -> None:
    metadata.create_all(connection, tables=[children])


def test_sqlite_default_file_is_private_and_durable(tmp_path):
    store = open_store(None, tmp_path)
    try:
        assert store.dialect == "sqlite" and store.url == f"sqlite:///{tmp_path / 'state.db'}"
        with store.begin() as connection:
            pragmas = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                       for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
        assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30000}
        assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "state.db-wal").stat().st_mode) == 0o600
    finally:
        store.close()


def test_migrations_apply_once_record_versions_and_refuse_a_newer_database(store_url, tmp_path):
    with open_store(store_url, tmp_path) as store:
        assert store.version("queue") == 0
        assert store.migrate("queue", [create_jobs]) == 1
        assert store.migrate("queue", [create_jobs]) == 1          # no second run
        assert store.migrate("queue", [create_jobs, create_children]) == 2
        assert store.version("queue") == 2 and store.version("other") == 0
        with store.read() as connection:
            assert connection.scalar(select(runs.c.pid).where(runs.c.id == 1)) == os.getpid()
            assert connection.execute(select(runs)).all() == [(1, os.getpid())]
            assert connection.execute(select(children)).all() == []
        with pytest.raises(SchemaTooNew, match=r"component 'queue' is at schema version 2, this code knows only up to 1"):
            store.migrate("queue", [create_jobs])
        # Foreign keys are enforced on both backends.
        with pytest.raises(IntegrityError), store.begin() as connection:
            connection.execute(insert(children).values(job=999))


def test_a_failing_migration_leaves_nothing_behind(store_url, tmp_path):
    def broken(connection):
        metadata.create_all(connection, tables=[children])
        raise RuntimeError("migration bug")

    with open_store(store_url, tmp_path) as store:
        store.migrate("queue", [create_jobs])
        with pytest.raises(RuntimeError, match="migration bug"):
            store.migrate("queue", [create_jobs, broken])
        assert store.version("queue") == 1
        with store.read() as connection:
            assert not store.engine.dialect.has_table(connection, "children")


def test_begin_commits_before_returning_and_rolls_back_on_error(store_url, tmp_path):
    with open_store(store_url, tmp_path) as store, open_store(store_url, tmp_path) as other:
        store.migrate("queue", [create_jobs])
        with store.begin() as connection:
            connection.execute(insert(jobs).values(id=1, owner=None))
        # Another engine (another process, in effect) sees it at once.
        with other.read() as connection:
            assert connection.execute(select(jobs.c.id)).scalars().all() == [1]
        with pytest.raises(ZeroDivisionError), store.begin() as connection:
            connection.execute(insert(jobs).values(id=2, owner=None))
            1 / 0
        with other.read() as connection:
            assert connection.execute(select(jobs.c.id)).scalars().all() == [1]


def _migrate_in_child(url, home, barrier, results):
    barrier.wait()
    try:
        with open_store(url, home) as store:
            results.put(store.migrate("queue", [create_jobs, create_children]))
    except BaseException as error:          # reported, not lost in the child
        results.put(repr(error))


def test_concurrent_starts_serialize_their_migrations(store_url, tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_migrate_in_child, args=(store_url, tmp_path, barrier, results))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert outcomes == [2, 2, 2, 2]
    with open_store(store_url, tmp_path) as store:
        with store.read() as connection:
            assert len(connection.execute(select(runs)).all()) == 1     # the migration ran once


def test_claims_hand_every_row_to_exactly_one_worker(store_url, tmp_path):
    with open_store(store_url, tmp_path) as store:
        store.migrate("queue", [create_jobs])
        with store.begin() as connection:
            connection.execute(insert(jobs), [{"id": i, "owner": None} for i in range(60)])
        errors: list[BaseException] = []

        def worker(name: str) -> None:
            try:
                while True:
                    with store.begin() as connection:
                        rows = claim(connection, select(jobs.c.id).where(jobs.c.owner.is_(None))
                                     .order_by(jobs.c.id).limit(3))
                        if not rows:
                            return
                        time.sleep(0.002)           # hold the claim while others try
                        connection.execute(update(jobs).where(jobs.c.id.in_([r.id for r in rows]))
                                           .where(jobs.c.owner.is_(None)).values(owner=name))
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        with store.read() as connection:
            owners = dict(connection.execute(select(jobs.c.id, jobs.c.owner)).all())
        assert sorted(owners) == list(range(60)) and None not in owners.values()


def test_postgresql_claims_skip_rows_another_transaction_holds(postgres_database, tmp_path):
    with open_store(postgres_database, tmp_path) as store:
        store.migrate("queue", [create_jobs])
        with store.begin() as connection:
            connection.execute(insert(jobs), [{"id": i, "owner": None} for i in range(4)])
        first = select(jobs.c.id).where(jobs.c.owner.is_(None)).order_by(jobs.c.id).limit(2)
        with store.begin() as holder:
            assert [row.id for row in claim(holder, first)] == [0, 1]
            with store.begin() as second:           # does not wait: it skips the locked rows
                started = time.monotonic()
                assert [row.id for row in claim(second, first)] == [2, 3]
                assert time.monotonic() - started < 2
        assert "FOR UPDATE SKIP LOCKED" in str(first.with_for_update(skip_locked=True)
                                               .compile(dialect=store.engine.dialect))


def test_sqlite_writers_wait_for_each_other_and_readers_do_not(tmp_path):
    with open_store(None, tmp_path) as store:
        store.migrate("queue", [create_jobs])
        order: list[str] = []
        with store.begin() as connection:             # holds the write lock from BEGIN IMMEDIATE
            connection.execute(insert(jobs).values(id=1, owner="a"))

            def second_writer():
                with store.begin() as other:
                    order.append("second writer in")
                    other.execute(insert(jobs).values(id=2, owner="b"))

            thread = threading.Thread(target=second_writer)
            thread.start()
            with store.read() as reader:               # WAL: a reader runs beside the writer
                assert reader.execute(select(jobs.c.id)).scalars().all() == []
            time.sleep(0.3)
            order.append("first writer commits")
        thread.join(30)
        assert order == ["first writer commits", "second writer in"]


def _use_after_fork(store, results):
    with store.begin() as connection:
        connection.execute(insert(jobs).values(id=os.getpid(), owner="child"))
    results.put("ok")


def test_a_forked_worker_uses_its_own_connections(store_url, tmp_path):
    with open_store(store_url, tmp_path) as store:
        store.migrate("queue", [create_jobs])
        with store.read() as connection:               # a pooled connection the child inherits
            connection.execute(select(jobs)).all()
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_use_after_fork, args=(store, results))
        child.start()
        assert results.get(timeout=30) == "ok"
        child.join(30)
        with store.begin() as connection:              # the parent's pooled connection still works
            connection.execute(insert(jobs).values(id=1, owner="parent"))
        with store.read() as connection:
            assert sorted(connection.execute(select(jobs.c.owner)).scalars()) == ["child", "parent"]


def test_the_password_never_appears(tmp_path):
    store = open_store("postgresql://milagro:hunter2secret@127.0.0.1:9/x", tmp_path)
    try:
        assert store.engine.url.drivername == "postgresql+psycopg"
        assert "hunter2secret" not in repr(store) and "hunter2secret" not in store.url
    finally:
        store.close()
    with pytest.raises(StoreError) as refused:
        open_store("mysql://root:hunter2secret@db/x", tmp_path)
    assert "hunter2secret" not in str(refused.value) and "mysql://root:***@db/x" in str(refused.value)
    with pytest.raises(StoreError, match="psycopg 3") as refused:
        open_store("postgresql+psycopg2://root:hunter2secret@db/x", tmp_path)
    assert "hunter2secret" not in str(refused.value)


def test_the_postgres_fixture_serves_fresh_databases(postgres_server, postgres_url, tmp_path):
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second and first.startswith("postgresql://postgres@127.0.0.1:")
    with open_store(first, tmp_path) as store:
        with store.read() as connection:
            assert connection.execute(text("SELECT current_database()")).scalar() == first.rsplit("/", 1)[1]
            assert connection.execute(text("SHOW listen_addresses")).scalar() == "127.0.0.1"
            assert connection.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0


def _open_fresh(home, barrier, results):
    barrier.wait()
    try:
        with open_store(None, home) as store, store.read() as connection:
            results.put(connection.exec_driver_sql("PRAGMA journal_mode").scalar())
    except BaseException as error:          # reported, not lost in the child
        results.put(repr(error))


def test_processes_opening_a_brand_new_sqlite_file_at_once_all_get_wal(tmp_path):
    """Switching a new file to WAL from several connections at once can fail with "database is
    locked" without waiting on the busy timeout; every opener must still get a WAL store."""
    context = multiprocessing.get_context("fork")
    for trial in range(3):
        barrier, results = context.Barrier(8), context.Queue()
        openers = [context.Process(target=_open_fresh, args=(tmp_path / str(trial), barrier, results))
                   for _ in range(8)]
        for opener in openers:
            opener.start()
        outcomes = [results.get(timeout=60) for _ in openers]
        for opener in openers:
            opener.join(30)
        assert outcomes == ["wal"] * 8


def _read_jobs_in_a_new_process(path) -> list[int]:
    """What a fresh process sees, through plain sqlite3 (whose close may checkpoint and delete
    the WAL when it believes it is the database's last user)."""
    import subprocess
    import sys
    code = ("import json, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(json.dumps(sorted(r[0] for r in c.execute('SELECT id FROM jobs')))); c.close()")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_opening_a_second_store_on_an_open_database_keeps_the_first_ones_commits_visible(tmp_path):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it. When
    opening a store did that to an existing database, another process closing its connection
    took itself for the last user, checkpointed and deleted the WAL, and the first store's later
    commits went to the deleted file: invisible to every other process."""
    first = open_store(None, tmp_path)
    try:
        with first.begin() as connection:
            metadata.create_all(connection, tables=[jobs])
            connection.execute(insert(jobs).values(id=1))
        second = open_store(None, tmp_path)
        try:
            with second.read() as connection:
                assert connection.scalar(select(jobs.c.id)) == 1
            assert _read_jobs_in_a_new_process(tmp_path / "state.db") == [1]
            with first.begin() as connection:
                connection.execute(insert(jobs).values(id=2))
            assert _read_jobs_in_a_new_process(tmp_path / "state.db") == [1, 2]
        finally:
            second.close()
    finally:
        first.close()
