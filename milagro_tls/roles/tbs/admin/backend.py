"""The one place where the admin UI meets the TBS's own tables (helper M1's code).

The views and the JSON API speak only to a ``TbsBackend``; ``StoreBackend`` implements it by
calling the TBS's functions (``milagro_tls.roles.tbs.groups``, listed in ``REQUIRED_FROM_TBS``),
so a change in the TBS's store touches this file alone.

Group names: 1 to 64 of ``A-Za-z0-9._-``. D-TA URLs: https only. Trust entries: the full
documents of admin/trust.py (certificate and proof included), already verified.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from ....errors import MilagroError

GROUP_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_DTA_URLS = 16
STATES = ("queued", "batched", "anchored", "requeued", "failed")


class BackendError(MilagroError):
    """Refused input (the message is for the admin): HTTP 400."""


class NotFound(BackendError):
    """No such group or enrolment: HTTP 404."""


class Conflict(BackendError):
    """The group exists already: HTTP 409."""


@dataclass(frozen=True)
class Group:
    name: str
    dta_urls: tuple[str, ...]
    trust: tuple[dict, ...]               # full verified entries (trust.py)
    default: bool = False
    version: int | None = None            # the newest pushed instruction version, None before any

    def to_json(self) -> dict:
        from .trust import public_entry
        return {"name": self.name, "dta_urls": list(self.dta_urls), "default": self.default,
                "version": self.version, "trust": [public_entry(e) for e in self.trust]}


@dataclass(frozen=True)
class Enrolment:
    id: str
    group: str | None
    state: str
    created: int
    updated: int
    certificate_name: str | None = None
    batch_id: int | None = None
    txid: str | None = None
    locator: dict | None = None
    installed_version: int | None = None   # the instruction version the PAT last fetched

    def to_json(self) -> dict:
        return {"id": self.id, "group": self.group, "status": self.state, "created": self.created,
                "updated": self.updated, "name": self.certificate_name, "batch_id": self.batch_id,
                "txid": self.txid, "locator": self.locator, "installed_version": self.installed_version}


@dataclass(frozen=True)
class Pushed:
    group: str
    version: int
    pats: int                               # PATs of the group that will be offered it


class TbsBackend(Protocol):
    def groups(self) -> list[Group]: ...
    def group(self, name: str) -> Group: ...                                  # NotFound
    def create_group(self, name: str, dta_urls: list[str]) -> Group: ...      # Conflict
    def set_dta_urls(self, name: str, dta_urls: list[str]) -> Group: ...
    def put_trust(self, name: str, entries: list[dict]) -> Group: ...         # add or replace by name
    def remove_trust(self, name: str, entry_name: str) -> Group: ...          # NotFound
    def set_default(self, name: str) -> None: ...
    def enrolments(self, *, group: str | None = None, state: str | None = None,
                   limit: int = 200) -> list[Enrolment]: ...                   # newest first
    def enrolment(self, enrolment_id: str) -> Enrolment: ...                  # NotFound
    def push(self, name: str) -> Pushed: ...


# --- input checks shared by every backend ---------------------------------------------------
def check_group_name(name) -> str:
    if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
        raise BackendError("a group name is 1 to 64 letters, digits, '.', '_' or '-'")
    return name


def check_dta_urls(urls) -> list[str]:
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise BackendError("dta_urls is a list of URLs")
    cleaned = [u.strip() for u in urls if u.strip()]
    if len(cleaned) > MAX_DTA_URLS:
        raise BackendError(f"at most {MAX_DTA_URLS} D-TA URLs")
    for url in cleaned:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.fragment or len(url) > 512:
            raise BackendError(f"not an https D-TA URL: {url!r}")
    if len(set(cleaned)) != len(cleaned):
        raise BackendError("a D-TA URL is listed twice")
    return cleaned


def check_state(state) -> str | None:
    if state in (None, ""):
        return None
    if state not in STATES:
        raise BackendError(f"state is one of {', '.join(STATES)}")
    return state


# --- the TBS's store (helper M1's groups.py) -------------------------------------------------
#: What StoreBackend calls in ``milagro_tls.roles.tbs.groups`` (every function takes the roles'
#: Store first and commits before returning; refusals raise groups.TbsError(status, ...)):
REQUIRED_FROM_TBS = """
list_groups(store) -> [GroupRow(name, dta_urls, trust, is_default, version)]
get_group(store, name) -> GroupRow | None
add_group(store, name, dta_urls) -> None                 (TbsError 409 on a duplicate)
set_group_dta_urls(store, name, dta_urls) -> bool       (False: no such group)
set_group_trust(store, name, entries) -> bool           (the whole list replaced)
set_default_group(store, name) -> bool
list_enrolments(store, *, group, state, limit) -> [EnrolmentRow(id, group, state, created_at,
    updated_at, certificate_name, batch_id, txid, locator, installed_version)], newest first
get_enrolment(store, enrolment_id) -> EnrolmentRow | None
push_instructions(store, group) -> (version, pats)
"""


def _tbs():
    from .. import groups        # imported late: the TBS package imports the admin app
    return groups


def _translated(call, *args, **kwargs):
    """Call the TBS and turn its refusals (TbsError with an HTTP status) into ours."""
    groups = _tbs()
    try:
        return call(*args, **kwargs)
    except groups.TbsError as refused:
        kind = {404: NotFound, 409: Conflict}.get(refused.status, BackendError)
        raise kind(refused.description) from None


@dataclass
class StoreBackend:
    """TbsBackend over the TBS's tables, through groups.py."""
    store: object

    @staticmethod
    def _group(row) -> Group:
        return Group(row.name, tuple(row.dta_urls), tuple(row.trust), bool(row.is_default), row.version)

    def groups(self) -> list[Group]:
        return [self._group(row) for row in _translated(_tbs().list_groups, self.store)]

    def group(self, name: str) -> Group:
        row = _translated(_tbs().get_group, self.store, check_group_name(name))
        if row is None:
            raise NotFound(f"no group {name!r}")
        return self._group(row)

    def create_group(self, name: str, dta_urls: list[str]) -> Group:
        name, urls = check_group_name(name), check_dta_urls(dta_urls)
        _translated(_tbs().add_group, self.store, name, urls)
        return self.group(name)

    def set_dta_urls(self, name: str, dta_urls: list[str]) -> Group:
        if not _translated(_tbs().set_group_dta_urls, self.store, check_group_name(name), check_dta_urls(dta_urls)):
            raise NotFound(f"no group {name!r}")
        return self.group(name)

    def _set_trust(self, name: str, entries: list[dict]) -> Group:
        if not _translated(_tbs().set_group_trust, self.store, name, sorted(entries, key=lambda e: e["name"])):
            raise NotFound(f"no group {name!r}")
        return self.group(name)

    def put_trust(self, name: str, entries: list[dict]) -> Group:
        # Read, merge, replace: two admins editing one group at once is last-writer-wins.
        current = {e["name"]: e for e in self.group(name).trust}
        current.update({e["name"]: e for e in entries})
        return self._set_trust(name, list(current.values()))

    def remove_trust(self, name: str, entry_name: str) -> Group:
        before = self.group(name).trust
        kept = [e for e in before if e["name"] != entry_name]
        if len(kept) == len(before):
            raise NotFound(f"group {name!r} trusts no entry named {entry_name!r}")
        return self._set_trust(name, kept)

    def set_default(self, name: str) -> None:
        if not _translated(_tbs().set_default_group, self.store, check_group_name(name)):
            raise NotFound(f"no group {name!r}")

    @staticmethod
    def _enrolment(row) -> Enrolment:
        return Enrolment(row.id, row.group, row.state, int(row.created_at), int(row.updated_at),
                         row.certificate_name, row.batch_id, row.txid, row.locator, row.installed_version)

    def enrolments(self, *, group=None, state=None, limit=200) -> list[Enrolment]:
        rows = _translated(_tbs().list_enrolments, self.store, group=group, state=check_state(state), limit=limit)
        return [self._enrolment(row) for row in rows]

    def enrolment(self, enrolment_id: str) -> Enrolment:
        row = _translated(_tbs().get_enrolment, self.store, enrolment_id)
        if row is None:
            raise NotFound(f"no enrolment {enrolment_id!r}")
        return self._enrolment(row)

    def push(self, name: str) -> Pushed:
        version, pats = _translated(_tbs().push_instructions, self.store, check_group_name(name))
        return Pushed(name, version, pats)
