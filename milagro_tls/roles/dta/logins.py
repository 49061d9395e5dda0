"""Logins: started by an anchored party over milagro-tls, finished at the IdP, claimed once.

A login nonce is bound to the verified locator of the party that started the login (gunicorn
closes connections and the person's browser logs in on its own connection, so "the same TLS
session" cannot be the binding). Only the SHA256 of the nonce is stored. The lifecycle:

    start (party, milagro-tls)  -> pending   code: the browser URL; device: the user code
    callback (browser) / poll (party, device)  -> done (issuer, sub) | denied | expired
    claim (party, same locator, done, fresh, unused, user not revoked) -> used, once

Every check is here, over the store, with the clock injected; app.py only maps HTTP to it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from ...errors import MilagroError
from ...identity.locator import Locator
from . import rp, tables
from .peer import locator_key

log = logging.getLogger(__name__)

#: A login must finish within 10 minutes (as the IdP's codes and device codes: RFC 6749 4.1.2).
LOGIN_LIFETIME = 600
#: Shares are released at most 5 minutes after the login finished: "a fresh login".
SHARE_WINDOW = 300
#: RFC 8628 3.2's default interval when the IdP gives none.
DEFAULT_INTERVAL = 5


class DtaError(MilagroError):
    """A refused request: ``error`` is the JSON error code, ``status`` the HTTP status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Claimed:
    """A login claimed for issuance (inside the caller's transaction)."""
    nonce_sha256: str
    issuer: str
    subject: str
    locator: Locator


class Logins:
    def __init__(self, store, providers: dict[str, rp.Provider], http_for: Callable[[str], httpx.Client], *,
                 base_url: str, clock: Callable[[], float] = time.time,
                 login_lifetime: int = LOGIN_LIFETIME, share_window: int = SHARE_WINDOW) -> None:
        self.store = store
        self.providers = providers
        self.http_for = http_for
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.login_lifetime = login_lifetime
        self.share_window = share_window

    def _now(self) -> int:
        return int(self.clock())

    def provider(self, issuer) -> rp.Provider:
        if not isinstance(issuer, str) or issuer not in self.providers:
            raise DtaError(400, "unknown_idp", f"this D-TA is not a relying party of {issuer!r}; "
                                               f"it knows {sorted(self.providers)}")
        return self.providers[issuer]

    # --- start -------------------------------------------------------------------------
    def start(self, locator: Locator, issuer, method) -> dict:
        provider = self.provider(issuer)
        if method not in ("code", "device"):
            raise DtaError(400, "invalid_request", 'method is "code" or "device"')
        nonce = secrets.token_urlsafe(32)
        now = self._now()
        row = {"nonce_sha256": sha256_hex(nonce), "anchor": locator_key(locator),
               "locator": json.dumps(locator.to_json(), sort_keys=True), "issuer": issuer, "method": method,
               "status": "pending", "created_at": now, "expires_at": now + self.login_lifetime}
        answer: dict = {"login_nonce": nonce}
        if method == "code":
            request = rp.CodeRequest.fresh(state=browser_state(nonce))
            row.update(state_sha256=sha256_hex(request.state), oidc_nonce=request.nonce,
                       code_verifier=request.code_verifier)
            answer["browser_url"] = f"{self.base_url}/login/browser/{nonce}"
        else:
            device = rp.device_authorization(self.http_for(issuer), provider)
            interval = _positive_int(device.get("interval"), DEFAULT_INTERVAL)
            expires_in = _positive_int(device.get("expires_in"), self.login_lifetime)
            row.update(device_code=device["device_code"], interval=interval, next_poll_at=now + interval,
                       expires_at=now + min(expires_in, self.login_lifetime))
            answer.update(user_code=device["user_code"], verification_uri=device["verification_uri"],
                          verification_uri_complete=device.get("verification_uri_complete"), interval=interval)
        with self.store.begin() as connection:
            connection.execute(insert(tables.logins).values(**row))
        answer["expires_in"] = row["expires_at"] - now
        return answer

    # --- the browser's part of the code flow ----------------------------------------------
    def browser_redirect(self, nonce: str) -> tuple[str, str]:
        """(the IdP's authorization URL, the state's hash for the browser's cookie)."""
        with self.store.read() as connection:
            row = connection.execute(select(tables.logins).where(
                tables.logins.c.nonce_sha256 == sha256_hex(nonce))).first()
        if row is None or row.method != "code":
            raise DtaError(404, "unknown_login", "no browser login with this nonce")
        if row.status != "pending" or row.expires_at <= self._now():
            raise DtaError(409, "login_not_pending", f"this login is {self._status(row)}")
        provider = self.provider(row.issuer)
        state = browser_state(nonce)
        if not hmac.compare_digest(sha256_hex(state), row.state_sha256):
            raise DtaError(404, "unknown_login", "no browser login with this nonce")
        request = rp.CodeRequest(state=state, nonce=row.oidc_nonce, code_verifier=row.code_verifier)
        return rp.authorization_url(provider, request), row.state_sha256

    def callback(self, params: dict[str, str], cookie_state_sha256: str | None) -> dict:
        """The authorization response at /callback: the login's row by its state, the browser
        that started it, RFC 9207 iss, the code exchanged, the ID token validated."""
        state = params.get("state")
        if not state:
            raise DtaError(400, "invalid_request", "the authorization response has no state")
        state_sha = sha256_hex(state)
        with self.store.read() as connection:
            row = connection.execute(select(tables.logins).where(tables.logins.c.state_sha256 == state_sha)).first()
        if row is None:
            raise DtaError(400, "invalid_state", "no login has this state")
        if cookie_state_sha256 is None or not hmac.compare_digest(cookie_state_sha256, state_sha):
            raise DtaError(400, "invalid_state", "this browser did not start this login (cookie missing or another)")
        if row.status != "pending" or row.expires_at <= self._now():
            raise DtaError(409, "login_not_pending", f"this login is {self._status(row)}")
        provider = self.provider(row.issuer)
        try:
            code = rp.check_authorization_response(provider, params)
        except rp.OidcError as exc:
            if exc.error == "access_denied":
                self._finish(row.nonce_sha256, "denied", reason="the person denied the login at the IdP")
            raise DtaError(exc.status, exc.error, exc.description) from None
        try:
            http = self.http_for(row.issuer)
            tokens = rp.exchange_code(http, provider, code, row.code_verifier)
            claims = rp.validate_id_token(tokens["id_token"], provider, rp.fetch_jwks(http, provider),
                                          nonce=row.oidc_nonce, now=self._now())
        except rp.OidcError as exc:
            # The code is spent either way: this login cannot succeed any more.
            self._finish(row.nonce_sha256, "denied", reason=exc.description)
            raise DtaError(exc.status, exc.error, exc.description) from None
        self._finish(row.nonce_sha256, "done", subject=claims["sub"])
        return {"issuer": row.issuer, "sub": claims["sub"]}

    # --- the party's poll ------------------------------------------------------------------
    def poll(self, locator: Locator, nonce) -> dict:
        row = self._own(locator, nonce)
        now = self._now()
        if row.status == "pending" and row.expires_at <= now:
            self._finish(row.nonce_sha256, "expired", reason="the login was not finished in time")
            return {"status": "expired"}
        if row.status == "pending" and row.method == "device":
            return self._poll_device(row, now)
        answer = {"status": row.status}
        if row.reason and row.status == "denied":
            answer["reason"] = row.reason
        return answer

    def _poll_device(self, row, now: int) -> dict:
        # Claim this poll slot atomically, so two workers never poll the IdP at once.
        with self.store.begin() as connection:
            taken = connection.execute(update(tables.logins).where(
                tables.logins.c.nonce_sha256 == row.nonce_sha256, tables.logins.c.status == "pending",
                tables.logins.c.next_poll_at <= now).values(next_poll_at=now + row.interval)).rowcount
        if not taken:
            return {"status": "pending", "interval": row.interval}
        provider = self.provider(row.issuer)
        http = self.http_for(row.issuer)
        try:
            result = rp.poll_device_token(http, provider, row.device_code)
            if result.status == "done":
                claims = rp.validate_id_token(result.tokens["id_token"], provider, rp.fetch_jwks(http, provider),
                                              nonce=None, now=now)
        except rp.OidcError as exc:
            if exc.status >= 500:
                raise DtaError(exc.status, exc.error, exc.description) from None
            self._finish(row.nonce_sha256, "denied", reason=exc.description)
            return {"status": "denied", "reason": exc.description}
        if result.status == "slow_down":
            interval = row.interval + rp.SLOW_DOWN_STEP
            with self.store.begin() as connection:
                connection.execute(update(tables.logins).where(tables.logins.c.nonce_sha256 == row.nonce_sha256)
                                   .values(interval=interval, next_poll_at=now + interval))
            return {"status": "pending", "interval": interval}
        if result.status == "pending":
            return {"status": "pending", "interval": row.interval}
        if result.status == "done":
            self._finish(row.nonce_sha256, "done", subject=claims["sub"])
            return {"status": "done"}
        self._finish(row.nonce_sha256, result.status, reason=result.error)
        return {"status": result.status}

    # --- claiming for issuance ----------------------------------------------------------
    def claim(self, connection: Connection, locator: Locator, nonce) -> Claimed:
        """Inside the issuing transaction: the login this party may get shares for, marked used."""
        if not isinstance(nonce, str) or not nonce:
            raise DtaError(400, "invalid_request", "login_nonce is a non-empty string")
        row = connection.execute(select(tables.logins).where(
            tables.logins.c.nonce_sha256 == sha256_hex(nonce)).with_for_update()).first()
        if row is None:
            raise DtaError(403, "login_required", "no login with this nonce: start one with /login/start")
        if not hmac.compare_digest(row.anchor, locator_key(locator)):
            raise DtaError(403, "wrong_party", "this login was started by another party (locator)")
        if row.used_at is not None:
            raise DtaError(409, "nonce_used", "shares were already issued for this login; start a new one")
        now = self._now()
        if row.status != "done":
            raise DtaError(403, "login_required", f"the login is {self._status(row)}, not done")
        if now - row.done_at > self.share_window:
            raise DtaError(403, "login_expired", f"the login finished more than {self.share_window} s ago")
        if connection.execute(select(tables.revoked.c.sub).where(
                tables.revoked.c.issuer == row.issuer, tables.revoked.c.sub == row.subject)).first() is not None:
            raise DtaError(403, "user_revoked", "this user is revoked at this D-TA")
        connection.execute(update(tables.logins).where(tables.logins.c.nonce_sha256 == row.nonce_sha256)
                           .values(used_at=now))
        return Claimed(row.nonce_sha256, row.issuer, row.subject, locator)

    # --- helpers ----------------------------------------------------------------------------
    def _own(self, locator: Locator, nonce):
        if not isinstance(nonce, str) or not nonce:
            raise DtaError(400, "invalid_request", "login_nonce is a non-empty string")
        with self.store.read() as connection:
            row = connection.execute(select(tables.logins).where(
                tables.logins.c.nonce_sha256 == sha256_hex(nonce))).first()
        if row is None:
            raise DtaError(404, "unknown_login", "no login with this nonce")
        if not hmac.compare_digest(row.anchor, locator_key(locator)):
            raise DtaError(403, "wrong_party", "this login was started by another party (locator)")
        return row

    def _status(self, row) -> str:
        if row.status == "pending" and row.expires_at <= self._now():
            return "expired"
        return row.status

    def _finish(self, nonce_sha256: str, status: str, *, subject: str | None = None, reason: str | None = None) -> None:
        with self.store.begin() as connection:
            connection.execute(update(tables.logins).where(
                tables.logins.c.nonce_sha256 == nonce_sha256, tables.logins.c.status == "pending").values(
                status=status, subject=subject, reason=reason, done_at=self._now() if status == "done" else None,
                # The secrets of a finished login are no longer needed.
                code_verifier=None, oidc_nonce=None, device_code=None))


def browser_state(nonce: str) -> str:
    """The OAuth state of a code-flow login, derived from its nonce (HMAC-SHA256, keyed by the
    nonce): the D-TA stores only hashes of both, and the browser URL (which holds the nonce)
    is all that /login/browser needs to rebuild the authorization request."""
    return hmac.new(nonce.encode(), b"milagro-dta/oauth-state", hashlib.sha256).hexdigest()


def _positive_int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
