"""Who is asking: the login session (Flask's signed cookie) or a bearer token on /api/, and the
CSRF check every state-changing request from a session passes.

The CSRF token is per session, made at login (and for the login form itself, before it),
and compared in constant time. A form sends it as ``csrf_token``, a script as the
``X-CSRF-Token`` header. Requests with a bearer token carry no cookie a third-party page could
borrow, so they need no CSRF token; a request that names a bearer token is judged by the
token alone, never by the cookie that may come with it.
"""
from __future__ import annotations

import hmac
import secrets

from flask import current_app, g, request, session

from .accounts import Admin, close_session, open_session, session_owner, token_admin

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def admin_config():
    return current_app.extensions["milagro_tbs_admin"]


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok() -> bool:
    presented = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def start_session(admin: Admin) -> None:
    config = admin_config()
    close_session(config.store, session.get("sid"))
    session.clear()                         # a new login gets a new session (no fixation)
    session["sid"] = open_session(config.store, admin, config.session_lifetime)
    session["csrf"] = secrets.token_urlsafe(32)
    session.permanent = True


def end_session() -> None:
    close_session(admin_config().store, session.get("sid"))
    session.clear()


def session_admin() -> Admin | None:
    """The admin of this cookie's session while the store holds it (logout, expiry or
    close_all_sessions end it on the server, whatever copy of the cookie remains)."""
    return session_owner(admin_config().store, session.get("sid"))


def bearer_token() -> str | None:
    """The presented bearer token ("" for a malformed Authorization header), None if none."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else ""


def identify() -> None:
    """Set g.admin (or None) and g.via ("token", "session" or None) for this request."""
    g.admin, g.via = None, None
    token = bearer_token() if request.path.startswith("/api/") else None
    if token is not None:
        g.via = "token"
        g.admin = token_admin(admin_config().store, token) if token else None
        return
    admin = session_admin()
    if admin is not None:
        g.admin, g.via = admin, "session"
