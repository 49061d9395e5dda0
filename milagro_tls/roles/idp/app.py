"""``create_app(config)``: the IdP as a Flask WSGI app (one per gunicorn worker)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from ..jsonerrors import bounded_json
from .config import IdPConfig
from .server import build_server
from .views import bp

log = logging.getLogger(__name__)


@dataclass
class IdP:
    """What the views reach through ``current_app.extensions["milagro_idp"]``."""
    config: IdPConfig
    server: object

    @property
    def store(self):
        return self.config.store

    @property
    def keys(self):
        return self.config.keys


# Authlib's grants log every token they issue at DEBUG ("Issue token %r to %r": the access and
# refresh tokens, bearer secrets). A filter on each of those loggers keeps the line and drops the
# token, so an operator may run the IdP at DEBUG.
_TOKEN_LOGGERS = tuple("authlib." + name for name in (
    "oauth2.rfc6749.grants.authorization_code", "oauth2.rfc6749.grants.refresh_token",
    "oauth2.rfc6749.grants.client_credentials", "oauth2.rfc6749.grants.implicit",
    "oauth2.rfc6749.grants.resource_owner_password_credentials", "oauth2.rfc8628.device_code",
    "oauth2.rfc7523.jwt_bearer", "oauth2.drafts.id_jag", "oidc.core.grants.implicit", "oidc.core.grants.hybrid"))


class _RedactIssuedTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in ("Issue token %r to %r", "Grant token %r to %r") and isinstance(record.args, tuple):
            record.args = ("<token redacted>",) + record.args[1:]
        return True


def _redact_token_logs() -> None:
    for name in _TOKEN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactIssuedTokens) for f in logger.filters):
            logger.addFilter(_RedactIssuedTokens())


def create_app(config: IdPConfig) -> Flask:
    _redact_token_logs()
    app = Flask(__name__)
    bounded_json(app)
    app.secret_key = config.secret_key
    secure = config.issuer.startswith("https://")
    app.config.update(
        SESSION_COOKIE_NAME="milagro_idp",
        SESSION_COOKIE_SECURE=secure,         # the cookie never travels over plain HTTP
        SESSION_COOKIE_HTTPONLY=True,
        # Lax: the login cookie goes along on the top-level redirect from a client back to
        # /authorize, never on a cross-site POST (the forms also carry a CSRF token).
        SESSION_COOKIE_SAMESITE="Lax",
        PREFERRED_URL_SCHEME="https" if secure else "http",
    )
    server = build_server(app, config)
    from .clients import RegistrationEndpoint
    from .views import discovery_document
    server.register_endpoint(RegistrationEndpoint(
        server, store=config.store, server_metadata=lambda: discovery_document(config),
        registration_token=config.registration_token))
    app.extensions["milagro_idp"] = IdP(config, server)
    app.register_blueprint(bp)
    for blueprint in config.blueprints:
        app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = jsonify({"error": error.name.lower().replace(" ", "_"), "error_description": error.description})
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        # Logged here with its traceback; the peer gets a JSON 500 and nothing of the detail.
        log.exception("unhandled error in %s", type(error).__name__)
        response = jsonify({"error": "server_error", "error_description": "internal error"})
        response.status_code = 500
        return response

    return app
