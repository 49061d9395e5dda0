"""The admin JSON API: 401 JSON without a session or a valid bearer token, CSRF for session
writes (403 JSON), bearer tokens (stored hashed, revocable), groups, push and enrolments."""
from __future__ import annotations

import hashlib

import pytest

from milagro_tls.roles.tbs.admin.accounts import create_token, get_admin
from milagro_tls.roles.tbs.admin import tables as admin_tables
from milagro_tls.roles.tbs.groups import get_group

from .admin_support import (ADMIN, add_enrolment, app, chain, client, logged_in, page_csrf, set_state,  # noqa: F401
                            store)


@pytest.fixture
def token(app, store):
    from milagro_tls.roles.tbs.admin.accounts import authenticate
    from .admin_support import PASSWORD
    return create_token(store, authenticate(store, ADMIN, PASSWORD), "tests")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method,path", [("GET", "/api/groups"), ("POST", "/api/groups"),
                                         ("GET", "/api/enrolments"), ("POST", "/api/groups/default/push"),
                                         ("GET", "/api/whoami")])
def test_no_credentials_is_401_json(client, method, path):
    response = client.open(path, method=method, json={"name": "x"})
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized",
                                   "error_description": "log in or send an admin's bearer token"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="milagro-tbs-admin"'


@pytest.mark.parametrize("header", ["Bearer mtbs_" + "A" * 43, "Bearer nonsense", "Bearer ", "Basic cm9vdDp4"])
def test_a_bad_token_is_401_invalid_token(client, header):
    response = client.get("/api/groups", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_bad_token_is_refused_even_with_a_session(logged_in):
    # The request that names a token is judged by the token, never by the cookie beside it.
    response = logged_in.get("/api/groups", headers=bearer("mtbs_forged"))
    assert response.status_code == 401


def test_bearer_token_works_without_csrf(client, token, store):
    assert client.get("/api/whoami", headers=bearer(token)).get_json() == {"admin": ADMIN, "via": "token"}
    response = client.post("/api/groups", json={"name": "api-g", "dta_urls": ["https://dta.example"]},
                           headers=bearer(token))
    assert response.status_code == 201
    assert response.get_json() == {"name": "api-g", "dta_urls": ["https://dta.example"], "default": False,
                                   "version": None, "trust": []}
    assert get_group(store, "api-g") is not None


def test_tokens_are_stored_hashed(token, store):
    with store.read() as connection:
        rows = connection.execute(admin_tables.tokens.select()).all()
    assert [row.token_sha256 for row in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert get_admin(store, rows[0].admin_id).username == ADMIN


def test_revoked_token_is_refused(logged_in, client, token):
    assert client.get("/api/groups", headers=bearer(token)).status_code == 200
    prefix = hashlib.sha256(token.encode()).hexdigest()[:12]
    csrf = page_csrf(logged_in, "/tokens")
    assert logged_in.post(f"/tokens/{prefix}/revoke", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/api/groups", headers=bearer(token)).status_code == 401


def test_session_reads_need_no_csrf_but_writes_do(logged_in, store):
    assert logged_in.get("/api/whoami").get_json() == {"admin": ADMIN, "via": "session"}
    response = logged_in.post("/api/groups", json={"name": "s-g"})
    assert response.status_code == 403
    assert response.get_json() == {"error": "csrf_failed",
                                   "error_description": "a session request that changes something sends X-CSRF-Token"}
    assert logged_in.post("/api/groups", json={"name": "s-g"}, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert get_group(store, "s-g") is None
    response = logged_in.post("/api/groups", json={"name": "s-g"}, headers={"X-CSRF-Token": page_csrf(logged_in)})
    assert response.status_code == 201


def test_groups_api(client, token, store):
    h = bearer(token)
    assert [g["name"] for g in client.get("/api/groups", headers=h).get_json()["groups"]] == ["default"]
    assert client.get("/api/groups/default", headers=h).get_json()["default"] is True
    assert client.post("/api/groups", json={"name": "default"}, headers=h).status_code == 409
    response = client.post("/api/groups", json={"name": "../x"}, headers=h)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    response = client.post("/api/groups", data="not json", headers=h)
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request",
                                   "error_description": "the body is a JSON object (Content-Type: application/json)"}
    assert client.get("/api/groups/none", headers=h).get_json() == {"error": "not_found",
                                                                    "error_description": "no group 'none'"}
    response = client.put("/api/groups/default/dta-urls", json={"dta_urls": ["https://a.example", "https://b.example"]},
                          headers=h)
    assert response.get_json()["dta_urls"] == ["https://a.example", "https://b.example"]
    response = client.put("/api/groups/default/dta-urls", json={"dta_urls": "https://a.example"}, headers=h)
    assert response.status_code == 400
    client.post("/api/groups", json={"name": "other"}, headers=h)
    assert client.post("/api/groups/other/default", headers=h).get_json()["default"] is True
    assert get_group(store, "default").is_default is False


def test_push_api(client, token, store, world):
    h = bearer(token)
    anchored = add_enrolment(store, world.parties["alice"].certificate)
    set_state(store, anchored, "anchored")
    first = client.post("/api/groups/default/push", headers=h).get_json()
    assert first["group"] == "default" and first["pats"] == 1
    second = client.post("/api/groups/default/push", headers=h).get_json()
    assert second["version"] > first["version"]
    assert get_group(store, "default").version == second["version"]
    assert client.post("/api/groups/nope/push", headers=h).status_code == 404


def test_enrolments_api(client, token, store, world):
    h = bearer(token)
    enrolment = add_enrolment(store, world.parties["alice"].certificate)
    listing = client.get("/api/enrolments", headers=h).get_json()["enrolments"]
    assert [(e["id"], e["status"], e["group"], e["name"]) for e in listing] == [(enrolment, "queued", "default", "alice")]
    set_state(store, enrolment, "batched")
    assert client.get(f"/api/enrolments/{enrolment}", headers=h).get_json()["status"] == "batched"
    assert client.get("/api/enrolments?state=queued", headers=h).get_json() == {"enrolments": []}
    assert client.get("/api/enrolments?group=other", headers=h).get_json() == {"enrolments": []}
    assert client.get("/api/enrolments?state=nope", headers=h).status_code == 400
    assert client.get("/api/enrolments?limit=0", headers=h).status_code == 400
    assert client.get("/api/enrolments?limit=x", headers=h).status_code == 400
    assert client.get("/api/enrolments/ffff", headers=h).status_code == 404


def test_unknown_api_path_is_json_404(client, token):
    response = client.get("/api/nothing", headers=bearer(token))
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_oversized_body_and_wrong_method_are_json(client, token):
    response = client.post("/api/groups", data=b"x" * (512 * 1024 + 1), headers=bearer(token) | {
        "Content-Type": "application/json"})
    assert response.status_code == 413 and response.get_json()["error"] == "request_entity_too_large"
    response = client.delete("/api/groups", headers=bearer(token))
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"
