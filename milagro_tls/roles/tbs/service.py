"""The TBS built from a role home: what ``milagro tbs serve`` does in gunicorn's master
(``prepare``: keys, identity, schema) and in each worker (``worker_app``: the apps over the
worker's own store and chain source, the batch worker and the activity log's jobs).

    HOME/batch.key        the batching key (0600): P2TR internal key, first key of every leaf
    HOME/enrolment.key    the enrolment key (0600): PATs seal their requests to it (ECIES)
    HOME/secrets/tbs-at-rest.key        seals the PATs' AES keys in the store
    HOME/secrets/tbs-admin-session.key  the admin app's cookie key
    HOME/headers.db       the admin's header chain (trust entries are verified against it)

The identity (role "tbs") has root chains for its activity log (0x03) and its revocation list
(0x04, issue 18: revocations.py anchors its lists from the batch thread); its certificate names the batching key (``batch_key``) and the enrolment key
(``role_data.enrolment_key``), so a PAT checks both against the chain before it enrols.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import coincurve

from ...chain.spec import open_source
from ...identity.batch import BatchAssembler, BatchKey
from ...identity.keys import read_key_file, write_key_file
from ...identity.marker import MarkerType
from ...identity.rootchain import RootAnchorer
from ..activitylog import ActivityLog, PeriodicJobs
from ..canary import CanaryKeeper
from ..home import RoleHome, RoleHomeError
from ..walletstore import root_chain_lock, root_chain_state, store_wallet
from ..wellknown import wellknown_blueprint
from . import tables
from .app import PortDispatcher, TbsApp, create_app
from .batcher import Batcher, BatchJobs, BatchPolicy
from .enrolments import AtRestKey, Enrolments, PendingBatches
from .revocations import RevocationLists, SealStatus, share_worker_store

log = logging.getLogger(__name__)

ROLE = "tbs"
ENROLMENT_KEY_FILE = "enrolment.key"
ROOT_CHAINS = (MarkerType.ACTIVITY_LOG_ROOT, MarkerType.REVOCATION_LIST_ROOT)


@dataclass
class TbsSettings:
    """Everything a worker needs, as plain values (they cross the fork)."""
    home: str
    chain: str
    base_url: str
    name: str = "tbs"
    db: str | None = None
    period: int = 60
    admin_port: int | None = None
    max_batch: int = 128
    gather: float = 2.0
    batch_wait: float = 30.0
    min_confirmations: int = 1
    lease: float = 60.0
    max_attempts: int = 5
    batch_interval: float = 0.5

    def to_kwargs(self) -> dict:
        return asdict(self)

    def policy(self) -> BatchPolicy:
        return BatchPolicy(max_batch=self.max_batch, gather=self.gather, batch_wait=self.batch_wait,
                           min_confirmations=self.min_confirmations, lease=self.lease,
                           max_attempts=self.max_attempts)


def enrolment_key(home: str | Path) -> coincurve.PrivateKey:
    """HOME/enrolment.key, created (0600) on first use."""
    path = Path(home) / ENROLMENT_KEY_FILE
    if not path.exists():
        try:
            write_key_file(path, coincurve.PrivateKey().secret)
        except FileExistsError:         # another process made it first
            pass
    return coincurve.PrivateKey(read_key_file(path))


def prepare(settings: TbsSettings, source) -> tuple[RoleHome, object]:
    """In the master, before the workers fork: the keys, the anchored identity naming them,
    the role's secrets and the schema (workers then find everything made)."""
    home = RoleHome(settings.home, ROLE, settings.name)
    batch_key = BatchKey.load_or_create(home.path)
    enrolling = enrolment_key(home.path).public_key.format(compressed=True).hex()
    party = home.ensure_identity(source, urls=(settings.base_url,), role_data={"enrolment_key": enrolling},
                                 root_chains=ROOT_CHAINS, batch_key=batch_key.xonly)
    if (party.certificate.role_data or {}).get("enrolment_key") != enrolling:
        raise RoleHomeError(f"identity {settings.name!r} names another enrolment key than {home.path / ENROLMENT_KEY_FILE}")
    home.secret("tbs-at-rest")
    home.secret("tbs-admin-session")
    store = home.open_store(settings.db)
    try:
        tables.migrate(store)
        ActivityLog(store, settings.period, None)          # its schema
        store_wallet(home.path, source, store)             # its schema; wallet.json adopted once
        admin = _admin_module()
        if admin is not None and hasattr(admin, "migrate"):
            admin.migrate(store)
    finally:
        store.close()
    return home, party


def _admin_module():
    try:
        from . import admin
    except ImportError:
        return None
    return admin if hasattr(admin, "create_admin_app") else None


class TbsContext:
    """What the admin app gets (see the package docstring)."""

    def __init__(self, settings: TbsSettings, home: RoleHome, party, store, source, enrolments: Enrolments) -> None:
        self.settings, self.home, self.party, self.store, self.source = settings, home, party, store, source
        self.enrolments = enrolments
        self.secret_key = home.secret("tbs-admin-session")
        self._headers = None
        self._lock = threading.Lock()

    @property
    def headers(self):
        """A HeaderChain in HOME/headers.db, opened on first use (the caller syncs it)."""
        with self._lock:
            if self._headers is None:
                from ...chain.headerchain import HeaderChain
                self._headers = HeaderChain(str(self.home.path / "headers.db"), self.source.network)
            return self._headers

    def close(self) -> None:
        if self._headers is not None:
            self._headers.close()


def _not_installed(environ, start_response):
    start_response("404 NOT FOUND", [("Content-Type", "application/json")])
    return [b'{"error": "not_found", "error_description": "the admin UI is not installed"}']


def _chain_blueprint(source, revocation_lists: RevocationLists):
    """/chain/*: the tbs:// source, and GET /chain/revocation/<digest> answered from the store."""
    from ...chain.tbs_endpoints import chain_blueprint
    return chain_blueprint(source, revocations=revocation_lists.answer)


def worker_app(**kwargs):
    """The gunicorn worker's app factory (ServeConfig.app), called after the fork."""
    settings = TbsSettings(**kwargs)
    home = RoleHome(settings.home, ROLE, settings.name)
    party = home.party()
    store = home.open_store(settings.db)
    tables.migrate(store)
    # The serving Context's OwnPatRevocations reads this store: one per worker (revocations.py).
    share_worker_store(settings.home, settings.db, store)
    source = open_source(settings.chain)
    # The wallet record, the root chain's state and their locks in the store: workers on several
    # machines sharing the database never spend one coin twice or fork a chain (roles.walletstore).
    wallet = store_wallet(home.path, source, store)
    anchorer = RootAnchorer(home.path, settings.name, source, wallet=wallet,
                            lock=root_chain_lock(store, home.path, settings.name),
                            state=root_chain_state(store, home.path, settings.name))
    activity = ActivityLog(store, settings.period, anchorer)
    canary = CanaryKeeper(store, party.key, settings.base_url, activity)
    log_jobs = PeriodicJobs(activity, canary=canary).start()
    assembler = BatchAssembler(BatchKey.load_or_create(home.path), wallet,
                               max_pats=settings.max_batch)
    pending = PendingBatches()
    batcher = Batcher(store, assembler, source, activity, settings.policy(), pending=pending)
    revocation_lists = RevocationLists(store, anchorer, lease=settings.lease)
    batch_jobs = BatchJobs(batcher, interval=settings.batch_interval, also=(revocation_lists.anchor_due,)).start()
    enrolments = Enrolments(store, enrolment_key=enrolment_key(home.path),
                            at_rest=AtRestKey(home.secret("tbs-at-rest")), batch_key=assembler.batch_key.xonly,
                            network=source.network.label, tbs_key=party.key, tbs_name=party.certificate.name,
                            accept=assembler.accept, pending=pending, revocations=revocation_lists,
                            seals=SealStatus(source))
    blueprints = [wellknown_blueprint(party, canary=canary, log=activity, source=source)]
    blueprints.append(_chain_blueprint(source, revocation_lists))
    main = create_app(TbsApp(enrolments, blueprints=tuple(blueprints)))
    context = TbsContext(settings, home, party, store, source, enrolments)
    admin_app = _not_installed
    if settings.admin_port is not None and (admin := _admin_module()) is not None:
        admin_app = admin.create_admin_app(context)
    app = PortDispatcher(main, admin_app, settings.admin_port)

    def shutdown() -> None:
        batch_jobs.stop()
        log_jobs.stop()
        context.close()
        store.close()
        close = getattr(source, "close", None)
        if close is not None:
            close()

    app.milagro_shutdown = shutdown
    app.batcher = batcher                   # tests and the admin may look
    app.revocation_lists = revocation_lists
    return app
