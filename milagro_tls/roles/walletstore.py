"""The anchoring wallet's record and the root-chain lock in the roles' store, so that role
workers on several machines sharing one database never spend one coin twice or fork a chain.

* ``StoreWalletRecord`` has identity.wallet_record.WalletRecord's interface (``lock``,
  ``load``, ``save``, ``reserved``) for ``AnchoringWallet(..., record=...)``. The sent
  transactions are rows of ``wallet_transactions`` keyed by the wallet (the fee key's P2WPKH
  script, so every worker holding the same fee key shares one record) and a sequence number
  that keeps record order (a dependency order: rebroadcasting in it sends parents first).
* ``lock()`` serializes one whole select-build-record-send cycle of that wallet:
  - PostgreSQL: a session advisory lock (``pg_advisory_lock``) on a connection of its own, in
    autocommit so it never holds a snapshot open. It is held across the broadcast, which a
    transaction-scoped lock could not be without keeping a transaction open over network
    I/O. A worker that dies holding it (SIGKILL) loses its connection and PostgreSQL releases
    the lock: nothing to clean up.
  - SQLite (one machine): the same flock on HOME/wallet.lock as the file record, so a file
    wallet and a store wallet on one home exclude each other too. SQLite's own write lock is
    not used: holding it across a broadcast would stall every other writer of the role.
* ``store_wallet(home, source, store)`` builds the AnchoringWallet and adopts, once, what
  HOME/wallet.json recorded before (the identity's own funding and anchor, which Party.create
  made through a file wallet): without that the store record would not reserve their inputs
  or rebroadcast them.
* ``root_chain_lock(store, home, name)`` is the matching lock for identity.rootchain.RootAnchorer
  (advisory lock keyed by the identity's public key on PostgreSQL; the flock on
  NAME/rootchain.lock on SQLite) and ``root_chain_state(store, home, name)`` keeps its state
  document (the links, the pending one written before the wallet records it) in
  ``root_chain_states`` instead of NAME/rootchain.json (adopted on first use);
  ``store_root_anchorer`` builds an anchorer with all three.

With these in the store, machines running a role can each hold a copy of its home (keys and
identity, written once at the first start): what the wallet and the anchorer change lives in
the shared database.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ContextManager

from sqlalchemy import (BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text, UniqueConstraint,
                        delete, insert, select, text, update)
from sqlalchemy.engine import Connection

from ..chain.hashes import from_display_hex
from ..chain.source import ChainSource
from ..identity.files import file_lock
from ..identity.party import Party
from ..identity.rootchain import LOCK_FILE as ROOT_LOCK_FILE, STATE_FILE as ROOT_STATE_FILE, RootAnchorer
from ..identity.wallet import AnchoringWallet, load_fee_key
from ..identity.wallet_record import LOCK_FILE as WALLET_LOCK_FILE, SentTx, WalletRecord
from .store import Store, insert_or_ignore

log = logging.getLogger(__name__)

COMPONENT = "walletstore"

_metadata = MetaData()
wallet_transactions = Table(
    "wallet_transactions", _metadata,
    Column("wallet", String(96), primary_key=True),            # the fee key's script, hex
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("txid", String(64), nullable=False),                 # display hex
    Column("raw", LargeBinary, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("change_vout", Integer),
    Column("created", BigInteger, nullable=False),
    Column("label", String(256), nullable=False),
    UniqueConstraint("wallet", "txid", name="wallet_transactions_txid"),
)
#: Transactions adopted from HOME/wallet.json: adopted once, so a record the store wallet has
#: since pruned or dropped is not brought back by the next start.
wallet_adopted = Table(
    "wallet_adopted", _metadata,
    Column("wallet", String(96), primary_key=True),
    Column("txid", String(64), primary_key=True),
)


#: RootAnchorer's state document (identity.rootchain), one per identity, written under its lock.
root_chain_states = Table(
    "root_chain_states", _metadata,
    Column("identity", String(66), primary_key=True),          # the identity key, compressed hex
    Column("doc", Text, nullable=False),
)


def _create_tables(connection: Connection) -> None:
    _metadata.create_all(connection, tables=[wallet_transactions, wallet_adopted])


def _create_root_chain_states(connection: Connection) -> None:
    _metadata.create_all(connection, tables=[root_chain_states])


MIGRATIONS = [_create_tables, _create_root_chain_states]


def advisory_key(scope: str, name: str) -> int:
    """A signed 64-bit advisory-lock key for (scope, name): a hash, so unrelated locks on one
    database (migrations use a fixed small constant) do not collide in practice."""
    digest = hashlib.sha256(f"milagro/{scope}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def pg_advisory_lock(store: Store, key: int) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock ``key`` for the block, on a dedicated connection."""
    store._after_fork()
    connection = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            try:
                released = connection.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            except Exception:
                released = False
            if not released:
                # Back in the pool it would keep the lock: close it, PostgreSQL then releases it.
                log.warning("advisory lock %d not released cleanly; dropping its connection", key)
                connection.invalidate()
    finally:
        connection.close()


def store_lock(store: Store, scope: str, name: str, fallback: Path) -> Callable[[], ContextManager]:
    """A lock factory: the advisory lock (scope, name) on PostgreSQL, the flock on ``fallback``
    otherwise (SQLite lives on one machine, whose processes the flock serializes)."""
    if store.is_postgresql:
        key = advisory_key(scope, name)
        return lambda: pg_advisory_lock(store, key)
    return lambda: file_lock(fallback)


class StoreWalletRecord:
    """A wallet record (WalletRecord's interface) in the roles' store; see the module's doc."""

    def __init__(self, store: Store, wallet: str, home: Path) -> None:
        if not wallet or len(wallet) > 96:
            raise ValueError("a wallet id is 1 to 96 characters")
        self.store = store
        self.wallet = wallet
        self.home = Path(home)
        self._lock = store_lock(store, "wallet", wallet, self.home / WALLET_LOCK_FILE)
        store.migrate(COMPONENT, MIGRATIONS)

    def lock(self) -> ContextManager:
        """Exclusive for one select-build-record-send cycle of this wallet, across machines."""
        return self._lock()

    def __repr__(self) -> str:
        return f"<StoreWalletRecord {self.wallet} in {self.store.url}>"

    def _rows(self, connection: Connection) -> list[tuple[int, SentTx]]:
        rows = connection.execute(select(wallet_transactions).where(wallet_transactions.c.wallet == self.wallet)
                                  .order_by(wallet_transactions.c.seq))
        return [(row.seq, SentTx(from_display_hex(row.txid), bytes(row.raw), row.fee, row.change_vout,
                                 row.created, row.label)) for row in rows]

    def load(self) -> list[SentTx]:
        with self.store.read() as connection:
            return [entry for _, entry in self._rows(connection)]

    def save(self, entries: list[SentTx]) -> None:
        """Make the record equal ``entries`` (in order) in one transaction. The wallet only ever
        drops entries and appends new ones (re-recording one moves it to the end), so the
        rows matching ``entries`` in order are kept and the rest deleted or appended."""
        with self.store.begin() as connection:
            stored = self._rows(connection)
            kept, stale = 0, []
            for seq, entry in stored:
                if kept < len(entries) and entries[kept] == entry:
                    kept += 1
                else:
                    stale.append(seq)
            if stale:
                connection.execute(delete(wallet_transactions).where(
                    wallet_transactions.c.wallet == self.wallet, wallet_transactions.c.seq.in_(stale)))
            following = entries[kept:]
            if following:
                last = max((seq for seq, _ in stored), default=0)
                connection.execute(insert(wallet_transactions), [
                    {"wallet": self.wallet, "seq": last + i, "txid": e.txid_hex, "raw": e.raw, "fee": e.fee,
                     "change_vout": e.change_vout, "created": e.created, "label": e.label}
                    for i, e in enumerate(following, start=1)])

    def reserved(self, entries: list[SentTx] | None = None) -> set:
        """Every outpoint a recorded transaction spends."""
        return {op for e in (self.load() if entries is None else entries) for op in e.prevouts}

    def adopt(self, file_record: WalletRecord) -> int:
        """Append, under the lock, the file record's entries never adopted before (in its order);
        returns how many. The file is left as it is for tools that read it."""
        with self.lock():
            found = file_record.load()
            if not found:
                return 0
            with self.store.begin() as connection:
                fresh = [e for e in found if insert_or_ignore(connection, wallet_adopted,
                                                              {"wallet": self.wallet, "txid": e.txid_hex})]
            if fresh:
                current = self.load()
                known = {e.txid for e in current}
                self.save(current + [e for e in fresh if e.txid not in known])
                log.info("adopted %d transaction(s) from %s into the store's wallet record", len(fresh),
                         file_record.path)
            return len(fresh)


def wallet_id(home: Path) -> str:
    """The record's key for the fee key in HOME/fee.key: its P2WPKH script, hex."""
    return load_fee_key(Path(home)).p2wpkh_script.hex()


def store_wallet(home: Path, source: ChainSource, store: Store, **options) -> AnchoringWallet:
    """The anchoring wallet of HOME's fee key with its record in ``store`` (wallet.json adopted
    once); ``options`` go to AnchoringWallet (fee_floor, fee_cap, low_balance)."""
    record = StoreWalletRecord(store, wallet_id(home), home)
    record.adopt(WalletRecord(Path(home)))
    return AnchoringWallet(home, source, record=record, **options)


def root_chain_lock(store: Store, home: Path, party_name: str) -> Callable[[], ContextManager]:
    """RootAnchorer's lock for identity ``party_name``: keyed by its public key on PostgreSQL,
    the flock on NAME/rootchain.lock (RootAnchorer's default) on SQLite."""
    party = Party.load(home, party_name)
    return store_lock(store, "rootchain", party.key.public_key.hex(), party.directory / ROOT_LOCK_FILE)


class StoreChainState:
    """RootAnchorer's state document in ``root_chain_states`` (identity.rootchain.ChainState).
    Until the store holds one, the identity's NAME/rootchain.json (if any) is read: the first
    write then moves it into the store, and the file is never read again."""

    def __init__(self, store: Store, identity: str, adopt_from: Path) -> None:
        self.store = store
        self.identity = identity
        self.adopt_from = Path(adopt_from)
        self.where = f"root chain state of {identity[:16]}... in {store.url}"
        store.migrate(COMPONENT, MIGRATIONS)

    def read(self) -> str | None:
        with self.store.read() as connection:
            doc = connection.scalar(select(root_chain_states.c.doc)
                                    .where(root_chain_states.c.identity == self.identity))
        if doc is not None:
            return doc
        try:
            return self.adopt_from.read_text()
        except FileNotFoundError:
            return None

    def write(self, text: str) -> None:
        with self.store.begin() as connection:
            if not insert_or_ignore(connection, root_chain_states, {"identity": self.identity, "doc": text}):
                connection.execute(update(root_chain_states).where(root_chain_states.c.identity == self.identity)
                                   .values(doc=text))


def root_chain_state(store: Store, home: Path, party_name: str) -> StoreChainState:
    """RootAnchorer's state for identity ``party_name`` in the store (its rootchain.json adopted)."""
    party = Party.load(home, party_name)
    return StoreChainState(store, party.key.public_key.hex(), party.directory / ROOT_STATE_FILE)


def store_root_anchorer(home: Path, party_name: str, source: ChainSource, store: Store, *,
                        wallet: AnchoringWallet | None = None) -> RootAnchorer:
    """A RootAnchorer paying from the store-backed wallet, its state in the store and locked by
    the store's root-chain lock: anchorers on several machines (each with a copy of the home)
    extend one chain."""
    return RootAnchorer(home, party_name, source,
                        wallet=wallet if wallet is not None else store_wallet(home, source, store),
                        lock=root_chain_lock(store, home, party_name),
                        state=root_chain_state(store, home, party_name))
