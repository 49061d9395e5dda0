"""Fixtures for the IdP's tests.

``idp_app``: the Flask app over a SQLite store in tmp_path (fast unit tests, Flask test
client). ``idp_server``: ``milagro idp serve`` in a subprocess (gunicorn) against the world's
chain, for the tests that go over real HTTPS (see subprocess_server.py)."""
from __future__ import annotations

import pytest

from milagro_tls.roles.idp.app import create_app
from milagro_tls.roles.idp.clients import register_client
from milagro_tls.roles.idp.config import IdPConfig
from milagro_tls.roles.idp.keys import KeyRing
from milagro_tls.roles.idp.tables import migrate
from milagro_tls.roles.idp.users import add_user
from milagro_tls.roles.store import open_store

from .flows import PASSWORD, REDIRECT_URI

ISSUER = "https://localhost"


def make_config(tmp_path, **options) -> IdPConfig:
    store = open_store(None, tmp_path)
    migrate(store)
    keys = KeyRing(tmp_path / "keys", token_lifetime=options.get("token_lifetime", 3600)).ensure()
    return IdPConfig(issuer=ISSUER, store=store, keys=keys, secret_key=b"k" * 32, **options)


@pytest.fixture
def idp_config(tmp_path):
    config = make_config(tmp_path)
    add_user(config.store, "alice", PASSWORD)
    yield config
    config.store.close()


@pytest.fixture
def idp_app(idp_config):
    return create_app(idp_config)


@pytest.fixture
def browser(idp_app):
    """A Flask test client that keeps cookies, over https://localhost (the cookie is Secure)."""
    client = idp_app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


@pytest.fixture
def confidential_client(idp_config):
    client, secret = register_client(idp_config.store, {
        "client_name": "Confidential App", "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"], "scope": "openid profile"})
    return client, secret


@pytest.fixture
def public_client(idp_config):
    client, _ = register_client(idp_config.store, {
        "client_name": "Public App", "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none"})
    return client


@pytest.fixture
def device_client(idp_config):
    client, _ = register_client(idp_config.store, {
        "client_name": "Thermostat", "token_endpoint_auth_method": "none",
        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]})
    return client


@pytest.fixture(scope="module")
def idp_server(world, tmp_path_factory):
    """``milagro idp serve`` (gunicorn, one worker) on a free port against the world's chain,
    open registration, user alice / "correct horse". Yields an IdPProcess: .issuer, .port,
    .ca_file (the fallback certificate, the CA standard clients trust), .home,
    .registration_token (None: open), .stop()."""
    from .served import ServedChain, start_idp

    chain = ServedChain(world)
    try:
        server = start_idp(tmp_path_factory.mktemp("idp-home"), chain.chain_dir)
        try:
            yield server
        finally:
            server.stop()
    finally:
        chain.close()
