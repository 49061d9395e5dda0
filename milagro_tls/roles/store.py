"""The roles' one data-access layer: SQLAlchemy Core 2.x on SQLite (embedded default) or
PostgreSQL (``--db postgresql://...``, psycopg 3), with versioned schemas per component.

Guarantees every role relies on:

* ``Store.begin()`` commits before it returns, so a write a client sees acknowledged is
  committed. On SQLite that commit is also on disk: WAL with ``synchronous=FULL`` fsyncs the
  WAL at every commit. (``NORMAL`` in WAL mode survives a process crash, SIGKILL included,
  but a power cut can lose the last commits: an acknowledged enrolment or login record must
  not vanish, so we pay one fsync per commit.) PostgreSQL is durable at commit by default.
* SQLite write transactions start with ``BEGIN IMMEDIATE``: the write lock is taken at the
  start, so two writers never both read, then fail to upgrade (SQLITE_BUSY mid-transaction);
  the second one waits up to the busy timeout. We emit BEGIN ourselves, as the SQLAlchemy
  docs prescribe for pysqlite (sqlite3's legacy mode would skip BEGIN before SELECT and DDL).
  ``Store.read()`` is a deferred ``BEGIN`` for read-only work, which WAL lets run beside a writer.
* ``Store.migrate(component, migrations)`` brings one component's tables to the newest
  version; concurrent starts (gunicorn workers) serialize on ``pg_advisory_xact_lock`` or on
  SQLite's write lock, and a database newer than the code refuses to start.
* ``claim(conn, select)`` is the "claim queue work" query: ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so several workers take disjoint rows; on SQLite the single writer (the
  transaction holds the write lock from BEGIN IMMEDIATE) already serializes claimers.

The URL's password never reaches a log or an exception message: ``Store.url`` hides it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sqlalchemy import (Column, DateTime, Integer, MetaData, String, Table, create_engine, event, func, insert,
                        literal_column, select, text, update)
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.sql import Select

from ..errors import MilagroError

log = logging.getLogger(__name__)

DEFAULT_FILE = "state.db"
#: How long a SQLite writer waits for the write lock before failing (seconds).
BUSY_TIMEOUT = 30.0
#: The advisory-lock key all migrations on one PostgreSQL database serialize on
#: (an arbitrary constant: "milagro" in ASCII, fits a bigint).
_MIGRATION_LOCK_KEY = 0x6D696C6167726F

Migration = Callable[[Connection], None]


class StoreError(MilagroError):
    """The store cannot be opened or its schema cannot be brought up to date."""


class SchemaTooNew(StoreError):
    """The database was migrated by newer code than this one: refuse to run on it."""


_versions_metadata = MetaData()
schema_versions = Table(
    "schema_versions", _versions_metadata,
    Column("component", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.current_timestamp()),
)


def _normalise_url(url: str | None, home: Path) -> str:
    if url is None:
        return f"sqlite:///{Path(home, DEFAULT_FILE)}"
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def _safe(url: str) -> str:
    """The URL with its password masked, for messages (parses leniently; never echoes it)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


class Store:
    """An engine plus the transaction discipline above. Open one per process: after a fork
    (gunicorn workers) the child drops the parent's pooled connections on first use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name          # "sqlite" or "postgresql"
        self._pid = os.getpid()
        self._fork_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"<Store {self.url}>"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def _after_fork(self) -> None:
        # A pooled connection inherited from the parent shares its socket or file handle;
        # using it from two processes corrupts both. dispose(close=False) forgets them
        # without closing what the parent still uses (SQLAlchemy's documented fork recipe).
        if os.getpid() != self._pid:
            with self._fork_lock:
                if os.getpid() != self._pid:
                    self.engine.dispose(close=False)
                    self._pid = os.getpid()

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed before the block's caller goes on (rolled back if
        the block raises). SQLite: BEGIN IMMEDIATE."""
        self._after_fork()
        with self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (SQLite: a deferred BEGIN that does not block writers)."""
        self._after_fork()
        with self.engine.connect() as connection:
            connection = connection.execution_options(milagro_read=True)
            with connection.begin():
                yield connection

    # --- schema ------------------------------------------------------------------------
    def version(self, component: str) -> int:
        """The component's schema version in this database (0: never migrated)."""
        with self.read() as connection:
            if not self.engine.dialect.has_table(connection, schema_versions.name):
                return 0
            found = connection.scalar(select(schema_versions.c.version)
                                      .where(schema_versions.c.component == component))
            return found or 0

    def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply ``migrations[v:]`` where v is the component's recorded version, in one
        transaction, and record ``len(migrations)``. Each migration is a function of a
        Connection and never changes once released: a new schema is a new function at the
        end. Returns the version now in force; SchemaTooNew if the database is ahead."""
        if not component or len(component) > 64:
            raise ValueError("a component name is 1 to 64 characters")
        target = len(migrations)
        with self.begin() as connection:
            if self.is_postgresql:
                # Held to the end of this transaction: a second worker starting at the same
                # moment waits here, then finds the schema current.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            _versions_metadata.create_all(connection, checkfirst=True)
            current = connection.scalar(select(schema_versions.c.version)
                                        .where(schema_versions.c.component == component))
            if current is not None and current > target:
                raise SchemaTooNew(f"{self.url}: component {component!r} is at schema version {current}, "
                                   f"this code knows only up to {target}; upgrade the code")
            start = current or 0
            for number, migration in enumerate(migrations[start:], start=start + 1):
                log.info("migrating %s to schema version %d", component, number)
                migration(connection)
            if current is None:
                connection.execute(insert(schema_versions).values(component=component, version=target))
            elif current != target:
                connection.execute(update(schema_versions).where(schema_versions.c.component == component)
                                   .values(version=target, updated_at=func.current_timestamp()))
        return target

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def claim(connection: Connection, statement: Select, *, of=None) -> list[Row]:
    """Rows of ``statement`` locked for this transaction and skipped by concurrent claimers
    (PostgreSQL ``FOR UPDATE SKIP LOCKED``; ``of`` names the table(s) to lock in a join).
    Use inside ``Store.begin()`` and mark the rows taken before it commits. On SQLite the
    clause compiles to nothing: BEGIN IMMEDIATE already made this transaction the only writer."""
    return list(connection.execute(statement.with_for_update(skip_locked=True, of=of)))


def insert_or_ignore(connection: Connection, table: Table, values: dict) -> bool:
    """INSERT a row unless one with the same key exists (ON CONFLICT DO NOTHING on both
    backends); True if this call inserted it."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    # RETURNING, not rowcount: psycopg 3 under SQLAlchemy 2.1 reports rowcount -1 for this
    # statement, which made every insert look ignored on PostgreSQL.
    statement = dialect_insert(table).values(**values).on_conflict_do_nothing().returning(literal_column("1"))
    return connection.execute(statement).first() is not None


def _set_wal(cursor) -> None:
    """Switch to WAL. On a brand-new file, two connections doing this at the same moment can get
    "database is locked" at once (SQLite does not call the busy handler for that lock), so
    the switch is retried for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: the -wal and -shm files take the same mode. Only
        # when missing: closing any descriptor of a file this process has open drops every POSIX
        # lock the process holds on it (SQLite's "how to corrupt" list), so an existing database
        # is never opened and closed here behind SQLite's back.
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        # We emit BEGIN ourselves (below); sqlite3's own would skip it before SELECT and DDL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            _set_wal(cursor)
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection) -> None:
        if connection.get_execution_options().get("milagro_read"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_store(url: str | None, home: Path) -> Store:
    """The store at ``url`` (None: SQLite at HOME/state.db). ``postgresql://`` and
    ``postgres://`` open with psycopg 3; a connection is checked (pool_pre_ping) before each use."""
    full = _normalise_url(url, home)
    try:
        backend = make_url(full).get_backend_name()
    except ArgumentError:
        raise StoreError(f"not a database URL: {_safe(full)}") from None
    try:
        if backend == "sqlite":
            engine = _sqlite_engine(full)
        elif backend == "postgresql":
            if make_url(full).get_driver_name() != "psycopg":
                raise StoreError(f"{_safe(full)}: PostgreSQL is supported through psycopg 3 "
                                 "(postgresql:// or postgresql+psycopg://)")
            engine = create_engine(full, pool_pre_ping=True)
        else:
            raise StoreError(f"unsupported database {_safe(full)}; use sqlite:///PATH or postgresql://...")
    except ArgumentError as error:
        raise StoreError(f"cannot open {_safe(full)}: {type(error).__name__}") from None
    store = Store(engine)
    _STORES.add(store)
    return store


#: Every open store, so a forked child can forget the parent's pooled connections at once.
_STORES: "weakref.WeakSet[Store]" = weakref.WeakSet()


def _forget_parent_connections() -> None:
    for store in list(_STORES):
        store._fork_lock = threading.Lock()      # the parent's may have been held at fork time
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_connections)
