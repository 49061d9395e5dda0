"""``create_app(dta)``: the D-TA's HTTP API as a Flask WSGI app (one per gunicorn worker).

    POST /login/start        milagro-tls   {"idp", "method": "code"|"device"} -> login nonce, ...
    GET  /login/browser/<n>  browser       302 to the IdP (state, nonce, PKCE S256)
    GET  /callback           browser       RFC 9207 iss, state, code -> ID token -> page id="login-done"
    POST /login/poll         milagro-tls   {"login_nonce"} -> {"status"}
    POST /shares/client      milagro-tls   {"login_nonce"} -> CS_i, TP_i (today), receipt
    POST /shares/server      milagro-tls   registered services -> SS_i
    GET  /healthz

"milagro-tls" means: the request came over a Bitcoin suite from an anchored party, whose
locator the handshake verified (peer.py). Every refusal is a 4xx (or 502 when the IdP fails)
with a JSON body {"error", "error_description"}; never a traceback.
"""
from __future__ import annotations

import hashlib
import html
import logging
from dataclasses import dataclass

from flask import Flask, jsonify, redirect, request, session

from ..jsonerrors import install_json_errors, json_error
from .issuance import Issuer
from .logins import DtaError, Logins
from .peer import peer_locator

log = logging.getLogger(__name__)


@dataclass
class Dta:
    logins: Logins
    issuer: Issuer
    secret_key: bytes
    base_url: str
    blueprints: tuple = ()


_error = json_error


def _peer():
    locator = peer_locator(request.environ)
    if locator is None:
        raise DtaError(401, "milagro_tls_required",
                       "this endpoint answers only an anchored party over milagro-tls (a Bitcoin suite)")
    return locator


def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise DtaError(400, "invalid_request", "the body is a JSON object")
    return body


DONE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Login done</title></head>
<body><p id="login-done">You are logged in at this D-TA as {sub} ({issuer}). You may close this window;
your device fetches its key shares now.</p></body></html>
"""


def create_app(dta: Dta) -> Flask:
    app = Flask(__name__)
    app.secret_key = dta.secret_key
    app.config.update(
        # Per D-TA: cookies do not separate ports, and two D-TAs on one host must not clash.
        SESSION_COOKIE_NAME="milagro_dta_" + hashlib.sha256(dta.base_url.encode()).hexdigest()[:12],
        SESSION_COOKIE_SECURE=dta.base_url.startswith("https://"),
        SESSION_COOKIE_HTTPONLY=True,
        # Lax: sent on the IdP's top-level redirect back to /callback.
        SESSION_COOKIE_SAMESITE="Lax",
    )

    @app.post("/login/start")
    def login_start():
        locator = _peer()
        body = _body()
        return jsonify(dta.logins.start(locator, body.get("idp"), body.get("method")))

    @app.get("/login/browser/<nonce>")
    def login_browser(nonce: str):
        url, state_sha256 = dta.logins.browser_redirect(nonce)
        # Binds the callback to this browser: an authorization response carried to another
        # browser (login CSRF) finds no cookie there.
        session["login_state"] = state_sha256
        return redirect(url, code=302)

    @app.get("/callback")
    def callback():
        params = {key: value for key, value in request.args.items()}
        done = dta.logins.callback(params, session.get("login_state"))
        session.pop("login_state", None)
        page = DONE_PAGE.format(sub=html.escape(done["sub"]), issuer=html.escape(done["issuer"]))
        return page, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.post("/login/poll")
    def login_poll():
        locator = _peer()
        return jsonify(dta.logins.poll(locator, _body().get("login_nonce")))

    @app.post("/shares/client")
    def shares_client():
        locator = _peer()
        return jsonify(dta.issuer.client_shares(locator, _body().get("login_nonce")))

    @app.post("/shares/server")
    def shares_server():
        return jsonify(dta.issuer.server_share(_peer()))

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "idps": sorted(dta.logins.providers)})

    for blueprint in dta.blueprints:
        app.register_blueprint(blueprint)

    install_json_errors(app, DtaError, log)

    return app
