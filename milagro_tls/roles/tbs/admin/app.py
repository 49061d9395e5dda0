"""``create_admin_app(config)``: the TBS's admin web UI and JSON API as a Flask WSGI app,
served on ``milagro tbs serve --admin-port`` over HTTPS (the fallback certificate).

Server-side Jinja templates and one small plain script (the live enrolment status poll);
no front-end build step. Security headers: a strict CSP (scripts and styles from this origin
only, no inline script), no framing, no referrer, no caching of pages.
"""
from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Callable

import httpx
from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import tables
from .auth import identify
from .backend import TbsBackend
from .trust import ChainAccess

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
#: Largest request body (a pasted trust list with certificates and proofs fits easily).
MAX_BODY = 512 * 1024


def _default_http() -> httpx.Client:
    return httpx.Client(timeout=10.0, follow_redirects=False)


@dataclass
class AdminConfig:
    store: object                                    # the roles' Store (admin users and tokens)
    backend: TbsBackend                              # the TBS's groups, enrolments, pushes
    secret_key: bytes                                # signs the session cookie (RoleHome.secret)
    chain: ChainAccess | None = None                 # checks trust entries; None: refused
    #: An HTTP client for fetching a role's normative URL (its TLS settings are the operator's).
    fetch_http: Callable[[], httpx.Client] = field(default=_default_http)
    #: Cookies only over HTTPS; False only for tests over plain HTTP.
    secure: bool = True
    session_lifetime: int = 8 * 3600
    poll_interval_ms: int = 2000

    @classmethod
    def from_tbs(cls, tbs) -> "AdminConfig":
        """From the TBS's per-worker TbsContext (store, secret_key, source, headers)."""
        from .backend import StoreBackend
        return cls(store=tbs.store, backend=StoreBackend(tbs.store), secret_key=tbs.secret_key,
                   chain=ChainAccess(tbs.source, tbs.headers))


def create_admin_app(config) -> Flask:
    """The admin app for an AdminConfig, or for the TBS's TbsContext (AdminConfig.from_tbs)."""
    if not isinstance(config, AdminConfig):
        config = AdminConfig.from_tbs(config)

    tables.migrate(config.store)
    app = Flask(__name__)                            # templates/ and static/ next to this file
    app.secret_key = config.secret_key
    app.config.update(
        SESSION_COOKIE_NAME="milagro_tbs_admin",
        SESSION_COOKIE_SECURE=config.secure,
        SESSION_COOKIE_HTTPONLY=True,
        # Strict: the admin UI has no cross-site flow, so the cookie never leaves with a
        # request another site started (the CSRF token is the second line).
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(seconds=config.session_lifetime),
        MAX_CONTENT_LENGTH=MAX_BODY,
        PREFERRED_URL_SCHEME="https" if config.secure else "http",
    )
    app.jinja_env.autoescape = True
    app.extensions["milagro_tbs_admin"] = config

    from .api import api
    from .views import views
    app.register_blueprint(views)
    app.register_blueprint(api)
    app.before_request(identify)

    @app.after_request
    def headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        if config.secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    def _wants_json() -> bool:
        return request.path.startswith("/api/")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = error.code or 500
        name = error.name.lower().replace(" ", "_")
        if _wants_json():
            response = jsonify({"error": name, "error_description": error.description})
            response.status_code = code
            return response
        from .views import error_page
        return error_page(error.description or error.name, code)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        # Logged here with its traceback; the browser or script sees a bare 500.
        log.exception("admin: unhandled %s", type(error).__name__)
        if _wants_json():
            response = jsonify({"error": "server_error", "error_description": "internal error"})
            response.status_code = 500
            return response
        from .views import error_page
        return error_page("Internal error.", 500)

    @app.teardown_request
    def _forget(_exc):
        g.pop("admin", None)

    return app
