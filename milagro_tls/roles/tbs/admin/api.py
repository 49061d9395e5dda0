"""The JSON API under /api/, for scripts: the same operations as the pages.

    GET    /api/whoami                          {"admin", "via": "session" | "token"}
    GET    /api/groups                          {"groups": [group]}
    POST   /api/groups                          {"name", "dta_urls"?} -> 201 group
    GET    /api/groups/<name>                   group
    PUT    /api/groups/<name>/dta-urls          {"dta_urls": [...]} -> group
    POST   /api/groups/<name>/trust             {"entries": [entry, ...]} (pasted, see trust.py)
                                                or {"url", "name"?, "roles"?, "expected_locator"?}
                                                -> {"group", "added": [summary]}
    DELETE /api/groups/<name>/trust/<entry>     -> group
    POST   /api/groups/<name>/default           -> group
    POST   /api/groups/<name>/push              -> {"group", "version", "pats"}
    GET    /api/enrolments?group=&state=&limit= {"enrolments": [enrolment]}, newest first
    GET    /api/enrolments/<id>                 enrolment

A group: {"name", "dta_urls", "default", "version", "trust": [{"name", "roles", "locator", "txid"}]};
an enrolment: {"id", "group", "status", "created", "updated", "name", "batch_id", "txid",
"locator", "installed_version"}.

Authentication: ``Authorization: Bearer mtbs_...`` (an admin's token) or the login session,
which must send its CSRF token as ``X-CSRF-Token`` on every request that changes something.
Errors: {"error", "error_description"}: 401 unauthorized (with WWW-Authenticate: Bearer),
403 csrf_failed, 400 invalid_request, 404 not_found, 409 conflict, 413 for a body over 512 KiB.
"""
from __future__ import annotations

import json

from flask import Blueprint, g, jsonify, request

from .auth import SAFE_METHODS, admin_config, csrf_ok
from .backend import BackendError, Conflict, NotFound, check_state
from .trust import TrustCheckError, fetch_from_role, verify_pasted

api = Blueprint("admin_api", __name__, url_prefix="/api")
MAX_LIMIT = 1000


def error(status: int, code: str, description: str, headers: dict | None = None):
    response = jsonify({"error": code, "error_description": description})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@api.before_request
def authenticate():
    if g.admin is None:
        challenge = 'Bearer realm="milagro-tbs-admin"'
        if g.via == "token":
            challenge += ', error="invalid_token"'
        return error(401, "unauthorized", "log in or send an admin's bearer token",
                     {"WWW-Authenticate": challenge})
    if g.via == "session" and request.method not in SAFE_METHODS and not csrf_ok():
        return error(403, "csrf_failed", "a session request that changes something sends X-CSRF-Token")
    return None


def body() -> dict:
    doc = request.get_json(silent=True)
    if not isinstance(doc, dict):
        raise BackendError("the body is a JSON object (Content-Type: application/json)")
    return doc


def _handled(action):
    try:
        return action()
    except NotFound as refused:
        return error(404, "not_found", str(refused))
    except Conflict as refused:
        return error(409, "conflict", str(refused))
    except (BackendError, TrustCheckError) as refused:
        return error(400, "invalid_request", str(refused))


@api.get("/whoami")
def whoami():
    return jsonify({"admin": g.admin.username, "via": g.via})


@api.get("/groups")
def groups():
    return jsonify({"groups": [group.to_json() for group in admin_config().backend.groups()]})


@api.post("/groups")
def create_group():
    def create():
        doc = body()
        group = admin_config().backend.create_group(doc.get("name"), doc.get("dta_urls", []))
        return jsonify(group.to_json()), 201
    return _handled(create)


@api.get("/groups/<name>")
def group(name: str):
    return _handled(lambda: jsonify(admin_config().backend.group(name).to_json()))


@api.put("/groups/<name>/dta-urls")
def set_dta_urls(name: str):
    return _handled(lambda: jsonify(admin_config().backend.set_dta_urls(name, body().get("dta_urls")).to_json()))


@api.post("/groups/<name>/trust")
def add_trust(name: str):
    def add():
        doc = body()
        config = admin_config()
        config.backend.group(name)               # 404 before any network or chain work
        if config.chain is None:
            raise TrustCheckError("this admin API has no chain access to check trust entries")
        if "entries" in doc:
            if set(doc) != {"entries"}:
                raise BackendError("send either {\"entries\": [...]} or {\"url\", ...}")
            verified = verify_pasted(json.dumps(doc["entries"]), config.chain)
        elif "url" in doc:
            if unknown := set(doc) - {"url", "name", "roles", "expected_locator"}:
                raise BackendError(f"unknown fields {sorted(unknown)}")
            if not isinstance(doc["url"], str) or not isinstance(doc.get("name") or "", str):
                raise BackendError("url and name are strings")
            with config.fetch_http() as http:
                verified = [fetch_from_role(doc["url"], http, config.chain, name=doc.get("name"),
                                            roles=doc.get("roles"), expected_locator=doc.get("expected_locator"))]
        else:
            raise BackendError("send {\"entries\": [...]} or {\"url\": \"https://...\"}")
        group = config.backend.put_trust(name, [v.entry for v in verified])
        return jsonify({"group": group.to_json(), "added": [v.summary for v in verified]})
    return _handled(add)


@api.delete("/groups/<name>/trust/<entry>")
def remove_trust(name: str, entry: str):
    return _handled(lambda: jsonify(admin_config().backend.remove_trust(name, entry).to_json()))


@api.post("/groups/<name>/default")
def set_default(name: str):
    def set_it():
        backend = admin_config().backend
        backend.set_default(name)
        return jsonify(backend.group(name).to_json())
    return _handled(set_it)


@api.post("/groups/<name>/push")
def push(name: str):
    def push_it():
        pushed = admin_config().backend.push(name)
        return jsonify({"group": pushed.group, "version": pushed.version, "pats": pushed.pats})
    return _handled(push_it)


@api.get("/enrolments")
def enrolments():
    def listing():
        try:
            limit = int(request.args.get("limit", "200"))
        except ValueError:
            raise BackendError("limit is an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BackendError(f"limit is 1 to {MAX_LIMIT}")
        rows = admin_config().backend.enrolments(group=request.args.get("group") or None,
                                                 state=check_state(request.args.get("state")), limit=limit)
        return jsonify({"enrolments": [row.to_json() for row in rows]})
    return _handled(listing)


@api.get("/enrolments/<enrolment_id>")
def enrolment(enrolment_id: str):
    return _handled(lambda: jsonify(admin_config().backend.enrolment(enrolment_id).to_json()))
