"""Device groups, what their PATs trust, and instruction-set versions: the admin's API.

Every function takes the roles' Store first and commits before it returns. The admin UI
(admin/backend.py) and ``milagro tbs admin`` call these; trust entries arrive already verified
against the chain (admin/trust.py) as full documents::

    {"name", "locator": locator JSON, "roles": [...], "certificate": canonical text,
     "proof": hex AnchorProof}

and are kept as such: an instruction set carries them to the PATs, which verify each one
against their own headers. ``push_instructions`` snapshots a group (its D-TA URLs and trust
entries) as a new instruction version. Versions are global (one sequence over all groups), so
a PAT moved to another group still only ever sees its version rise.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from ...enrolment import InstructionTrust
from ...enrolment.errors import MalformedInstructions
from ...errors import MilagroError
from ..store import Store
from . import tables
from .tables import enrolments, groups, instruction_sets, settings, trust


class TbsError(MilagroError):
    """A refusal with its HTTP status and JSON error code (the app renders it as
    ``{"error", "error_description"}``)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass(frozen=True)
class GroupRow:
    name: str
    dta_urls: list[str]
    trust: list[dict[str, Any]]           # full entry documents, sorted by name
    is_default: bool
    version: int | None                   # newest pushed instruction version, None before any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dta_urls": self.dta_urls, "default": self.is_default, "version": self.version,
                "trust": [{"name": e["name"], "locator": e["locator"], "roles": e["roles"]} for e in self.trust]}


def _entry_doc(doc: Any, where: str) -> dict[str, Any]:
    """The entry in canonical shape; its certificate, locator and proof must parse (they were
    verified by the caller; a PAT verifies them again against its headers)."""
    try:
        return InstructionTrust.from_json(doc, where).to_json()
    except MalformedInstructions as exc:
        raise TbsError(400, "invalid_trust_entry", str(exc)) from None


def _group_row(connection: Connection, row, default: str) -> GroupRow:
    entries = [{"name": t.name, "locator": json.loads(t.locator), "roles": json.loads(t.roles),
                "certificate": t.certificate, "proof": t.proof.hex()}
               for t in connection.execute(select(trust).where(trust.c.group_name == row.name)
                                           .order_by(trust.c.name))]
    version = connection.scalar(select(func.max(instruction_sets.c.version))
                                .where(instruction_sets.c.group_name == row.name))
    return GroupRow(row.name, json.loads(row.dta_urls), entries, row.name == default, version)


def list_groups(store: Store) -> list[GroupRow]:
    with store.read() as connection:
        default = tables.default_group(connection)
        return [_group_row(connection, row, default)
                for row in connection.execute(select(groups).order_by(groups.c.name))]


def get_group(store: Store, name: str) -> GroupRow | None:
    with store.read() as connection:
        row = connection.execute(select(groups).where(groups.c.name == name)).first()
        return None if row is None else _group_row(connection, row, tables.default_group(connection))


def _exists(connection: Connection, name: str) -> bool:
    return connection.scalar(select(groups.c.name).where(groups.c.name == name)) is not None


def add_group(store: Store, name: str, dta_urls: list[str] = ()) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise TbsError(400, "invalid_group", "a group name is 1 to 64 characters")
    with store.begin() as connection:
        if _exists(connection, name):
            raise TbsError(409, "group_exists", f"group {name!r} exists")
        connection.execute(insert(groups).values(name=name, dta_urls=json.dumps(list(dta_urls)),
                                                 created_at=time.time()))


def set_group_dta_urls(store: Store, name: str, dta_urls: list[str]) -> bool:
    with store.begin() as connection:
        done = connection.execute(update(groups).where(groups.c.name == name)
                                  .values(dta_urls=json.dumps(list(dta_urls))))
        return done.rowcount == 1


def set_group_trust(store: Store, name: str, entries: list[dict[str, Any]]) -> bool:
    """Replace the group's trust entries with ``entries`` (names unique)."""
    docs = [_entry_doc(entry, f"trust entry {i + 1}") for i, entry in enumerate(entries)]
    if len({doc["name"] for doc in docs}) != len(docs):
        raise TbsError(400, "invalid_trust_entry", "two trust entries have the same name")
    now = time.time()
    with store.begin() as connection:
        if not _exists(connection, name):
            return False
        connection.execute(delete(trust).where(trust.c.group_name == name))
        for doc in docs:
            connection.execute(insert(trust).values(
                group_name=name, name=doc["name"], locator=json.dumps(doc["locator"], sort_keys=True),
                roles=json.dumps(doc["roles"]), certificate=doc["certificate"], proof=bytes.fromhex(doc["proof"]),
                added_at=now))
    return True


def set_default_group(store: Store, name: str) -> bool:
    with store.begin() as connection:
        if not _exists(connection, name):
            return False
        connection.execute(update(settings).where(settings.c.key == "default_group").values(value=name))
    return True


def latest_instructions(connection: Connection, group: str) -> tuple[int, dict[str, Any]] | None:
    row = connection.execute(select(instruction_sets.c.version, instruction_sets.c.body)
                             .where(instruction_sets.c.group_name == group)
                             .order_by(instruction_sets.c.version.desc()).limit(1)).first()
    return None if row is None else (row.version, json.loads(row.body))


def _snapshot(connection: Connection, group: str) -> dict[str, Any]:
    row = connection.execute(select(groups).where(groups.c.name == group)).one()
    entry_rows = connection.execute(select(trust).where(trust.c.group_name == group).order_by(trust.c.name))
    return {"group": group, "dta_urls": json.loads(row.dta_urls),
            "trust": [{"name": t.name, "locator": json.loads(t.locator), "roles": json.loads(t.roles),
                       "certificate": t.certificate, "proof": t.proof.hex()} for t in entry_rows]}


def push_in(connection: Connection, group: str) -> int:
    """A new instruction version for ``group`` in the caller's transaction."""
    result = connection.execute(insert(instruction_sets).values(
        group_name=group, body=json.dumps(_snapshot(connection, group)), created_at=time.time()))
    return result.inserted_primary_key[0]


def push_instructions(store: Store, group: str) -> tuple[int, int]:
    """Publish the group as it stands as a new instruction version: (version, PATs of the group
    that are anchored, not revoked, and will be offered it: a revoked PAT is refused any set)."""
    from .tables import revocations
    with store.begin() as connection:
        if not _exists(connection, group):
            raise TbsError(404, "unknown_group", f"no group {group!r}")
        version = push_in(connection, group)
        pats = connection.scalar(select(func.count()).select_from(enrolments).where(
            enrolments.c.group_name == group, enrolments.c.state == "anchored",
            enrolments.c.digest.not_in(select(revocations.c.digest))))
    return version, pats


def ensure_instructions(connection: Connection, group: str) -> tuple[int, dict[str, Any]]:
    """The group's newest set, pushed now if it never was (a PAT anchored before anyone pushed
    still gets the group's D-TAs and trust entries as they stand)."""
    latest = latest_instructions(connection, group)
    if latest is None:
        push_in(connection, group)
        latest = latest_instructions(connection, group)
    return latest


# --- enrolments, as the admin lists them ------------------------------------------------------
@dataclass(frozen=True)
class EnrolmentRow:
    id: str
    group: str
    state: str
    created_at: int
    updated_at: int
    certificate_name: str
    batch_id: int | None
    txid: str | None                      # display hex of the batch, once one was funded
    locator: dict | None
    installed_version: int | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, "status": self.state, "created": self.created_at,
                "updated": self.updated_at, "name": self.certificate_name, "batch_id": self.batch_id,
                "txid": self.txid, "locator": self.locator, "installed_version": self.installed_version}


def _enrolment_query():
    from .tables import batches
    return (select(enrolments.c.id, enrolments.c.group_name, enrolments.c.state, enrolments.c.created_at,
                   enrolments.c.updated_at, enrolments.c.certificate, enrolments.c.batch_id, enrolments.c.locator,
                   enrolments.c.installed_version, batches.c.txid)
            .select_from(enrolments.outerjoin(batches, batches.c.id == enrolments.c.batch_id)))


def _enrolment_row(row) -> EnrolmentRow:
    from ...chain.hashes import to_display_hex
    from ...identity.certificate import BirthCertificate
    return EnrolmentRow(row.id, row.group_name, row.state, int(row.created_at), int(row.updated_at),
                        BirthCertificate.parse(row.certificate.encode()).name, row.batch_id,
                        to_display_hex(row.txid) if row.txid else None,
                        json.loads(row.locator) if row.locator else None, row.installed_version)


def list_enrolments(store: Store, *, group: str | None = None, state: str | None = None,
                    limit: int = 200) -> list[EnrolmentRow]:
    """Newest first."""
    query = _enrolment_query()
    if group is not None:
        query = query.where(enrolments.c.group_name == group)
    if state is not None:
        query = query.where(enrolments.c.state == state)
    query = query.order_by(enrolments.c.created_at.desc(), enrolments.c.id).limit(max(1, min(int(limit), 10_000)))
    with store.read() as connection:
        return [_enrolment_row(row) for row in connection.execute(query)]


def get_enrolment(store: Store, enrolment_id: str) -> EnrolmentRow | None:
    with store.read() as connection:
        row = connection.execute(_enrolment_query().where(enrolments.c.id == enrolment_id)).first()
    return None if row is None else _enrolment_row(row)


def enrolment_counts(store: Store) -> dict[str, int]:
    """How many enrolments are in each state."""
    with store.read() as connection:
        return {row.state: row.n for row in connection.execute(
            select(enrolments.c.state, func.count().label("n")).group_by(enrolments.c.state))}
