"""Refusals as JSON, the same for every role's API: ``{"error", "error_description"}`` with a 4xx
(or a 500 whose detail stays in the log: never a traceback to the peer; a 503 with Retry-After
while the role's database is unavailable).

``BoundedJSONProvider``: request bodies nested too deeply for ``json.loads`` (RecursionError,
which ``request.get_json(silent=True)`` does not catch: only ValueError) are malformed JSON like
any other, so a deep body is the endpoint's 400, not a 500."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a body too deeply nested to parse refused as not JSON (ValueError)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def bounded_json(app: Flask) -> None:
    """Install BoundedJSONProvider on ``app`` (every role's API)."""
    app.json = BoundedJSONProvider(app)


def json_error(status: int, error: str, description: str):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def install_json_errors(app: Flask, role_error: type[Exception], log: logging.Logger) -> None:
    """``role_error`` (with .status, .error, .description), HTTP errors and anything unforeseen;
    and request bodies too deeply nested to parse are malformed JSON (bounded_json)."""
    bounded_json(app)

    @app.errorhandler(role_error)
    def refused(error):
        return json_error(error.status, error.error, error.description)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return json_error(error.code or 500, error.name.lower().replace(" ", "_"), error.description or "")

    @app.errorhandler(DBAPIError)
    def store_unavailable(error: DBAPIError):
        # The database is down or restarting: nothing was acknowledged, and asking again later
        # is the right reaction (503 with Retry-After), not a bug report (500).
        if not (isinstance(error, OperationalError) or error.connection_invalidated):
            return unexpected(error)
        log.warning("the store is unavailable: %s", type(getattr(error, "orig", None) or error).__name__)
        response = json_error(503, "store_unavailable", "the role's database is unavailable; try again later")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error in %s", type(error).__name__)
        return json_error(500, "server_error", "internal error")
