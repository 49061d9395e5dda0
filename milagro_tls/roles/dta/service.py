"""The D-TA built from a role home: what ``milagro dta serve`` does in gunicorn's master
(``prepare``: identity, master secret, fallback certificate, schema, IdP registrations) and in
each worker (``worker_app``: the Flask app over the worker's own store, chain source and IdP
clients)."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...chain.spec import open_source
from ...identity.rootchain import RootAnchorer
from ...mpin import MasterSecret
from ..activitylog import ActivityLog, PeriodicJobs
from ..canary import CanaryKeeper
from ..home import RoleHome
from ..wellknown import wellknown_blueprint
from . import tables
from .app import Dta, create_app
from .idps import IdPAccess, ensure_registered, load_provider
from .issuance import Issuer
from .logins import LOGIN_LIFETIME, SHARE_WINDOW, Logins

log = logging.getLogger(__name__)

ROLE = "dta"


@dataclass
class DtaSettings:
    """Everything a worker needs, as plain values (they cross the fork)."""
    home: str
    chain: str
    base_url: str                                  # https://localhost:PORT: the redirect URI's base
    idps: list[str] = field(default_factory=list)
    name: str = "dta"
    db: str | None = None
    period: int = 60
    idp_trust: str | None = None
    idp_ca: str | None = None
    idp_registration_token: str | None = None
    login_lifetime: int = LOGIN_LIFETIME
    share_window: int = SHARE_WINDOW

    def to_kwargs(self) -> dict:
        return asdict(self)

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback"


def master_secret_path(home: str | Path) -> Path:
    return Path(home) / "mpin-master.key"


def prepare(settings: DtaSettings, source) -> tuple[RoleHome, object]:
    """In the master, before the workers fork: the anchored identity (with its activity-log
    root chain), the master secret (0600, created once), the schema, and a registration with
    every IdP, so that workers find them all and never race to make them."""
    home = RoleHome(settings.home, ROLE, settings.name)
    party = home.ensure_identity(source, urls=(settings.base_url,))
    MasterSecret.ensure(master_secret_path(settings.home))
    home.secret("dta-session")
    store = home.open_store(settings.db)
    access = IdPAccess(settings.idp_trust, settings.idp_ca, settings.chain, tuple(settings.idps))
    try:
        tables.migrate(store)
        for issuer in settings.idps:
            ensure_registered(store, home.path, issuer, access.http(issuer), redirect_uri=settings.redirect_uri,
                              client_name=f"D-TA {settings.name}", pinned=access.entry(issuer),
                              registration_token=settings.idp_registration_token)
    finally:
        access.close()
        store.close()
    return home, party


def worker_app(**kwargs):
    """The gunicorn worker's app factory (ServeConfig.app), called after the fork."""
    settings = DtaSettings(**kwargs)
    home = RoleHome(settings.home, ROLE, settings.name)
    party = home.party()
    store = home.open_store(settings.db)
    tables.migrate(store)
    source = open_source(settings.chain)
    access = IdPAccess(settings.idp_trust, settings.idp_ca, settings.chain, tuple(settings.idps))
    providers = {issuer: load_provider(store, issuer) for issuer in settings.idps}
    log_ = ActivityLog(store, settings.period, RootAnchorer(home.path, settings.name, source))
    canary = CanaryKeeper(store, party.key, settings.base_url, log_)
    jobs = PeriodicJobs(log_, canary=canary).start()
    logins = Logins(store, providers, access.http, base_url=settings.base_url,
                    login_lifetime=settings.login_lifetime, share_window=settings.share_window)
    issuer = Issuer(store, logins, MasterSecret.load(master_secret_path(settings.home)), party.key,
                    party.certificate.name, party.locator, log_)
    app = create_app(Dta(logins, issuer, home.secret("dta-session"), settings.base_url,
                         blueprints=(wellknown_blueprint(party, canary=canary, log=log_, source=source),)))

    def shutdown() -> None:
        jobs.stop()
        access.close()
        store.close()
        close = getattr(source, "close", None)
        if close is not None:
            close()

    app.milagro_shutdown = shutdown
    return app
