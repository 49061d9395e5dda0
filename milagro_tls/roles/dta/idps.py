"""The IdPs a D-TA is a relying party of: how each is reached, and its kept registration.

Reaching an IdP (``IdPAccess``):

* pinned (``--idp-trust FILE``): httpx over a client Context whose trust store is that file;
  each request names the IdP's entry as ``sni_hostname`` (httpx's extension), so the
  handshake authenticates the IdP's anchor from the chain. The entry for an issuer is the one
  with role "idp" named as the issuer's host; when the D-TA has a single IdP, the file's only
  "idp" entry also serves. An issuer no entry names is reached over ordinary HTTPS (so a pinned
  IdP and an X.509-only one need different host names, e.g. localhost and 127.0.0.1).
* X.509 only (an IdP with no anchor, e.g. panva's oidc-provider): ordinary HTTPS verified with
  ``--idp-ca FILE`` (or the system's CAs).

Registration (``ensure_registered``): discovery, then RFC 7591 registration once; the answer is
kept in the store and the client secret in HOME/idp-clients/<sha256(issuer)[:32]>.key (0600).
"""
from __future__ import annotations

import hashlib
import json
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from ...errors import IdentityError
from ...identity.keys import read_key_file, write_key_file
from ...trust import TrustEntry, TrustStore
from ..store import insert_or_ignore
from . import rp, tables

TIMEOUT = 30.0


class IdPSetupError(IdentityError):
    """An IdP cannot be reached or registered with as configured."""


def pinned_entry(trust: TrustStore, issuer: str, *, only_idp: bool = False) -> TrustEntry | None:
    """The trust entry naming this issuer's IdP (see the module docstring), or None.
    ``only_idp``: the D-TA relies on this one IdP, so a lone "idp" entry is its entry."""
    host = (urlsplit(issuer).hostname or "").lower()
    idps = [entry for entry in trust if "idp" in entry.roles]
    named = [entry for entry in idps if entry.name.lower() == host]
    if named:
        return named[0]
    return idps[0] if only_idp and len(idps) == 1 else None


class _SniTransport(httpx.BaseTransport):
    """Names the pinned entry on every request: the Context then authenticates that anchor."""

    def __init__(self, inner: httpx.BaseTransport, sni_hostname: str) -> None:
        self.inner = inner
        self.sni_hostname = sni_hostname

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions["sni_hostname"] = self.sni_hostname
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@dataclass
class IdPAccess:
    """How this process reaches its IdPs; ``http(issuer)`` gives one client per issuer."""
    trust_file: str | None = None
    ca_file: str | None = None
    chain: str | None = None           # the chain spec, for the pinning Context
    issuers: tuple[str, ...] = ()      # every IdP of this D-TA

    def __post_init__(self) -> None:
        self._trust = TrustStore.load(self.trust_file) if self.trust_file else TrustStore()
        self._context = None
        self._clients: dict[str, httpx.Client] = {}

    def entry(self, issuer: str) -> TrustEntry | None:
        if not self.trust_file:
            return None
        return pinned_entry(self._trust, issuer, only_idp=tuple(self.issuers) == (issuer,))

    def _milagro_context(self):
        if self._context is None:
            from ...context import Context
            self._context = Context(trust=self._trust, chain=self.chain)
        return self._context

    def http(self, issuer: str) -> httpx.Client:
        if issuer not in self._clients:
            entry = self.entry(issuer)
            if entry is not None:
                transport = _SniTransport(httpx.HTTPTransport(verify=self._milagro_context()), entry.name)
                client = httpx.Client(transport=transport, timeout=TIMEOUT, follow_redirects=False)
            else:
                verify = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
                client = httpx.Client(verify=verify, timeout=TIMEOUT, follow_redirects=False)
            self._clients[issuer] = client
        return self._clients[issuer]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._context is not None:
            self._context.close()
            self._context = None


def _secret_path(home: Path, issuer: str) -> Path:
    return Path(home) / "idp-clients" / f"{hashlib.sha256(issuer.encode()).hexdigest()[:32]}.key"


def _read_secret(path: Path) -> str:
    return read_key_file(path, length=None).decode()        # plain or passphrase-encrypted


def ensure_registered(store, home: Path, issuer: str, http: httpx.Client, *, redirect_uri: str, client_name: str,
                      pinned: TrustEntry | None = None, registration_token: str | None = None,
                      now: float | None = None) -> rp.Provider:
    """The kept registration with ``issuer``, made on first start (discovery + RFC 7591).
    Discovery is fetched again at every start (endpoints may move); the registration is not."""
    discovery = rp.discover(http, issuer)
    if pinned is not None and discovery.get("milagro_locator") not in (None, pinned.locator.to_json()):
        raise IdPSetupError(f"{issuer}'s discovery names another anchor than the pinned entry {pinned.name!r}")
    with store.read() as connection:
        row = connection.execute(select(tables.idps).where(tables.idps.c.issuer == issuer)).first()
    if row is None or row.redirect_uri != redirect_uri:
        if row is not None:
            raise IdPSetupError(f"this D-TA registered with {issuer} for {row.redirect_uri}, not {redirect_uri}; "
                                "use the same public URL or a new home")
        answer = rp.register(http, discovery, redirect_uri=redirect_uri, client_name=client_name,
                             registration_token=registration_token)
        secret = answer.get("client_secret")
        secret_file = None
        if isinstance(secret, str) and secret:
            path = _secret_path(home, issuer)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            if path.exists():
                os.unlink(path)           # a registration that never reached the store
            write_key_file(path, secret.encode())
            secret_file = str(path)
        public = {key: value for key, value in answer.items() if key not in ("client_secret", "registration_access_token")}
        with store.begin() as connection:
            insert_or_ignore(connection, tables.idps, {
                "issuer": issuer, "client_id": answer["client_id"], "secret_file": secret_file,
                "redirect_uri": redirect_uri, "discovery": json.dumps(discovery), "registration": json.dumps(public),
                "registered_at": int(now if now is not None else time.time())})
    else:
        with store.begin() as connection:
            connection.execute(tables.idps.update().where(tables.idps.c.issuer == issuer)
                               .values(discovery=json.dumps(discovery)))
    return load_provider(store, issuer)


def load_provider(store, issuer: str) -> rp.Provider:
    with store.read() as connection:
        row = connection.execute(select(tables.idps).where(tables.idps.c.issuer == issuer)).first()
    if row is None:
        raise IdPSetupError(f"this D-TA is not registered with {issuer} (milagro dta serve registers it)")
    registration = json.loads(row.registration)
    return rp.Provider(issuer=issuer, discovery=json.loads(row.discovery), client_id=row.client_id,
                       client_secret=_read_secret(Path(row.secret_file)) if row.secret_file else None,
                       redirect_uri=row.redirect_uri,
                       id_token_alg=registration.get("id_token_signed_response_alg") or "RS256")
