"""Refusals as JSON, the same for every role's API: ``{"error", "error_description"}`` with a 4xx
(or a 500 whose detail stays in the log: never a traceback to the peer)."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


def json_error(status: int, error: str, description: str):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    return response


def install_json_errors(app: Flask, role_error: type[Exception], log: logging.Logger) -> None:
    """``role_error`` (with .status, .error, .description), HTTP errors and anything unforeseen."""

    @app.errorhandler(role_error)
    def refused(error):
        return json_error(error.status, error.error, error.description)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return json_error(error.code or 500, error.name.lower().replace(" ", "_"), error.description or "")

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error in %s", type(error).__name__)
        return json_error(500, "server_error", "internal error")
