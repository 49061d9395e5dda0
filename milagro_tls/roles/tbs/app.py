"""``create_app(tbs)``: the TBS's main port as a Flask WSGI app (one per gunicorn worker).

    POST /enrol                               ECIES blob -> 202 {"enrolment_id", "status"}
    GET  /enrolments/<id>/signing-request?mac= 200 SigningRequest JSON | 204 waiting | 410 closed
    POST /enrolments/<id>/signature           SigningResponse JSON -> 200 accepted | 400 refused
    GET  /enrolments/<id>/status?mac=         {"status", "txid", "locator"[, "receipt"]}
    GET  /enrolments/<id>/instructions?mac=   200 sealed instruction set (octet-stream) | 409
    GET  /pat/instructions?since=V            milagro-tls, an anchored PAT known by its verified
                                              locator: 200 a newer sealed set | 204 none newer
    /chain/*                                  the tbs:// chain source (chain/tbs_endpoints.py)
    /.well-known/milagro/*                    the roles' normative URLs
    GET  /healthz

Enrolling and polling need no client identity (a new PAT has none): the enrolment is sealed
to the TBS's enrolment key and every poll carries the MAC of the PAT's AES key. Every refusal
is a 4xx with a JSON body {"error", "error_description"}; never a traceback.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, jsonify, request

from ..jsonerrors import install_json_errors, json_error
from ..dta.peer import peer_locator
from .enrolments import Enrolments
from .groups import TbsError

log = logging.getLogger(__name__)

#: An enrolment is at most 16 KiB sealed; signatures and polls are small.
MAX_BODY = 64 * 1024


@dataclass
class TbsApp:
    enrolments: Enrolments
    blueprints: tuple = ()


_error = json_error


def _sealed(blob: bytes) -> Response:
    return Response(blob, status=200, mimetype="application/octet-stream")


def create_app(tbs: TbsApp) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    enrolments = tbs.enrolments

    @app.post("/enrol")
    def enrol():
        return jsonify(enrolments.enrol(request.get_data(cache=False))), 202

    @app.get("/enrolments/<enrolment_id>/signing-request")
    def signing_request(enrolment_id: str):
        doc = enrolments.signing_request(enrolment_id, request.args.get("mac"))
        if doc is None:
            return Response(status=204)
        return jsonify(doc)

    @app.post("/enrolments/<enrolment_id>/signature")
    def signature(enrolment_id: str):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise TbsError(400, "invalid_request", "the body is a SigningResponse JSON object")
        return jsonify(enrolments.submit_signature(enrolment_id, body))

    @app.get("/enrolments/<enrolment_id>/status")
    def status(enrolment_id: str):
        return jsonify(enrolments.status(enrolment_id, request.args.get("mac")))

    @app.get("/enrolments/<enrolment_id>/instructions")
    def instructions(enrolment_id: str):
        return _sealed(enrolments.instructions(enrolment_id, request.args.get("mac")))

    @app.get("/pat/instructions")
    def pat_instructions():
        locator = peer_locator(request.environ)
        if locator is None:
            raise TbsError(401, "milagro_tls_required",
                           "this endpoint answers only an anchored PAT over milagro-tls (a Bitcoin suite)")
        blob = enrolments.pat_instructions(locator, request.args.get("since", "0"))
        if blob is None:
            return Response(status=204)
        return _sealed(blob)

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    for blueprint in tbs.blueprints:
        app.register_blueprint(blueprint)

    install_json_errors(app, TbsError, log)

    return app


class PortDispatcher:
    """One worker, two listeners: the main app on every port but ``admin_port``, which gets the
    admin app. gunicorn sets SERVER_PORT from the listening socket, not from the Host header."""

    def __init__(self, main, admin, admin_port: int | None) -> None:
        self.main, self.admin, self.admin_port = main, admin, admin_port

    def __call__(self, environ, start_response):
        if self.admin_port is not None and environ.get("SERVER_PORT") == str(self.admin_port):
            return self.admin(environ, start_response)
        return self.main(environ, start_response)
