"""The TBS's tables in the roles' store (component "tbs"), SQLAlchemy Core.

    tbs_settings          key/value (the default group)
    tbs_groups            device groups and the D-TA URLs their PATs get shares from
    tbs_trust             per group: trust entries (name, locator, roles) with the certificate
                          and its AnchorProof, checked against the chain when added
    tbs_instruction_sets  one row per push: a global version (strictly increasing over all
                          groups, so a PAT that changes group never sees a rollback) and the
                          group's body as pushed
    tbs_enrolments        one row per PAT certificate (digest unique): its AES key encrypted at
                          rest, group, state queued|batched|anchored|requeued|failed, batch and
                          position, locator once anchored, activity-log receipt, the instruction
                          version it told us it installed
    tbs_batches           one row per batch: state opening|signing|finishing|sent|settled|
                          reclaimed|abandoned, the PendingBatch JSON (written before the wallet
                          records the funding), txid, the block it confirmed in, the AnchorProof
                          every member's staple uses, a lease for the worker driving it
    tbs_signatures        verified PAT signatures per (batch, position); never replaced
    tbs_revocations       one row per revoked PAT certificate digest (never removed): when, why,
                          and the number of the first revocation list that names it (NULL until
                          a list is claimed for it; lists are cumulative)
    tbs_revocation_lists  one row per list: its number (= its link number on the TBS's 0x04
                          chain), root, state anchoring|anchored, the link's txid once sent, and
                          the claim time of the worker anchoring it (revocations.py)

Times are unix seconds (floats), as in roles.activitylog.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String,
                        Table, Text, insert, select)
from sqlalchemy.engine import Connection

from ..store import Store

COMPONENT = "tbs"
DEFAULT_GROUP = "default"

metadata = MetaData()

settings = Table(
    "tbs_settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

groups = Table(
    "tbs_groups", metadata,
    Column("name", String(64), primary_key=True),
    Column("dta_urls", Text, nullable=False),               # JSON list of URLs
    Column("created_at", Float, nullable=False),
)

trust = Table(
    "tbs_trust", metadata,
    Column("group_name", String(64), ForeignKey("tbs_groups.name"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("locator", Text, nullable=False),                # JSON
    Column("roles", Text, nullable=False),                  # JSON list
    Column("certificate", Text, nullable=False),            # canonical certificate text
    Column("proof", LargeBinary, nullable=False),           # AnchorProof.encode()
    Column("added_at", Float, nullable=False),
)

instruction_sets = Table(
    "tbs_instruction_sets", metadata,
    Column("version", Integer, primary_key=True, autoincrement=True),
    Column("group_name", String(64), ForeignKey("tbs_groups.name"), nullable=False),
    Column("body", Text, nullable=False),                   # JSON: tbs, group, dta_urls, trust
    Column("created_at", Float, nullable=False),
    Index("tbs_instruction_sets_by_group", "group_name", "version"),
    sqlite_autoincrement=True,
)

batches = Table(
    "tbs_batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("state", String(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("pending", Text),                                # PendingBatch.to_json(), once funded
    Column("txid", LargeBinary(32)),                        # wire order
    Column("funding_txid", LargeBinary(32)),
    Column("block_hash", LargeBinary(32)),
    Column("height", Integer),
    Column("proof", LargeBinary),                           # AnchorProof of the batch tx
    Column("lease_until", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("signing_since", Float),
    Column("sent_at", Float),
    Column("settled_at", Float),
    Index("tbs_batches_by_state", "state", "id"),
    sqlite_autoincrement=True,
)

enrolments = Table(
    "tbs_enrolments", metadata,
    Column("id", String(32), primary_key=True),             # random, hex
    Column("digest", LargeBinary(32), nullable=False, unique=True),
    Column("certificate", Text, nullable=False),
    Column("aes_key", LargeBinary, nullable=False),         # AES-GCM sealed at rest (nonce || ct)
    Column("group_name", String(64), ForeignKey("tbs_groups.name"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("batch_id", Integer, ForeignKey("tbs_batches.id")),
    Column("position", Integer),
    Column("attempts", Integer, nullable=False, default=0),  # batches it was put in
    Column("locator", Text),                                # JSON, once anchored
    Column("locator_key", String(64)),                      # dta.peer.locator_key, for /pat/*
    Column("receipt_salt", LargeBinary(32)),
    Column("receipt_period", BigInteger),
    Column("installed_version", Integer),
    Column("queued_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("tbs_enrolments_queue", "state", "queued_at"),
    Index("tbs_enrolments_by_batch", "batch_id", "position"),
    Index("tbs_enrolments_by_locator", "locator_key"),
)

signatures = Table(
    "tbs_signatures", metadata,
    Column("batch_id", Integer, ForeignKey("tbs_batches.id"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("received_at", Float, nullable=False),
)


revocations = Table(
    "tbs_revocations", metadata,
    Column("digest", LargeBinary(32), primary_key=True),    # BirthCertificate.digest()
    Column("revoked_at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("list_number", Integer),                         # the first list naming it; NULL: none yet
    Index("tbs_revocations_by_list", "list_number"),
)

revocation_lists = Table(
    "tbs_revocation_lists", metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("txid", String(64)),                             # display hex, once sent
    Column("state", String(16), nullable=False),            # anchoring | anchored
    Column("created_at", Float, nullable=False),
    Column("claimed_at", Float, nullable=False),            # a stale claim is taken over
    Column("anchored_at", Float),
)

#: The tables of schema version 1 (migration functions never change once released).
_VERSION_1 = (settings, groups, trust, instruction_sets, batches, enrolments, signatures)


def _create(connection: Connection) -> None:
    metadata.create_all(connection, tables=_VERSION_1)
    # Every TBS has a default group from the start, so an enrolment always has one.
    import time
    connection.execute(insert(groups).values(name=DEFAULT_GROUP, dta_urls="[]", created_at=time.time()))
    connection.execute(insert(settings).values(key="default_group", value=DEFAULT_GROUP))


def _revocations(connection: Connection) -> None:
    """Version 2: revocation of batch-anchored PATs (issue 18)."""
    metadata.create_all(connection, tables=[revocations, revocation_lists])


MIGRATIONS = [_create, _revocations]


def migrate(store: Store) -> int:
    return store.migrate(COMPONENT, MIGRATIONS)


def default_group(connection: Connection) -> str:
    return connection.scalar(select(settings.c.value).where(settings.c.key == "default_group")) or DEFAULT_GROUP
