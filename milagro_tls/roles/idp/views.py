"""The IdP's HTTP endpoints (a Flask blueprint): login, consent, device verification,
authorize, token, registration, userinfo, JWKS, discovery and WebFinger.

Written here because Authlib does not give them: the login page and session, consent,
``max_age``/``auth_time``, ``prompt=none|login|consent``, userinfo by POST body (RFC 6750
2.2), WebFinger (RFC 7033) and the milagro fields of the discovery document.

The login session is Flask's signed cookie: ``sub``, ``auth_time`` and the CSRF token. Two
one-shot markers tie steps together: ``fresh_login`` (this authorization request is the one a
login has just been made for, which satisfies ``prompt=login`` and ``max_age``) and
``consent_for`` (the consent form answers an authorization request that passed every check).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError, scope_to_list
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from flask import Blueprint, current_app, jsonify, redirect, request, session
from sqlalchemy import insert, select, update

from . import tables
from .clients import AUTH_METHODS, GRANT_TYPES, get_client, sha256_hex
from .pages import consent_page, device_page, error_page, login_page, message_page
from .server import SCOPES, find_token, user_claims
from .users import User, authenticate, find_user, get_user

bp = Blueprint("idp", __name__)


def _idp():
    return current_app.extensions["milagro_idp"]


def _now() -> int:
    return int(time.time())


def _json_error(status: int, error: str, description: str, headers: dict | None = None):
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# --- session ------------------------------------------------------------------------------
def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _csrf_ok() -> bool:
    presented = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def current_user() -> User | None:
    user = get_user(_idp().store, session.get("sub"))
    return user and User(user.sub, user.username, session.get("auth_time"))


def _args_digest(items) -> str:
    # An authorization request's parameters, independent of their order and URL encoding.
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()


def _request_digest() -> str:
    return _args_digest(request.args.items(multi=True))


def _safe_next(value: str | None) -> str:
    # Only a path on this server: never an open redirect (RFC 6749 10.15).
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def _login_redirect(next_url: str):
    return redirect("/login?" + urlencode({"next": next_url}), code=302)


# --- login ---------------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return login_page(csrf_token=_csrf_token(), next_url=next_url)
    if not _csrf_ok():
        return login_page(csrf_token=_csrf_token(), next_url=next_url, status=400,
                          error="The form expired; please try again.")
    username = request.form.get("username", "")
    user = authenticate(_idp().store, username, request.form.get("password", ""))
    if user is None:
        return login_page(csrf_token=_csrf_token(), next_url=next_url, username=username, status=401,
                          error="Wrong username or password.")
    session.clear()                      # a new login gets a new session (no fixation)
    session["sub"], session["auth_time"] = user.sub, _now()
    session["csrf"] = secrets.token_urlsafe(24)
    if urlsplit(next_url).path == "/authorize":
        session["fresh_login"] = _args_digest(parse_qsl(urlsplit(next_url).query, keep_blank_values=True))
    _record_authentication(user.sub)
    return redirect(next_url, code=302)


def _record_authentication(sub: str) -> None:
    record = _idp().config.record_authentication
    if record is None:
        return
    receipt = record(sub)
    if receipt is not None:
        with _idp().store.begin() as connection:
            connection.execute(insert(tables.receipts).values(
                user_sub=sub, period=receipt["period"], leaf=receipt["leaf"], salt=receipt["salt"],
                issuer=receipt["issuer"], created_at=_now()))


@bp.route("/logout", methods=["POST"])
def logout():
    if not _csrf_ok():
        return error_page("The form expired; please try again.")
    session.clear()
    return message_page("Logged out", "You are logged out.", element_id="logged-out")


@bp.route("/milagro/receipts")
def receipts():
    user = current_user()
    if user is None:
        return _json_error(401, "login_required", "log in at /login to see your receipts")
    with _idp().store.read() as connection:
        rows = connection.execute(select(tables.receipts).where(tables.receipts.c.user_sub == user.sub)
                                  .order_by(tables.receipts.c.id)).all()
    return jsonify([{"period": r.period, "leaf": r.leaf, "salt": r.salt, "issuer": r.issuer} for r in rows])


# --- authorize -----------------------------------------------------------------------------
def _oauth_error(error: OAuth2Error):
    """To the client's redirect URI when Authlib validated it; otherwise a page for the person
    (RFC 6749 4.1.2.1: never redirect to an unregistered URI)."""
    if error.redirect_uri:
        response = _idp().server.handle_error_response(None, error)
        response.location = add_params_to_uri(response.location, {"iss": _idp().config.issuer})    # RFC 9207
        return response
    return error_page(error.get_error_description() or error.error, status=error.status_code or 400)


def _has_consent(user: User, client_id: str, scope: str) -> bool:
    with _idp().store.read() as connection:
        row = connection.execute(select(tables.consents.c.scope).where(
            tables.consents.c.user_sub == user.sub, tables.consents.c.client_id == client_id)).first()
    return row is not None and set(scope_to_list(scope) or ()) <= set(row.scope.split())


def _save_consent(user: User, client_id: str, scope: str) -> None:
    with _idp().store.begin() as connection:
        found = connection.execute(select(tables.consents.c.scope).where(
            tables.consents.c.user_sub == user.sub, tables.consents.c.client_id == client_id)).first()
        merged = " ".join(sorted(set(scope.split()) | set(found.scope.split() if found else ())))
        if found:
            connection.execute(update(tables.consents).where(
                tables.consents.c.user_sub == user.sub, tables.consents.c.client_id == client_id)
                .values(scope=merged, granted_at=_now()))
        else:
            connection.execute(insert(tables.consents).values(user_sub=user.sub, client_id=client_id,
                                                              scope=merged, granted_at=_now()))


@bp.route("/authorize", methods=["GET", "POST"])
def authorize():
    idp = _idp()
    user = current_user()
    try:
        grant = idp.server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return _oauth_error(error)
    data = grant.request.payload.data
    prompts = (data.get("prompt") or "").split()
    digest = _request_digest()
    state = data.get("state")

    def to_client(error_cls, description=None):
        return _oauth_error(error_cls(description, redirect_uri=grant.redirect_uri, state=state))

    if request.method == "POST":
        # The consent form: only as the answer to the GET that passed every check below.
        if not _csrf_ok() or user is None or session.pop("consent_for", None) != digest:
            return error_page("This authorization form expired; please start again.")
        if request.form.get("decision") != "approve":
            return idp.server.create_authorization_response(grant=grant, grant_user=None)
        _save_consent(user, grant.client.client_id, grant.request.scope or "")
        return idp.server.create_authorization_response(grant=grant, grant_user=user)

    max_age = data.get("max_age")
    if max_age is not None:
        try:
            max_age = int(max_age)
            if max_age < 0:
                raise ValueError
        except ValueError:
            return to_client(InvalidRequestError, "max_age must be a non-negative integer")
    elif grant.client.metadata.get("default_max_age") is not None:
        max_age = int(grant.client.metadata["default_max_age"])
    fresh = session.pop("fresh_login", None) == digest
    too_old = max_age is not None and (user is None or not user.auth_time or _now() - user.auth_time > max_age)
    if user is None or (("login" in prompts or too_old) and not fresh):
        if "none" in prompts:
            return to_client(LoginRequiredError)
        return _login_redirect(request.full_path)
    if "consent" in prompts or not _has_consent(user, grant.client.client_id, grant.request.scope or ""):
        if "none" in prompts:
            return to_client(ConsentRequiredError)
        session["consent_for"] = digest
        return consent_page(csrf_token=_csrf_token(), client_name=grant.client.client_name,
                            username=user.username, scopes=scope_to_list(grant.request.scope or "") or [])
    return idp.server.create_authorization_response(grant=grant, grant_user=user)


# --- token, registration, device authorization ---------------------------------------------
@bp.route("/token", methods=["POST"])
def token():
    return _idp().server.create_token_response()


@bp.route("/register", methods=["POST"])
def register():
    return _idp().server.create_endpoint_response("client_registration")


@bp.route("/device_authorization", methods=["POST"])
def device_authorization():
    return _idp().server.create_endpoint_response("device_authorization")


# --- the device verification page (RFC 8628 3.3) -------------------------------------------
def _pending_device(user_code: str):
    code = user_code.strip().upper()
    with _idp().store.read() as connection:
        row = connection.execute(select(tables.device_codes).where(tables.device_codes.c.user_code == code)).first()
    if row is None or row.expires_at < _now() or row.approved is not None or row.redeemed_at is not None:
        return None
    return row


@bp.route("/device", methods=["GET", "POST"])
def device():
    user = current_user()
    if user is None:
        return _login_redirect(request.full_path if request.method == "GET" else "/device")
    if request.method == "GET":
        return device_page(csrf_token=_csrf_token(), action="/device", user_code=request.args.get("user_code", ""))
    if not _csrf_ok():
        return device_page(csrf_token=_csrf_token(), action="/device", status=400,
                           error="The form expired; please try again.")
    user_code = request.form.get("user_code", "")
    row = _pending_device(user_code)
    if row is None:
        return device_page(csrf_token=_csrf_token(), action="/device", user_code=user_code, status=400,
                           error="That code is unknown or has expired.")
    client = get_client(_idp().store, row.client_id)
    return consent_page(csrf_token=_csrf_token(), client_name=client.client_name, username=user.username,
                        scopes=row.scope.split(), hidden=[("user_code", row.user_code)], action="/device/consent")


@bp.route("/device/consent", methods=["POST"])
def device_consent():
    user = current_user()
    if user is None or not _csrf_ok():
        return error_page("This form expired; please start again.")
    row = _pending_device(request.form.get("user_code", ""))
    if row is None:
        return error_page("That code is unknown or has expired.")
    approved = request.form.get("decision") == "approve"
    with _idp().store.begin() as connection:
        connection.execute(update(tables.device_codes).where(
            tables.device_codes.c.device_sha256 == row.device_sha256, tables.device_codes.c.approved.is_(None))
            .values(approved=approved, user_sub=user.sub, auth_time=session.get("auth_time")))
    if approved:
        return message_page("Device connected", "Your device is connected; you can close this page.",
                            element_id="device-approved")
    return message_page("Device refused", "The device was not connected.", element_id="device-denied")


# --- userinfo (OIDC Core 5.3; GET and POST, token in the header or the form body) ------------
@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    presented = value.strip() if scheme.lower() == "bearer" else None
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        body_token = request.form.get("access_token")
        if body_token and presented:
            # RFC 6750 2: a client MUST NOT use more than one method in a request.
            return _json_error(400, "invalid_request", "the access token was sent twice")
        presented = presented or body_token
    if not presented:
        return _json_error(401, "invalid_token", "an access token is required",
                           {"WWW-Authenticate": 'Bearer realm="userinfo"'})
    token = find_token(_idp().store, access_sha256=sha256_hex(presented))
    if token is None or token.revoked or token.is_expired():
        return _json_error(401, "invalid_token", "the access token is unknown, expired or revoked",
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if "openid" not in token.scope.split():
        return _json_error(403, "insufficient_scope", "the token lacks the openid scope",
                           {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'})
    user = get_user(_idp().store, token.user_sub)
    if user is None:
        return _json_error(401, "invalid_token", "the token's user no longer exists")
    response = jsonify(dict(user_claims(user, token.scope)))
    response.headers["Cache-Control"] = "no-store"
    return response


# --- keys and metadata ----------------------------------------------------------------------
@bp.route("/jwks")
def jwks():
    response = jsonify(_idp().keys.public_jwks())
    response.headers["Content-Type"] = "application/jwk-set+json"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def discovery_document(config) -> dict:
    issuer = config.issuer
    from .keys import SIGNING_ALGORITHMS
    doc = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "registration_endpoint": f"{issuer}/register",
        "device_authorization_endpoint": f"{issuer}/device_authorization",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name",
                             "preferred_username"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }
    doc.update(config.milagro or {})
    return doc


@bp.route("/.well-known/openid-configuration")
def openid_configuration():
    response = jsonify(discovery_document(_idp().config))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


#: RFC 7033 4.4.4 / OIDC Discovery 2: the relation that names an OpenID issuer.
ISSUER_REL = "http://openid.net/specs/connect/1.0/issuer"


@bp.route("/.well-known/webfinger")
def webfinger():
    resource = request.args.get("resource")
    if not resource:
        return _json_error(400, "invalid_request", "the resource parameter is required (RFC 7033 4.2)")
    issuer = _idp().config.issuer
    host = urlsplit(issuer).hostname
    known = False
    if resource.startswith("acct:"):
        local, _, domain = resource[5:].rpartition("@")
        known = domain.split(":")[0] == host and find_user(_idp().store, local) is not None
    elif resource.rstrip("/") == issuer:
        known = True
    if not known:
        return _json_error(404, "not_found", "no such resource here")
    rels = request.args.getlist("rel")
    links = [{"rel": ISSUER_REL, "href": issuer}]
    response = jsonify({"subject": resource, "links": [link for link in links if not rels or link["rel"] in rels]})
    response.headers["Content-Type"] = "application/jrd+json"
    response.headers["Access-Control-Allow-Origin"] = "*"        # RFC 7033 5
    return response
