"""What the admin tests share: a store with the TBS's and the admin's tables, an admin, the
app over StoreBackend with chain access to the test world, enrolment rows, and a Flask test
client that speaks HTTPS (so the Secure session cookie travels as in a browser)."""
from __future__ import annotations

import re
import secrets
import time

import pytest
from flask.testing import FlaskClient
from sqlalchemy import insert, update

from milagro_tls.roles.store import open_store
from milagro_tls.roles.tbs import tables as tbs_tables
from milagro_tls.roles.tbs.admin import AdminConfig, ChainAccess, StoreBackend, add_admin, create_admin_app, migrate

ADMIN, PASSWORD = "root", "correct horse battery"
BASE_URL = "https://admin.test"


class HttpsClient(FlaskClient):
    def open(self, *args, **kwargs):
        kwargs.setdefault("base_url", BASE_URL)
        return super().open(*args, **kwargs)


def make_store(path):
    store = open_store(None, path)
    tbs_tables.migrate(store)
    migrate(store)
    return store


def make_app(store, *, chain=None, fetch_http=None, poll_interval_ms: int = 2000):
    config = AdminConfig(store=store, backend=StoreBackend(store), secret_key=secrets.token_bytes(32),
                         chain=chain, poll_interval_ms=poll_interval_ms)
    if fetch_http is not None:
        config.fetch_http = fetch_http
    app = create_admin_app(config)
    app.test_client_class = HttpsClient
    return app


@pytest.fixture
def store(tmp_path):
    store = make_store(tmp_path)
    yield store
    store.close()


@pytest.fixture
def chain(world):
    return ChainAccess(world.source, world.headers())


@pytest.fixture
def app(store, chain):
    application = make_app(store, chain=chain)
    add_admin(store, ADMIN, PASSWORD)
    return application


@pytest.fixture
def client(app):
    return app.test_client()


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(response) -> str:
    found = CSRF.search(response.get_data(as_text=True))
    assert found, "the page carries a CSRF token"
    return found.group(1)


def log_in(client, username: str = ADMIN, password: str = PASSWORD):
    token = csrf_of(client.get("/login"))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token,
                                       "next": "/groups"})


@pytest.fixture
def logged_in(client):
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/groups"
    return client


def page_csrf(client, path: str = "/groups") -> str:
    return csrf_of(client.get(path))


def add_enrolment(store, certificate, *, group: str = "default", state: str = "queued") -> str:
    """An enrolment row as the TBS's /enrol writes it (the admin only reads these)."""
    enrolment_id = secrets.token_hex(16)
    now = time.time()
    with store.begin() as connection:
        connection.execute(insert(tbs_tables.enrolments).values(
            id=enrolment_id, digest=certificate.digest(), certificate=certificate.canonical_bytes().decode(),
            aes_key=b"\0" * 28, group_name=group, state=state, attempts=0, queued_at=now, created_at=now,
            updated_at=now))
    return enrolment_id


def set_state(store, enrolment_id: str, state: str) -> None:
    with store.begin() as connection:
        connection.execute(update(tbs_tables.enrolments).where(tbs_tables.enrolments.c.id == enrolment_id)
                           .values(state=state, updated_at=time.time()))


def pasted_entry(party, *, name: str | None = None, roles=None, certificate=None) -> dict:
    return {"name": name or party.certificate.name, "locator": party.locator.to_json(),
            "roles": roles or [party.certificate.role],
            "certificate": (certificate or party.certificate).canonical_bytes().decode()}
