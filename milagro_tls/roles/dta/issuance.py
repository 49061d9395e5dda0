"""Share issuance: CS_i and TP_i to the party that finished a login, SS_i to registered services.

Every share is signed by the D-TA's anchored identity key (mpin.shares), recorded with the
locator that received it, and logged: one activity-log leaf per issuance,

    leaf = SHA256(salt32 ‖ u16be(len ID) ‖ ID ‖ u64be(period) ‖ share_digest)
    share_digest = SHA256(CS.digest() ‖ TP.digest())       (SignedShare.digest: SHA256 of its canonical JSON)
                   SS.digest()                            (a server share; ID = the service's locator)

with a fresh salt that only the user gets in the receipt, so the public log links the leaf to
nobody. The claim of the login, the records and the leaf commit in one transaction: an issued
share is always recorded and logged, and a nonce yields shares once.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, select

from ...identity.locator import Locator
from ...mpin import MasterSecret, SignedShare, day_number, encode_identity
from ...mpin.shares import issue_client_secret, issue_server_secret, issue_time_permit
from . import tables
from .logins import DtaError, Logins
from .peer import locator_key

SALT_SIZE = 32


def share_leaf(salt: bytes, identity: bytes, period: int, share_digest: bytes) -> bytes:
    if len(salt) != SALT_SIZE or len(share_digest) != 32:
        raise ValueError("salt and share digest are 32 bytes")
    return hashlib.sha256(salt + struct.pack(">H", len(identity)) + identity + struct.pack(">Q", period)
                          + share_digest).digest()


def issuance_digest(client_secret: SignedShare, time_permit: SignedShare) -> bytes:
    return hashlib.sha256(client_secret.digest() + time_permit.digest()).digest()


@dataclass
class Issuer:
    store: object
    logins: Logins
    master: MasterSecret
    key: object                       # the D-TA's IdentityKey
    name: str                         # the D-TA's identity name (the shares' "dta" field)
    locator: Locator                  # the D-TA's anchor (the shares' "dta_locator")
    log: object | None                # roles.activitylog.ActivityLog (None: no log, unit tests)
    clock: Callable[[], float] = time.time

    def client_shares(self, peer: Locator, nonce) -> dict:
        salt = os.urandom(SALT_SIZE)
        with self.store.begin() as connection:
            claimed = self.logins.claim(connection, peer, nonce)
            identity = encode_identity(claimed.issuer, claimed.subject)
            now = int(self.clock())
            date = day_number(now)
            common = dict(identity=identity, dta=self.name, dta_locator=self.locator, recipient=peer, issued=now)
            cs = issue_client_secret(self.master, self.key, **common)
            tp = issue_time_permit(self.master, self.key, date=date, **common)
            digest = issuance_digest(cs, tp)
            period = leaf = None
            if self.log is not None:
                appended = self.log.append(lambda p: share_leaf(salt, identity, p, digest), connection=connection)
                period, leaf = appended.period, appended.leaf
            for share in (cs, tp):
                self._record(connection, share, peer, now, period=period, nonce_sha256=claimed.nonce_sha256)
        answer = {"client_secret": cs.to_json(), "time_permit": tp.to_json(),
                  "id": identity.hex(), "issuer": claimed.issuer, "sub": claimed.subject, "date": date}
        if leaf is not None:
            answer["receipt"] = {"period": period, "leaf": leaf.hex(), "salt": salt.hex(),
                                 "share_digest": digest.hex(), "dta": self.name}
        return answer

    def server_share(self, peer: Locator) -> dict:
        with self.store.begin() as connection:
            service = connection.execute(select(tables.services.c.name).where(
                tables.services.c.anchor == locator_key(peer))).first()
            if service is None:
                raise DtaError(403, "service_not_registered",
                               "this party is not a relying service registered with this D-TA "
                               "(milagro dta service add)")
            now = int(self.clock())
            ss = issue_server_secret(self.master, self.key, dta=self.name, dta_locator=self.locator,
                                     recipient=peer, issued=now)
            # Logged like client shares; the "ID" is the service's locator (binary form), which
            # the salt hides from the public log as it hides a user's.
            salt, period, leaf = os.urandom(SALT_SIZE), None, None
            if self.log is not None:
                appended = self.log.append(lambda p: share_leaf(salt, peer.encode(), p, ss.digest()),
                                           connection=connection)
                period, leaf = appended.period, appended.leaf
            self._record(connection, ss, peer, now, period=period)
        answer = {"server_secret": ss.to_json(), "service": service.name}
        if leaf is not None:
            answer["receipt"] = {"period": period, "leaf": leaf.hex(), "salt": salt.hex(),
                                 "share_digest": ss.digest().hex(), "dta": self.name}
        return answer

    @staticmethod
    def _record(connection, share: SignedShare, peer: Locator, now: int, *, period=None, nonce_sha256=None) -> None:
        connection.execute(insert(tables.issued).values(
            kind=share.kind.value, identity=share.identity.hex() if share.identity is not None else None,
            date=share.date, anchor=locator_key(peer), recipient=json.dumps(peer.to_json(), sort_keys=True),
            share_sha256=share.digest().hex(), login_nonce_sha256=nonce_sha256, period=period, issued_at=now))


# --- administration (the CLI) ---------------------------------------------------------------
def add_service(store, locator: Locator, name: str, *, now: float | None = None) -> dict:
    from ..store import insert_or_ignore
    with store.begin() as connection:
        inserted = insert_or_ignore(connection, tables.services, {
            "anchor": locator_key(locator), "name": name, "locator": json.dumps(locator.to_json(), sort_keys=True),
            "added_at": int(now if now is not None else time.time())})
        row = connection.execute(select(tables.services).where(tables.services.c.anchor == locator_key(locator))).first()
    if row is None:
        raise DtaError(409, "service_exists", f"the name {name!r} is registered already for another locator")
    if row.name != name:
        raise DtaError(409, "service_exists", f"this locator is registered already, as {row.name!r}")
    return {"name": row.name, "anchor": row.anchor, "added": inserted}


def revoke_user(store, issuer: str, sub: str, *, now: float | None = None) -> bool:
    from ..store import insert_or_ignore
    with store.begin() as connection:
        return insert_or_ignore(connection, tables.revoked, {"issuer": issuer, "sub": sub,
                                                             "revoked_at": int(now if now is not None else time.time())})
