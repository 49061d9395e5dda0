"""``create_app(config)``: the IdP as a Flask WSGI app (one per gunicorn worker)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

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


def create_app(config: IdPConfig) -> Flask:
    app = Flask(__name__)
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
