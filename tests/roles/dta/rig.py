"""The D-TA's app in-process, as its unit tests and the request-body fuzzer build it: a SQLite
store in a directory, a fake IdP behind httpx.MockTransport (fakes.py), a settable clock."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from milagro_tls.identity.keys import IdentityKey
from milagro_tls.mpin import MasterSecret
from milagro_tls.roles.activitylog import ActivityLog
from milagro_tls.roles.dta import tables
from milagro_tls.roles.dta.app import Dta, create_app
from milagro_tls.roles.dta.idps import ensure_registered
from milagro_tls.roles.dta.issuance import Issuer
from milagro_tls.roles.dta.logins import Logins
from milagro_tls.roles.store import open_store

from .fakes import FakeIdP, FakeSocket, fake_locator

BASE_URL = "https://localhost:7443"


class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def dta_rig(directory: Path, name: str = "dta-test") -> SimpleNamespace:
    """Every part of one in-process D-TA; ``close()`` releases the store and the IdP client.
    ``browser`` is a test client over https; ``as_party(locator)`` one carrying a fake
    milagro-tls peer in ``environ["gunicorn.socket"]``."""
    clock = Clock()
    idp = FakeIdP(clock=clock)
    store = open_store(None, directory)
    tables.migrate(store)
    http = idp.client()
    provider = ensure_registered(store, directory, idp.issuer, http, redirect_uri=f"{BASE_URL}/callback",
                                 client_name=name)
    logins = Logins(store, {idp.issuer: provider}, lambda issuer: http, base_url=BASE_URL, clock=clock)
    key = IdentityKey.generate()
    dta_locator = fake_locator(200)
    log = ActivityLog(store, 60, None, clock=clock)
    master, session_key = MasterSecret.generate(), os.urandom(32)
    issuer = Issuer(store, logins, master, key, name, dta_locator, log, clock=clock)
    app = create_app(Dta(logins, issuer, session_key, BASE_URL))
    browser = app.test_client()
    browser.environ_base["wsgi.url_scheme"] = "https"

    def as_party(locator):
        client = app.test_client()
        client.environ_base.update({"wsgi.url_scheme": "https", "gunicorn.socket": FakeSocket(locator)})
        return client

    def close() -> None:
        http.close()
        store.close()
    return SimpleNamespace(app=app, idp=idp, clock=clock, store=store, http=http, provider=provider, logins=logins,
                           issuer=issuer, key=key, master=master, session_key=session_key, dta_locator=dta_locator,
                           log=log, tables=tables, browser=browser, as_party=as_party, close=close)
