"""The admin's tables and the backend on SQLite and on a real PostgreSQL (store_url): admins,
tokens, sessions, and groups through StoreBackend (create, D-TA URLs, default, push)."""
from __future__ import annotations

import hashlib

import pytest

from milagro_tls.roles.store import open_store
from milagro_tls.roles.tbs import tables as tbs_tables
from milagro_tls.roles.tbs.admin import StoreBackend, migrate
from milagro_tls.roles.tbs.admin.accounts import (AdminExists, add_admin, authenticate, close_session,
                                                  create_token, open_session, revoke_token, session_owner,
                                                  token_admin)
from milagro_tls.roles.tbs.admin.backend import BackendError, Conflict, NotFound


@pytest.fixture
def store(store_url, tmp_path):
    store = open_store(store_url, tmp_path)
    tbs_tables.migrate(store)
    assert migrate(store) == 2
    assert migrate(store) == 2                                   # a second worker's start
    yield store
    store.close()


def test_accounts(store):
    admin = add_admin(store, "root", "pw")
    with pytest.raises(AdminExists):
        add_admin(store, "root", "pw2")
    assert authenticate(store, "root", "pw") == admin
    assert authenticate(store, "root", "PW") is None
    token = create_token(store, admin, "ci")
    assert token_admin(store, token) == admin
    assert token_admin(store, token + "x") is None
    assert not revoke_token(store, admin, "zz")
    assert revoke_token(store, admin, hashlib.sha256(token.encode()).hexdigest()[:12])
    assert token_admin(store, token) is None
    sid = open_session(store, admin, 3600)
    assert session_owner(store, sid) == admin
    close_session(store, sid)
    assert session_owner(store, sid) is None


def test_backend_groups(store):
    backend = StoreBackend(store)
    assert [g.name for g in backend.groups()] == ["default"]
    group = backend.create_group("field-a", ["https://dta.example"])
    assert (group.name, group.dta_urls, group.default, group.version) == ("field-a", ("https://dta.example",), False, None)
    with pytest.raises(Conflict):
        backend.create_group("field-a", [])
    with pytest.raises(BackendError):
        backend.create_group("a/b", [])
    with pytest.raises(NotFound):
        backend.set_dta_urls("nope", [])
    assert backend.set_dta_urls("field-a", []).dta_urls == ()
    backend.set_default("field-a")
    assert backend.group("field-a").default and not backend.group("default").default
    first = backend.push("field-a")
    assert (first.group, first.pats) == ("field-a", 0)
    assert backend.push("default").version > first.version       # one sequence over all groups
    assert backend.group("field-a").version == first.version
    with pytest.raises(NotFound):
        backend.push("nope")
    with pytest.raises(NotFound):
        backend.remove_trust("field-a", "nobody")
    assert backend.enrolments() == []
    with pytest.raises(NotFound):
        backend.enrolment("abc")
