"""The device authorization grant (RFC 8628): approval on the device page, polling with
slow_down, expiry, and a device code that works once."""
from __future__ import annotations

import time

from sqlalchemy import update

from milagro_tls.roles.idp import tables
from milagro_tls.roles.idp.clients import sha256_hex

from .flows import csrf_of, login

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def start(browser, client_id):
    response = browser.post("/device_authorization", data={"client_id": client_id, "scope": "openid profile"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def poll(browser, client_id, device_code):
    return browser.post("/token", data={"grant_type": GRANT, "device_code": device_code, "client_id": client_id})


def time_passes(config, device_code, seconds=60):
    """As if the client had waited: move the last poll back (the interval is 5 s by default)."""
    with config.store.begin() as connection:
        connection.execute(update(tables.device_codes).where(
            tables.device_codes.c.device_sha256 == sha256_hex(device_code))
            .values(last_poll_at=tables.device_codes.c.last_poll_at - seconds * 1000))


def approve(browser, user_code, decision="approve"):
    page = browser.get("/device", query_string={"user_code": user_code})
    assert page.status_code == 200 and f'value="{user_code}"' in page.get_data(as_text=True)
    consent = browser.post("/device", data={"user_code": user_code, "csrf_token": csrf_of(page.get_data(as_text=True))})
    html = consent.get_data(as_text=True)
    assert consent.status_code == 200 and "Thermostat" in html and 'id="approve"' in html
    return browser.post("/device/consent", data={"user_code": user_code, "decision": decision,
                                                 "csrf_token": csrf_of(html)})


def test_device_flow_pending_then_approved_then_the_code_is_spent(browser, idp_config, device_client):
    grant = start(browser, device_client.client_id)
    assert grant["verification_uri"] == "https://localhost/device" and grant["interval"] == 5
    assert grant["verification_uri_complete"].endswith("user_code=" + grant["user_code"])
    pending = poll(browser, device_client.client_id, grant["device_code"])
    assert pending.status_code == 400 and pending.get_json()["error"] == "authorization_pending"

    assert browser.get("/device").headers["Location"].startswith("/login?next=")   # login first
    login(browser, next_url="/device")
    approved = approve(browser, grant["user_code"])
    assert approved.status_code == 200 and 'id="device-approved"' in approved.get_data(as_text=True)

    time_passes(idp_config, grant["device_code"])
    token = poll(browser, device_client.client_id, grant["device_code"])
    assert token.status_code == 200, token.get_data(as_text=True)
    body = token.get_json()
    assert body["id_token"] and body["token_type"] == "Bearer"
    info = browser.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert info["preferred_username"] == "alice"

    time_passes(idp_config, grant["device_code"])
    reused = poll(browser, device_client.client_id, grant["device_code"])
    assert reused.status_code == 400 and reused.get_json() == {
        "error": "invalid_grant", "error_description": "the device code has already been redeemed"}


def test_polling_faster_than_the_interval_is_slow_down_and_adds_five_seconds(browser, idp_config, device_client):
    grant = start(browser, device_client.client_id)
    assert poll(browser, device_client.client_id, grant["device_code"]).get_json()["error"] == "authorization_pending"
    fast = poll(browser, device_client.client_id, grant["device_code"])
    assert fast.status_code == 400 and fast.get_json()["error"] == "slow_down"
    time_passes(idp_config, grant["device_code"], seconds=6)      # more than 5 s, less than the new 10 s
    assert poll(browser, device_client.client_id, grant["device_code"]).get_json()["error"] == "slow_down"
    time_passes(idp_config, grant["device_code"], seconds=16)
    assert poll(browser, device_client.client_id, grant["device_code"]).get_json()["error"] == "authorization_pending"


def test_an_expired_device_code_is_expired_token_and_its_page_says_so(browser, idp_config, device_client):
    grant = start(browser, device_client.client_id)
    with idp_config.store.begin() as connection:
        connection.execute(update(tables.device_codes).values(expires_at=int(time.time()) - 1))
    expired = poll(browser, device_client.client_id, grant["device_code"])
    assert expired.status_code == 400 and expired.get_json()["error"] == "expired_token"
    login(browser, next_url="/device")
    page = browser.get("/device")
    response = browser.post("/device", data={"user_code": grant["user_code"],
                                             "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert response.status_code == 400 and 'id="error"' in response.get_data(as_text=True)


def test_an_unknown_user_code_is_a_400_page(browser, device_client):
    login(browser, next_url="/device")
    page = browser.get("/device")
    response = browser.post("/device", data={"user_code": "BCDF-GHJK",
                                             "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert response.status_code == 400 and "unknown or has expired" in response.get_data(as_text=True)


def test_a_denied_device_is_access_denied(browser, idp_config, device_client):
    grant = start(browser, device_client.client_id)
    login(browser, next_url="/device")
    denied = approve(browser, grant["user_code"], decision="deny")
    assert 'id="device-denied"' in denied.get_data(as_text=True)
    time_passes(idp_config, grant["device_code"])
    response = poll(browser, device_client.client_id, grant["device_code"])
    assert response.status_code == 400 and response.get_json()["error"] == "access_denied"


def test_a_client_not_registered_for_the_device_grant_is_refused(browser, public_client):
    response = browser.post("/device_authorization", data={"client_id": public_client.client_id})
    assert response.status_code == 400 and response.get_json()["error"] == "unauthorized_client"
