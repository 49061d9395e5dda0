"""``milagro_tls.Context``: an ``ssl.SSLContext`` that speaks the Bitcoin-keyed suites.

It subclasses ``ssl.SSLContext`` because asyncio's ``start_tls`` checks ``isinstance``;
``wrap_socket`` and ``wrap_bio`` return our socket and SSLObject look-alikes, so code written
for ``ssl`` (asyncio, http.client, urllib, socketserver, wsgiref, httpx, gunicorn) runs
unmodified. What it adds is held here once per context: the verified header chain and the
thread that keeps it current, the identity and its staple, the trust store, the server's
session cache and the optional standard-suite fallback.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

from .chain.headerchain import HeaderChain, default_header_path
from .chain.errors import AnchorRevoked, SourceError, SourceUnavailable, VerificationError
from .chain.revocation import BatchChecker, check_not_revoked
from .chain.revocation_list import RevocationUnknown
from .chain.source import ChainSource
from .chain.spec import open_source
from .chain.verify import DEFAULT_MIN_CONFIRMATIONS
from .ciphersuites.registry import DEFAULT_SUITES, SuiteSpec, select_suites, suite_by_name
from .handshake import Connection, HandshakeConfig, Role
from .handshake.errors import AnchorNotYetVerifiable
from .handshake.messages import DEFAULT_MAX_STAPLE_SIZE
from .handshake.peer import VerifiedStapleCache
from .handshake.session import DEFAULT_SESSION_LIFETIME, Session, SessionCache
from .headersync import DEFAULT_INTERVAL, HeaderSync
from .identity.local import LocalIdentity
from .trust import TrustEntry, TrustStore
from .adapters.sslobject import MilagroSSLObject
from .adapters.sslsocket import MilagroSocket
from .capture.keylog import KeyLog, keylog_path_from_environment

log = logging.getLogger(__name__)

#: How long a handshake waits for the source's answer on revocation before refusing the peer.
DEFAULT_REVOCATION_TIMEOUT = 5.0
#: Revocation questions in flight at once per process; more wait (within their timeout).
REVOCATION_WORKERS = 4


#: Names of unchecked batch PATs remembered for the once-per-name log line (bounded memory).
_MAX_UNCHECKED_NAMES = 10_000


def _batch_checkers(spec) -> tuple[BatchChecker, ...]:
    if spec is None:
        return ()
    if callable(spec):
        return (spec,)
    checkers = tuple(spec)
    if not all(callable(checker) for checker in checkers):
        raise TypeError("batch_revocation takes BatchCheckers (callables, e.g. TbsRevocations)")
    return checkers


def _suites(spec) -> tuple[SuiteSpec, ...]:
    if spec is None:
        return DEFAULT_SUITES
    if isinstance(spec, str):
        return select_suites(spec)
    chosen: list[SuiteSpec] = []
    for item in spec:
        for suite in (select_suites(item) if isinstance(item, str) else (item,)):
            if suite not in chosen:
                chosen.append(suite)
    return tuple(chosen)


def _trust(trust) -> TrustStore:
    if trust is None:
        return TrustStore()
    if isinstance(trust, TrustStore):
        return trust
    if isinstance(trust, (str, os.PathLike)):
        return TrustStore.load(trust)
    items = list(trust)
    if all(isinstance(item, TrustEntry) for item in items):
        return TrustStore(items)
    return TrustStore.from_json(items)


def _server_hostname(name: str | bytes | None) -> str | None:
    """As ssl.SSLContext does with ``server_hostname``: a str (IDNA-encoded to its ASCII form)
    or ASCII bytes, which anyio passes (``TLSStream.wrap`` resolves names with IDNA 2008)."""
    if name is None:
        return None
    if isinstance(name, str):
        return name.encode("idna").decode("ascii")
    return bytes(name).decode("ascii")


_warned_keylogs: set[str] = set()
_warned_keylogs_lock = threading.Lock()


def _first_warning_for(path: str) -> bool:
    """Once per key log file per process: a thousand contexts sharing one file (the demo's PATs)
    need one warning, not a thousand."""
    with _warned_keylogs_lock:
        if path in _warned_keylogs:
            return False
        _warned_keylogs.add(path)
        return True


class Context(ssl.SSLContext):
    """Drop-in for ``ssl.SSLContext``; see the README's "Drop-in Context" for every option.

    identity      LocalIdentity, a Party, or an identity name in ``home`` (None: anonymous client)
    trust         TrustStore, a trust file path, or a list of entries (name, locator, roles)
    chain         a ChainSource or a chain spec (regtest://DIR, bitcoind://..., esplora+https://...)
    headers       a HeaderChain or its file path (default: the per-network file; ":memory:" works)
    suites        "ecdh", "yak", suite names or SuiteSpecs, in preference order (default: all)
    accept_anchored_clients  server only: any client whose anchor verifies may connect; an
                        unpinned one has no name (getpeercert()["authenticated"] is False) and the
                        application identifies it by getpeercert()["locator"], which the handshake
                        verified from the chain (a D-TA binds logins to it). Servers this
                        context connects to are still authenticated by pinning.
    standard_fallback   client: also offer standard ECDHE suites to servers that are NOT pinned,
                        verified as X.509 against this context's CA store (load_verify_locations,
                        else the system store)
    fallback_certificate (certfile, keyfile): server: serve standard clients through Python ssl
    keylog_filename     NSS key log of every handshake's master secret, for Wireshark (default:
                        the SSLKEYLOGFILE environment variable, as ssl.create_default_context())
    check_revocation    with a chain source (default True): every full handshake asks the source
                        whether the peer's seal is spent (chain.revocation: the SOURCE'S WORD,
                        not SPV; mempool spends count) and refuses a revoked peer with the
                        certificate_revoked alert, or any peer when the source cannot answer.
                        Without a source nothing can be checked (see the README's security model).
                        The question runs on a small thread pool and the handshake waits at most
                        ``revocation_timeout`` seconds for it (then refuses, fail closed), so a hung
                        source delays a handshake by that much and never stalls it
    max_staple_age      blocks: refuse peers whose staple carries no freshness bound, or one made
                        longer ago (chain.proof; the bound is the stapler's word that its seal was
                        unspent then, checked only to be a real block on our best chain)
    batch_revocation    a chain.revocation BatchChecker, or several, for batch-anchored PATs (which
                        have no seal): chain.revocation_list.TbsRevocations asks the PAT's TBS and
                        checks its answer against the TBS's 0x04 revocation-list chain. A PAT goes
                        to the first checker whose ``covers(identity)`` is true (a checker without
                        ``covers`` takes every PAT); revoked -> certificate_revoked, and the same
                        fail-closed ``revocation_timeout`` applies; an answer that does not check
                        out (a stale list) refuses the PAT as status unknown (bad_certificate).
                        A batch PAT that no checker covers cannot be checked and is ACCEPTED
                        (logged at INFO once per name), as without this option
    fresh_staple        stamp our own staple with a freshness bound: at construction and after
                        every header sync that found new blocks (in the sync thread, never in a
                        handshake); refresh_staple() does it on demand
    """

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, *, identity=None, trust=None, chain: ChainSource | str | None = None,
                 headers: HeaderChain | str | None = None, home: str | os.PathLike | None = None,
                 suites=None, min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS,
                 require_client_identity: bool = False, allowed_client_roles: Iterable[str] | None = None,
                 accept_any_anchored_peer_unauthenticated: bool = False, accept_anchored_clients: bool = False,
                 standard_fallback: bool = False,
                 fallback_certificate: tuple[str, str | None] | None = None,
                 session_lifetime: float = DEFAULT_SESSION_LIFETIME, sync_interval: float = DEFAULT_INTERVAL,
                 max_staple_size: int = DEFAULT_MAX_STAPLE_SIZE,
                 keylog_filename: str | os.PathLike | None = None, check_revocation: bool = True,
                 revocation_timeout: float = DEFAULT_REVOCATION_TIMEOUT, max_staple_age: int | None = None,
                 fresh_staple: bool = False,
                 batch_revocation: BatchChecker | Sequence[BatchChecker] | None = None) -> None:
        super().__init__()
        self.keylog_filename = keylog_filename if keylog_filename is not None else keylog_path_from_environment()
        self.source = open_source(chain) if isinstance(chain, str) else chain
        self._owns_source = isinstance(chain, str)
        if isinstance(headers, HeaderChain):
            self.headers = headers
        else:
            if self.source is None:
                raise ValueError("give a chain source, or a HeaderChain that something else keeps current")
            self.headers = HeaderChain(headers or default_header_path(self.source.network), self.source.network)
        self.sync = None
        if self.source is not None:
            # A forked child (gunicorn's workers) opens its own source from the spec.
            reopen = (lambda: open_source(chain)) if isinstance(chain, str) else None
            self.sync = HeaderSync(self.headers, self.source, interval=sync_interval, source_factory=reopen)
            self.sync.sync_once()          # the first handshake must not find an empty chain
        self._alpn: tuple[str, ...] = ()
        self.identity = self._identity(identity, home)
        if fresh_staple:
            if self.identity is None or self.source is None:
                raise ValueError("fresh_staple needs an identity and a chain source")
            self.identity = self.identity.freshened(self.source)
        self.trust = _trust(trust)
        self.standard_fallback = standard_fallback
        self._fallback_anchors: tuple[bytes, ...] | None = None
        self._fallback_server: ssl.SSLContext | None = None
        if fallback_certificate is not None:
            self.load_cert_chain(*fallback_certificate)
        self.session_cache = SessionCache(lifetime=session_lifetime)
        self.revocation_timeout = revocation_timeout
        self._revocation_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.batch_revocation = _batch_checkers(batch_revocation)
        if self.batch_revocation and (not check_revocation or self.source is None):
            raise ValueError("batch_revocation needs check_revocation and a chain source")
        self._unchecked_pats: set[str] = set()
        self._revocation_pool_pid = 0
        self._config = HandshakeConfig(
            headers=self.headers, trust=self.trust, identity=self.identity, suites=_suites(suites),
            min_confirmations=min_confirmations, max_staple_size=max_staple_size, max_staple_age=max_staple_age,
            require_client_identity=require_client_identity,
            allowed_client_roles=frozenset(allowed_client_roles) if allowed_client_roles is not None else None,
            accept_any_anchored_peer_unauthenticated=accept_any_anchored_peer_unauthenticated,
            accept_anchored_clients=accept_anchored_clients,
            session_cache=self.session_cache, session_lifetime=session_lifetime,
            staple_cache=VerifiedStapleCache(),
            revocation_check=self._check_revocation if check_revocation and self.source is not None else None)
        if accept_any_anchored_peer_unauthenticated:
            log.warning("Context accepts ANY anchored peer, unauthenticated by name (explicit opt-in)")
        if self.sync is not None:
            if fresh_staple:
                self.sync.on_new_headers = lambda added: self.refresh_staple()
            self.sync.start()              # last: a constructor that raised leaves no thread behind

    def _identity(self, identity, home) -> LocalIdentity | None:
        if identity is None or isinstance(identity, LocalIdentity):
            return identity
        if self.source is None:
            raise ValueError("a chain source is needed to build the identity's staple")
        if isinstance(identity, str):
            if home is None:
                raise ValueError("an identity name needs home=")
            # Either form by name: a single-anchored party or a batch-anchored PAT.
            return LocalIdentity.load(Path(home), identity, self.source)
        return LocalIdentity.from_party(identity, self.source)

    # --- per-connection configuration ---------------------------------------------------
    @property
    def config(self) -> HandshakeConfig:
        return self._config

    def _replace(self, **changes) -> None:
        self._config = dataclasses.replace(self._config, **changes)

    def _config_for(self, *, server_side: bool, server_hostname: str | None) -> HandshakeConfig:
        config = self._config
        if server_side:
            if self._fallback_server is not None:
                config = dataclasses.replace(config, fallback_context=self._fallback_server)
            return config
        if self.standard_fallback and server_hostname and not self._pinned(server_hostname):
            # Fallback is never offered to a pinned name: nobody can downgrade that connection.
            config = dataclasses.replace(config, fallback_trust_anchors=self._x509_anchors())
        return config

    def _pinned(self, name: str) -> bool:
        folded = name.lower()
        return any(entry.name.lower() == folded for entry in self.trust)

    def _x509_anchors(self) -> tuple[bytes, ...]:
        if self._fallback_anchors is None:
            anchors = self.get_ca_certs(binary_form=True)
            if not anchors:
                self._load_system_anchors()
                anchors = self.get_ca_certs(binary_form=True)
            self._fallback_anchors = tuple(anchors)
        return self._fallback_anchors

    def _load_system_anchors(self) -> None:
        paths = ssl.get_default_verify_paths()
        if paths.cafile and os.path.exists(paths.cafile):
            self.load_verify_locations(cafile=paths.cafile)
        elif paths.capath and os.path.isdir(paths.capath):
            for entry in sorted(Path(paths.capath).iterdir()):
                try:
                    self.load_verify_locations(cafile=str(entry))
                except (ssl.SSLError, OSError, ValueError):
                    continue

    def _make_sslobject(self, incoming, outgoing, *, server_side: bool, server_hostname: str | None,
                        session: Session | None = None, deliver_alert_first: bool = True) -> MilagroSSLObject:
        config = self._config_for(server_side=server_side, server_hostname=server_hostname)
        connection = Connection(Role.SERVER if server_side else Role.CLIENT, config,
                                server_hostname=server_hostname, session=session)
        return MilagroSSLObject(self, connection, incoming, outgoing, server_side=server_side,
                                server_hostname=server_hostname, deliver_alert_first=deliver_alert_first)

    def refresh_staple(self) -> LocalIdentity:
        """Stamp our staple with the source's tip as its freshness bound (chain.proof) and use it
        from the next handshake on. Asks the source: IdentityError if it says our seal is spent."""
        if self.identity is None:
            raise ValueError("this context has no identity to staple")
        source = self.sync.source if self.sync is not None else self.source
        self.identity = self.identity.freshened(source)
        self._replace(identity=self.identity)
        return self.identity

    def _check_revocation(self, identity) -> None:
        # The sync's source: a forked worker's sync thread opens its own (HeaderSync).
        source = self.sync.source if self.sync is not None else self.source
        if self._revocation_pool is None or self._revocation_pool_pid != os.getpid():
            # Threads do not survive fork(): a gunicorn worker makes its own pool.
            self._revocation_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=REVOCATION_WORKERS, thread_name_prefix="milagro-revocation")
            self._revocation_pool_pid = os.getpid()
        future = self._revocation_pool.submit(check_not_revoked, identity, source, batch=self._check_batch_pat)
        try:
            future.result(timeout=self.revocation_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            what = "seal is spent" if identity.seal is not None else "batch PAT is revoked"
            raise SourceUnavailable(f"no answer within {self.revocation_timeout:g} s on whether the peer's {what}",
                                    maybe_sent=False) from None

    def _check_batch_pat(self, identity) -> None:
        """check_not_revoked's ``batch`` checker: the first of ``batch_revocation`` covering
        the PAT decides; none covering it: not checkable, accepted (logged once per name)."""
        for checker in self.batch_revocation:
            covers = getattr(checker, "covers", None)
            if covers is None or covers(identity):
                try:
                    checker(identity)
                except (AnchorRevoked, SourceError):
                    raise
                except VerificationError as exc:
                    # The handshake refuses AnchorRevoked (certificate_revoked) and SourceError
                    # (status unknown: fail closed); a stale list is the latter.
                    raise RevocationUnknown(f"{identity.name!r}: its TBS's answer does not check out: "
                                            f"{type(exc).__name__}: {exc}") from exc
                return
        if identity.name not in self._unchecked_pats and len(self._unchecked_pats) < _MAX_UNCHECKED_NAMES:
            self._unchecked_pats.add(identity.name)
            log.info("batch-anchored PAT %r: no batch_revocation checker covers its TBS; its revocation "
                     "cannot be checked (accepted)", identity.name)

    def _anchor_not_yet_verifiable(self, error: AnchorNotYetVerifiable) -> None:
        if self.sync is not None:
            self.sync.request()

    # --- ssl.SSLContext -----------------------------------------------------------------
    def wrap_socket(self, sock, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | None = None,
                    session: Session | None = None) -> MilagroSocket:
        return MilagroSocket._create(sock, self, server_side=server_side,
                                     server_hostname=_server_hostname(server_hostname),
                                     do_handshake_on_connect=do_handshake_on_connect,
                                     suppress_ragged_eofs=suppress_ragged_eofs, session=session)

    def wrap_bio(self, incoming, outgoing, server_side: bool = False, server_hostname: str | None = None,
                 session: Session | None = None) -> MilagroSSLObject:
        return self._make_sslobject(incoming, outgoing, server_side=server_side,
                                    server_hostname=_server_hostname(server_hostname), session=session)

    def set_alpn_protocols(self, alpn_protocols) -> None:
        protocols = tuple(alpn_protocols)
        for protocol in protocols:
            if not 0 < len(protocol.encode()) < 256:
                raise ValueError("ALPN protocols must be 1 to 255 bytes long")
        self._alpn = protocols
        self._replace(alpn_protocols=protocols)
        if self._fallback_server is not None:
            self._fallback_server.set_alpn_protocols(list(protocols))

    def load_cert_chain(self, certfile, keyfile=None, password=None) -> None:
        """The server's fallback X.509 certificate, for clients that offer none of our suites."""
        fallback = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        fallback.load_cert_chain(certfile, keyfile, password)
        if self._alpn:
            fallback.set_alpn_protocols(list(self._alpn))
        self._fallback_server = fallback

    def set_ciphers(self, spec: str) -> None:
        """Our suite names (OpenSSL or IANA style) restrict our suites; other names go to the
        standard-suite fallback, as in ssl."""
        ours, others = [], []
        for name in filter(None, spec.split(":")):
            try:
                ours.append(suite_by_name(name))
            except KeyError:
                others.append(name)
        if ours:
            self._replace(suites=tuple(ours))
        if others:
            super().set_ciphers(":".join(others))
            if self._fallback_server is not None:
                self._fallback_server.set_ciphers(":".join(others))

    def get_ciphers(self) -> list[dict]:
        ours = [{"id": 0x03000000 | s.code, "name": s.short_name, "protocol": "TLSv1.2",
                 "description": f"{s.name} (Bitcoin-anchored key exchange)", "strength_bits": s.cipher.bits,
                 "alg_bits": s.cipher.bits, "aead": True, "symmetric": s.cipher.name.lower().replace("_", "-"),
                 "digest": None, "kea": f"kx-{s.key_exchange.value}-btc", "auth": "auth-bitcoin"}
                for s in self._config.suites]
        return ours + (super().get_ciphers() if self.standard_fallback else [])

    # --- the key log (SSLKEYLOGFILE) -----------------------------------------------------
    @property
    def keylog_filename(self) -> str | None:
        return self._keylog.path if self._keylog is not None else None

    @keylog_filename.setter
    def keylog_filename(self, path: str | os.PathLike | None) -> None:
        # Overrides ssl.SSLContext's, which would hand the path to OpenSSL: our handshakes
        # never reach OpenSSL, so OpenSSL would log nothing.
        self._keylog = KeyLog(path) if path else None
        if self._keylog is not None and _first_warning_for(self._keylog.path):
            log.warning("TLS KEY LOG ON: the master secret of every connection of this context is written "
                        "to %s; anyone who can read it can decrypt the traffic", self._keylog.path)

    def _handshake_complete(self, connection: Connection) -> None:
        """Called by the SSLObject once per completed handshake (resumptions included)."""
        # No master secret: the server's standard-suite fallback, where Python ssl holds the keys.
        if self._keylog is not None and connection.master_secret:
            self._keylog.write(connection.client_random, connection.master_secret)

    # --- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop the header sync thread (and close a source this context opened)."""
        if self.sync is not None:
            self.sync.stop()
        if self._revocation_pool is not None:
            self._revocation_pool.shutdown(wait=False, cancel_futures=True)
            self._revocation_pool = None
        if self._owns_source and self.source is not None:
            self.source.close()

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def gunicorn_ssl_context(self):
        """gunicorn's ``ssl_context(conf, default_ssl_context_factory)`` server hook. gunicorn
        calls it once per connection, and only when a certificate file is configured: give it
        the fallback certificate (``--certfile/--keyfile``) and this hook returns this (cached)
        context, which also serves that certificate to standard clients."""
        def ssl_context(conf, default_ssl_context_factory):
            if self._fallback_server is None and getattr(conf, "certfile", None):
                self.load_cert_chain(conf.certfile, conf.keyfile)
            return self
        return ssl_context

