"""The role's canary: a signed "no secret has been compelled or disclosed", re-signed every period.

The statement is a canonical (RFC 8785) JSON object

    {"issuer": NAME, "statement": "no secret has been compelled or disclosed",
     "issued": UNIX, "expires": UNIX, "period": P}

signed by the role's anchored identity key as a ``StatementType.CANARY`` statement (BIP340 over
TaggedHash("milagro/canary", canonical bytes)). ``period`` is the activity-log period whose log
holds the statement's digest SHA256(canonical bytes) as a leaf, so the canary is anchored with
that period's root. It expires ``lifetime_periods`` periods after it is issued (default 2: one
missed re-signing is not yet a warning). A role that stops re-signing, because it was told to,
lets it expire: clients warn (wellknown.check_role).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import rfc8785
from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError

from ..identity.keys import IdentityKey, StatementType
from .activitylog import ActivityLog, period_of
from .store import Store

CANARY_TEXT = "no secret has been compelled or disclosed"
STATEMENT_FIELDS = ("issuer", "statement", "issued", "expires", "period")
COMPONENT = "canary"


def canary_statement(issuer: str, issued: int, expires: int, period: int) -> dict[str, Any]:
    return {"issuer": issuer, "statement": CANARY_TEXT, "issued": int(issued), "expires": int(expires),
            "period": int(period)}


def canonical(statement: dict[str, Any]) -> bytes:
    return rfc8785.dumps(statement)


def canary_leaf(canonical_bytes: bytes) -> bytes:
    """The activity-log leaf of a statement: SHA256 of its canonical bytes."""
    return hashlib.sha256(canonical_bytes).digest()


@dataclass(frozen=True, slots=True)
class SignedCanary:
    statement: dict[str, Any]
    signature: bytes            # BIP340, 64 bytes
    leaf: bytes
    index: int                  # position in its period's log

    @property
    def period(self) -> int:
        return self.statement["period"]

    def to_json(self) -> dict[str, Any]:
        """The metadata document's ``canary`` member."""
        return {"statement": self.statement, "signature": self.signature.hex(), "period": self.period,
                "leaf": self.leaf.hex(), "index": self.index}


def check_canary(doc: Any, pubkey: bytes, issuer: str, now: float) -> tuple[list[str], bytes | None]:
    """What is wrong with a published canary (as warnings), and its leaf if it is well formed.
    The log inclusion is checked by the caller (it needs the chain)."""
    if doc is None:
        return ["no canary is published"], None
    if not isinstance(doc, dict) or not isinstance(doc.get("statement"), dict):
        return ["the canary is malformed (no statement object)"], None
    statement = doc["statement"]
    if set(statement) != set(STATEMENT_FIELDS) or not all(
            type(statement[k]) is int for k in ("issued", "expires", "period")):
        return [f"the canary statement is malformed (fields {sorted(statement)})"], None
    warnings = []
    body = canonical(statement)
    try:
        signature = bytes.fromhex(doc.get("signature", ""))
        good = len(signature) == 64 and IdentityKey.verify_statement(pubkey, StatementType.CANARY, body, signature)
    except (TypeError, ValueError):
        good = False
    if not good:
        warnings.append("the canary's signature does not verify with the anchored key")
    if statement["statement"] != CANARY_TEXT:
        warnings.append(f"the canary says {statement['statement']!r}, not {CANARY_TEXT!r}")
    if statement["issuer"] != issuer:
        warnings.append(f"the canary is issued by {statement['issuer']!r}, not {issuer!r}")
    if statement["expires"] <= now:
        warnings.append(f"the canary expired {int(now - statement['expires'])} s ago (issued {statement['issued']})")
    leaf = canary_leaf(body)
    if doc.get("leaf") != leaf.hex():
        warnings.append("the canary's published leaf is not the digest of its statement")
    return warnings, leaf


_metadata = MetaData()
canaries = Table(
    "canaries", _metadata,
    Column("issuer", String(253), primary_key=True),
    Column("period", BigInteger, primary_key=True, autoincrement=False),
    Column("statement", Text, nullable=False),              # canonical JSON
    Column("signature", LargeBinary(64), nullable=False),
    Column("leaf", LargeBinary(32), nullable=False),
    Column("idx", Integer, nullable=False),
)


def _create_tables(connection) -> None:
    _metadata.create_all(connection, tables=[canaries])


MIGRATIONS = [_create_tables]


class CanaryKeeper:
    """Signs the canary once per activity-log period, whichever worker asks first; every
    worker serves the same one (it lives in the store)."""

    def __init__(self, store: Store, key: IdentityKey, issuer: str, log: ActivityLog, *,
                 lifetime_periods: int = 2, clock=time.time) -> None:
        if lifetime_periods < 1:
            raise ValueError("a canary lives at least one period")
        self.store, self.key, self.issuer, self.log = store, key, issuer, log
        self.lifetime = lifetime_periods * log.period_seconds
        self.clock = clock
        store.migrate(COMPONENT, MIGRATIONS)

    def latest(self) -> SignedCanary | None:
        with self.store.read() as connection:
            row = connection.execute(select(canaries).where(canaries.c.issuer == self.issuer)
                                     .order_by(canaries.c.period.desc()).limit(1)).first()
        return None if row is None else _from_row(row)

    def current(self, now: float | None = None) -> SignedCanary:
        """This period's canary, signed (and its leaf logged, in one transaction) if none is yet."""
        now = self.clock() if now is None else now
        latest = self.latest()
        if latest is not None and latest.period >= period_of(now, self.log.period_seconds):
            return latest
        issued = int(now)
        made: list[tuple[dict, bytes]] = []

        def sign(period: int) -> bytes:
            statement = canary_statement(self.issuer, issued, issued + self.lifetime, period)
            body = canonical(statement)
            made.append((statement, self.key.sign_statement(StatementType.CANARY, body)))
            return canary_leaf(body)

        try:
            with self.store.begin() as connection:
                if (row := connection.execute(select(canaries).where(
                        canaries.c.issuer == self.issuer,
                        canaries.c.period >= period_of(now, self.log.period_seconds))).first()) is not None:
                    return _from_row(row)                      # another worker signed it meanwhile
                appended = self.log.append(sign, connection=connection, now=now)
                statement, signature = made[-1]
                connection.execute(insert(canaries).values(
                    issuer=self.issuer, period=appended.period, statement=canonical(statement).decode(),
                    signature=signature, leaf=appended.leaf, idx=appended.index))
        except IntegrityError:
            # PostgreSQL: a concurrent worker inserted this period's canary first; its leaf was
            # rolled back with ours. Serve the winner's.
            latest = self.latest()
            if latest is None:
                raise
            return latest
        return SignedCanary(statement, signature, appended.leaf, appended.index)


def _from_row(row) -> SignedCanary:
    return SignedCanary(json.loads(row.statement), bytes(row.signature), bytes(row.leaf), row.idx)
