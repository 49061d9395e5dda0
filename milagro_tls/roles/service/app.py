"""The relying service's Flask app: the M-Pin 2-pass as two JSON endpoints.

    POST /mpin/pass1  {"id", "date", "u"}   -> 200 {"session", "y", "expires_in"}
    POST /mpin/pass2  {"session", "v"}      -> 200 {"authenticated": true, "id", "issuer", "sub"}
                                             -> 401 {"error": reason, "error_description"}
    GET  /healthz                           -> {"status": "ok", "dtas": [...]}

Errors are JSON everywhere: 400 for a malformed message (reason malformed-message, ...), 401 for
a refused authentication (authentication-failed, expired-permit, unknown-session). The service
cannot tell a wrong PIN from a missing or foreign share: the pairing check fails the same way
(mpin.protocol), and the answer says so without guessing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from ...mpin import ExpiredPermit, MpinError, MpinServer, Pass1, Pass2
from ...mpin.errors import AuthenticationFailed
from ..jsonerrors import bounded_json
from . import sessions

log = logging.getLogger(__name__)

#: 401 reasons: the request was well formed, the authentication is refused.
_REFUSED = (AuthenticationFailed, ExpiredPermit)


@dataclass
class ServiceConfig:
    store: Any                                 # roles.store.Store, migrated (sessions.migrate)
    server: MpinServer                         # holds SS
    dtas: list[dict]                           # the contributing D-TAs (public: name, url, locator)
    blueprints: tuple = ()
    #: called with the authenticated identity's (issuer, sub) after each success
    on_authenticated: Callable[[str, str], None] | None = None


def _error(status: int, reason: str, description: str):
    response = jsonify({"error": reason, "error_description": description})
    response.status_code = status
    return response


def _json_body() -> dict:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def create_app(config: ServiceConfig) -> Flask:
    app = Flask(__name__)
    bounded_json(app)

    @app.post("/mpin/pass1")
    def pass1():
        try:
            pending = config.server.begin(Pass1.from_json(_json_body()))
        except _REFUSED as exc:
            return _error(401, exc.reason, str(exc))
        except MpinError as exc:
            return _error(400, exc.reason, str(exc))
        session = sessions.save(config.store, pending)
        return jsonify({"session": session, **pending.challenge.to_json(),
                        "expires_in": sessions.SESSION_LIFETIME})

    @app.post("/mpin/pass2")
    def pass2():
        body = _json_body()
        session = body.pop("session", None)
        if not isinstance(session, str) or not session:
            return _error(400, "malformed-message", "pass 2 quotes the session id from pass 1")
        try:
            answer = Pass2.from_json(body)
        except MpinError as exc:
            return _error(400, exc.reason, str(exc))
        pending = sessions.take(config.store, session)       # used once, whatever happens next
        if pending is None:
            return _error(401, "unknown-session", "no pending authentication for this session "
                          "(unknown, already used or expired): start again with pass 1")
        try:
            identity = config.server.finish(pending, answer)
        except _REFUSED as exc:
            return _error(401, exc.reason, str(exc))
        except MpinError as exc:
            return _error(400, exc.reason, str(exc))
        if config.on_authenticated is not None:
            config.on_authenticated(identity.issuer, identity.sub)
        return jsonify({"authenticated": True, "id": identity.encoded.hex(), "issuer": identity.issuer,
                        "sub": identity.sub})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "dtas": config.dtas})

    for blueprint in config.blueprints:
        app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return _error(error.code or 500, error.name.lower().replace(" ", "_"), error.description or "")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error in %s", type(error).__name__)
        return _error(500, "server_error", "internal error")

    return app
