"""The IdP built from a role home: what ``milagro idp serve`` does in gunicorn's master
(``prepare``: identity, fallback certificate, schema, keys, the Context) and in each worker
(``worker_app``: the Flask app over the worker's own store connection)."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ...chain.spec import open_source
from ...identity.rootchain import RootAnchorer
from ..activitylog import ActivityLog, PeriodicJobs
from ..canary import CanaryKeeper
from ..home import RoleHome
from ..wellknown import wellknown_blueprint
from . import tables
from .app import create_app
from .config import TOKEN_LIFETIME, IdPConfig
from .keys import KeyRing

log = logging.getLogger(__name__)

ROLE = "idp"


@dataclass
class IdPSettings:
    """Everything a worker needs, as plain values (they cross the fork and the environment)."""
    home: str
    chain: str
    issuer: str
    name: str = "idp"
    db: str | None = None
    period: int = 60                              # activity-log period, seconds
    registration_token: str | None = None
    token_lifetime: int = TOKEN_LIFETIME

    def to_kwargs(self) -> dict:
        return asdict(self)


def keys_dir(home: str | Path) -> Path:
    return Path(home) / "idp-keys"


def milagro_metadata(issuer: str, party) -> dict:
    """The discovery document's milagro fields: where the birth certificate is served, its
    SHA256, the secp256k1 identity key and the anchor's locator."""
    return {"milagro_birth_certificate_uri": f"{issuer}/.well-known/milagro/birth-certificate",
            "milagro_birth_certificate_sha256": party.certificate.digest().hex(),
            "milagro_pubkey": party.key.public_key.hex(),
            "milagro_locator": party.locator.to_json() if party.locator else None}


def prepare(settings: IdPSettings, source) -> tuple[RoleHome, object]:
    """In the master, before the workers fork: the anchored identity (created on first start,
    with its activity-log root chain), the schema and the signing keys, so that workers find
    them and never race to make them."""
    home = RoleHome(settings.home, ROLE, settings.name)
    party = home.ensure_identity(source, urls=(settings.issuer,))
    store = home.open_store(settings.db)
    try:
        tables.migrate(store)
    finally:
        store.close()
    KeyRing(keys_dir(settings.home), token_lifetime=settings.token_lifetime).ensure()
    home.secret("idp-session")
    return home, party


def worker_app(**kwargs):
    """The gunicorn worker's app factory (ServeConfig.app): called after the fork, so the
    store connection, the chain source and the background job are this worker's own."""
    settings = IdPSettings(**kwargs)
    home = RoleHome(settings.home, ROLE, settings.name)
    party = home.party()
    store = home.open_store(settings.db)
    tables.migrate(store)
    keys = KeyRing(keys_dir(settings.home), token_lifetime=settings.token_lifetime).ensure()
    source = open_source(settings.chain)
    # Every worker closes due periods; the log's claims let exactly one anchor each root.
    log_ = ActivityLog(store, settings.period, RootAnchorer(home.path, settings.name, source))
    canary = CanaryKeeper(store, party.key, settings.issuer, log_)
    jobs = PeriodicJobs(log_, canary=canary).start()

    def record_authentication(sub: str) -> dict:
        return log_.append_receipt(sub).to_json(settings.issuer)

    config = IdPConfig(issuer=settings.issuer, store=store, keys=keys, secret_key=home.secret("idp-session"),
                       registration_token=settings.registration_token, milagro=milagro_metadata(settings.issuer, party),
                       record_authentication=record_authentication,
                       blueprints=(wellknown_blueprint(party, canary=canary, log=log_, source=source),),
                       token_lifetime=settings.token_lifetime)
    app = create_app(config)

    def shutdown() -> None:
        jobs.stop()
        store.close()
        close = getattr(source, "close", None)
        if close is not None:
            close()

    app.milagro_shutdown = shutdown
    return app
