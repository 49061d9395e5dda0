"""The admin web UI through the Flask test client: login required, a bad password, CSRF
refusals, session cookie flags, security headers, groups, push and the enrolments page."""
from __future__ import annotations

import pytest

from milagro_tls.roles.tbs.admin.accounts import AdminExists, add_admin, add_admin_user, authenticate
from milagro_tls.roles.tbs.groups import TbsError, get_group

from .admin_support import (ADMIN, PASSWORD, add_enrolment, app, chain, client, csrf_of, log_in,  # noqa: F401
                            logged_in, page_csrf, set_state, store)


@pytest.mark.parametrize("path", ["/", "/groups", "/groups/default", "/enrolments", "/tokens"])
def test_every_page_needs_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_a_post_without_a_session_is_refused(client):
    response = client.post("/groups", data={"name": "g1"})
    assert response.status_code == 401
    assert 'id="error"' in response.get_data(as_text=True)


def test_login_page_carries_the_form_contract(client):
    html = client.get("/login").get_data(as_text=True)
    for needle in ('name="username"', 'name="password"', 'name="csrf_token"', 'id="login"'):
        assert needle in html


def test_bad_password_is_401_with_an_error(client):
    response = log_in(client, password="wrong")
    assert response.status_code == 401
    assert 'id="error"' in response.get_data(as_text=True)
    assert "Wrong username or password." in response.get_data(as_text=True)
    assert client.get("/groups").status_code == 302           # still not logged in


def test_unknown_user_looks_like_a_bad_password(client):
    response = log_in(client, username="nobody")
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)


def test_login_without_csrf_token_is_400(client):
    client.get("/login")
    response = client.post("/login", data={"username": ADMIN, "password": PASSWORD})
    assert response.status_code == 400
    assert 'id="error"' in response.get_data(as_text=True)
    response = client.post("/login", data={"username": ADMIN, "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 400
    assert client.get("/groups").status_code == 302


def test_login_sets_a_secure_strict_httponly_cookie_and_rotates_csrf(client):
    before = csrf_of(client.get("/login"))
    response = client.post("/login", data={"username": ADMIN, "password": PASSWORD, "csrf_token": before})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("milagro_tbs_admin=")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict"):
        assert flag in cookie
    after = page_csrf(client)
    assert after != before                                    # a new session, a new token


def test_open_redirect_after_login_is_refused(client):
    token = csrf_of(client.get("/login"))
    response = client.post("/login", data={"username": ADMIN, "password": PASSWORD, "csrf_token": token,
                                           "next": "//evil.example/x"})
    assert response.headers["Location"] == "/groups"


def test_security_headers(logged_in):
    response = logged_in.get("/groups")
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_create_group_needs_the_csrf_token(logged_in, store):
    response = logged_in.post("/groups", data={"name": "field-a"})
    assert response.status_code == 400
    assert 'id="error"' in response.get_data(as_text=True)
    response = logged_in.post("/groups", data={"name": "field-a", "csrf_token": "x" * 43})
    assert response.status_code == 400
    assert get_group(store, "field-a") is None


def test_create_group_and_set_dta_urls(logged_in, store):
    token = page_csrf(logged_in)
    response = logged_in.post("/groups", data={"name": "field-a", "csrf_token": token,
                                               "dta_urls": "https://dta1.example:8443\nhttps://dta2.example"})
    assert response.status_code == 303 and response.headers["Location"] == "/groups/field-a"
    page = logged_in.get("/groups/field-a").get_data(as_text=True)
    assert 'id="message"' in page and "Group field-a created." in page
    assert get_group(store, "field-a").dta_urls == ["https://dta1.example:8443", "https://dta2.example"]

    response = logged_in.post("/groups/field-a/dta-urls", data={"csrf_token": token,
                                                                "dta_urls": "https://dta3.example"})
    assert response.status_code == 303
    assert get_group(store, "field-a").dta_urls == ["https://dta3.example"]


def test_group_refusals(logged_in, store):
    token = page_csrf(logged_in)
    assert logged_in.post("/groups", data={"name": "bad name", "csrf_token": token}).status_code == 400
    assert logged_in.post("/groups", data={"name": "default", "csrf_token": token}).status_code == 409
    response = logged_in.post("/groups", data={"name": "g", "csrf_token": token, "dta_urls": "http://plain.example"})
    assert response.status_code == 400
    assert "not an https D-TA URL" in response.get_data(as_text=True)
    assert get_group(store, "g") is None
    assert logged_in.get("/groups/nope").status_code == 404
    assert logged_in.post("/groups/nope/push", data={"csrf_token": token}).status_code == 404


def test_push_makes_a_new_version(logged_in, store):
    token = page_csrf(logged_in)
    assert get_group(store, "default").version is None
    response = logged_in.post("/groups/default/push", data={"csrf_token": token})
    assert response.status_code == 303
    first = get_group(store, "default").version
    assert first is not None
    page = logged_in.get("/groups/default").get_data(as_text=True)
    assert f"Pushed: default version {first} for 0 device(s)." in page
    assert f'<strong id="version">{first}</strong>' in page
    assert logged_in.post("/groups/default/push", data={"csrf_token": "nope"}).status_code == 400
    assert get_group(store, "default").version == first
    logged_in.post("/groups/default/push", data={"csrf_token": token})
    assert get_group(store, "default").version > first


def test_make_default(logged_in, store):
    token = page_csrf(logged_in)
    logged_in.post("/groups", data={"name": "g2", "csrf_token": token})
    assert logged_in.post("/groups/g2/default", data={"csrf_token": token}).status_code == 303
    assert get_group(store, "g2").is_default and not get_group(store, "default").is_default


def test_enrolments_page_lists_rows_for_the_live_script(logged_in, store, world):
    enrolment = add_enrolment(store, world.parties["alice"].certificate)
    html = logged_in.get("/enrolments").get_data(as_text=True)
    assert f'id="enrolment-{enrolment}"' in html
    assert 'class="status status-queued">queued<' in html
    assert 'data-poll-url="/api/enrolments"' in html
    assert '/static/enrolments.js' in html
    set_state(store, enrolment, "anchored")
    assert 'class="status status-anchored">anchored<' in logged_in.get("/enrolments?state=anchored").get_data(as_text=True)
    assert f'id="enrolment-{enrolment}"' not in logged_in.get("/enrolments?state=queued").get_data(as_text=True)
    assert logged_in.get("/enrolments?state=bogus").status_code == 400


def test_static_script_is_served(client):
    response = client.get("/static/enrolments.js")
    assert response.status_code == 200
    assert b"fetch(url" in response.data


def test_logout_needs_csrf_and_ends_the_session(logged_in):
    assert logged_in.post("/logout").status_code == 400
    assert logged_in.get("/groups").status_code == 200
    token = page_csrf(logged_in)
    assert logged_in.post("/logout", data={"csrf_token": token}).status_code == 302
    assert logged_in.get("/groups").status_code == 302


def test_tokens_page_shows_a_new_token_once(logged_in, store):
    token = page_csrf(logged_in, "/tokens")
    response = logged_in.post("/tokens", data={"label": "ci", "csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="new-token"' in html
    assert 'id="new-token"' not in logged_in.get("/tokens").get_data(as_text=True)


def test_admin_accounts(store):
    add_admin(store, ADMIN, PASSWORD)
    with pytest.raises(AdminExists):
        add_admin(store, ADMIN, "other")
    with pytest.raises(TbsError) as refused:
        add_admin_user(store, ADMIN, "other")
    assert (refused.value.status, refused.value.error) == (409, "user_exists")
    with pytest.raises(TbsError) as refused:
        add_admin_user(store, "has space", "pw")
    assert refused.value.status == 400
    assert authenticate(store, ADMIN, PASSWORD).username == ADMIN
    assert authenticate(store, ADMIN, "wrong") is None
    assert authenticate(store, "nobody", PASSWORD) is None
    with store.read() as connection:
        stored = connection.exec_driver_sql("SELECT password_hash FROM tbs_admin_users").scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def _cookie(client) -> str:
    return client.get_cookie("milagro_tbs_admin", domain="admin.test").value


def test_logout_ends_the_session_on_the_server(app, logged_in):
    stolen = _cookie(logged_in)
    token = page_csrf(logged_in)
    logged_in.post("/logout", data={"csrf_token": token})
    replay = app.test_client()
    replay.set_cookie("milagro_tbs_admin", stolen, domain="admin.test", secure=True)
    assert replay.get("/groups").status_code == 302                  # the copied cookie is dead
    assert replay.get("/api/whoami").status_code == 401


def test_closing_all_sessions_and_expiry(app, logged_in, store):
    from milagro_tls.roles.tbs.admin.accounts import close_all_sessions, open_session, session_owner
    admin = authenticate(store, ADMIN, PASSWORD)
    assert close_all_sessions(store, admin) == 1
    assert logged_in.get("/groups").status_code == 302
    sid = open_session(store, admin, 60, now=1000)
    assert session_owner(store, sid, now=1059).username == ADMIN
    assert session_owner(store, sid, now=1060) is None
    assert session_owner(store, "x" * 40, now=1000) is None
    with store.read() as connection:
        stored = connection.exec_driver_sql("SELECT id_sha256 FROM tbs_admin_sessions").scalars().all()
    assert sid not in stored and len(stored) == 1                    # kept as its SHA256 only
