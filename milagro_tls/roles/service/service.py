"""The relying service built from a role home: what ``milagro service serve`` does in gunicorn's
master (``prepare``: the anchored identity; ``fetch_server_secret``: SS_i from every D-TA over
milagro-tls, each verified, summed into SS) and in each worker (``worker_app``)."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from ...chain.spec import open_source
from ...mpin import MpinServer, combine_g2
from ..dta.client import DtaClient, DtaError
from ..home import RoleHome
from ..wellknown import wellknown_blueprint
from . import sessions
from .app import ServiceConfig, create_app
from .serversecret import read_server_secret, server_secret_path, write_server_secret

log = logging.getLogger(__name__)

ROLE = "service"


class ServiceSetupError(DtaError):
    """The service cannot start: a D-TA refused or could not be reached, or too few D-TAs."""


@dataclass
class ServiceSettings:
    """Everything a worker needs, as plain values (they cross the fork)."""
    home: str
    chain: str
    name: str = "service"
    db: str | None = None
    dtas: list[str] = field(default_factory=list)      # "NAME=URL" or "URL"
    dta_trust: str | None = None

    def to_kwargs(self) -> dict:
        return asdict(self)


def parse_dta(spec: str) -> tuple[str, str]:
    """``NAME=URL`` (NAME: the trust-file entry pinning that D-TA) or ``URL`` (the URL's host
    is the pinned name): (name, url)."""
    name, sep, url = spec.partition("=")
    if not sep:
        url, name = spec, urlsplit(spec).hostname or ""
    if not name or not url.startswith("https://"):
        raise ValueError(f"--dta {spec!r}: give NAME=https://... or https://HOST[:PORT]")
    return name, url.rstrip("/")


def fetch_server_secret(settings: ServiceSettings, context, *, min_dtas: int = 2) -> list[dict]:
    """SS_i from each D-TA (``context`` has the service's identity and pins the D-TAs), each
    share's signature checked against its D-TA's anchored key and issued to this service's
    locator; SS = Σ SS_i written 0600 for the workers. Returns the contributing D-TAs."""
    if len(settings.dtas) < min_dtas:
        raise ServiceSetupError(f"a relying service needs shares from at least {min_dtas} D-TAs "
                                f"(--dta given {len(settings.dtas)} times)")
    points, dtas = [], []
    for spec in settings.dtas:
        name, url = parse_dta(spec)
        try:
            with DtaClient(url, context, name) as client:
                share = client.fetch_server_share()
                locator = client.dta_locator
        except DtaError as exc:
            raise ServiceSetupError(f"D-TA {name} at {url}: {exc}") from None
        if any(entry["locator"] == locator.to_json() for entry in dtas):
            raise ServiceSetupError(f"D-TA {name} at {url} is the same anchor as an earlier --dta")
        points.append(share.point)
        dtas.append({"name": name, "url": url, "locator": locator.to_json()})
        log.info("server secret share from D-TA %s (%s) verified", name, url)
    write_server_secret(server_secret_path(settings.home), combine_g2(points), dtas)
    return dtas


def prepare(settings: ServiceSettings, source) -> tuple[RoleHome, object]:
    """In the master before the fork: the anchored identity (role "service", created on first
    start; no root chain: the service keeps no public log) and the schema."""
    home = RoleHome(settings.home, ROLE, settings.name)
    party = home.ensure_identity(source, root_chains=())
    store = home.open_store(settings.db)
    try:
        sessions.migrate(store)
    finally:
        store.close()
    return home, party


def worker_app(**kwargs):
    """The gunicorn worker's app factory, after the fork: its own store connection; SS from
    the file the master wrote."""
    settings = ServiceSettings(**kwargs)
    home = RoleHome(settings.home, ROLE, settings.name)
    party = home.party()
    store = home.open_store(settings.db)
    sessions.migrate(store)
    secret, dtas = read_server_secret(server_secret_path(settings.home))
    source = open_source(settings.chain)            # the seal's revocation status (metadata)

    def authenticated(issuer: str, sub: str) -> None:
        log.info("M-Pin authentication of %r at %r", sub, issuer)

    app = create_app(ServiceConfig(store=store, server=MpinServer(secret), dtas=dtas,
                                   blueprints=(wellknown_blueprint(party, source=source),),
                                   on_authenticated=authenticated))

    def shutdown() -> None:
        store.close()
        close = getattr(source, "close", None)
        if close is not None:
            close()

    app.milagro_shutdown = shutdown
    return app
