"""A person in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; nothing
downloads a browser): logs in on the IdP's pages, approves a device code, completes a code flow.

The browser trusts the IdP's self-signed fallback certificate by its public key alone
(``--ignore-certificate-errors-spki-list`` with the certificate's SPKI SHA-256): any other
certificate still fails, so the pages are really served by the IdP over HTTPS.

The clients are independent of the IdP: the device is the plain RFC 8628 httpx client and the
code-flow client the requests-oauthlib relying party with its own ID-token checks
(interop/oidc). The code flow's redirect lands on a loopback callback server this test runs
(RFC 8252 7.3), and the test exchanges the code the browser brought there.
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import struct
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, sync_playwright

from interop.oidc.device import DeviceClient
from interop.oidc.idtoken import verify_id_token
from interop.oidc.rp import RelyingParty

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER, PASSWORD = "alice", "correct horse"


def spki_pin(cert_file) -> str:
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def chromium(idp_server, tmp_path):
    """A page in a fresh headless Chromium that trusts the IdP's key (and only that)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=FLAGS + [f"--ignore-certificate-errors-spki-list={spki_pin(idp_server.ca_file)}"])
        page = browser.new_page()
        page.set_default_timeout(30_000)
        yield page
        page.screenshot(path=str(tmp_path / "last-page.png"))   # what the person saw last
        browser.close()


class CallbackServer(http.server.ThreadingHTTPServer):
    """The relying party's loopback redirect endpoint: records what the browser brings."""

    def __init__(self) -> None:
        self.received: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if urlsplit(self.path).path != "/callback":     # the browser's /favicon.ico
                    self.send_error(404)
                    return
                server.received.append(self.path)
                body = b'<!doctype html><title>RP</title><p id="callback">signed in</p>'
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self.server_address[1]}/callback"


@pytest.fixture
def callback_server():
    server = CallbackServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def rp(idp_server):
    rp = RelyingParty(str(idp_server.ca_file))
    rp.webfinger(f"{USER}@{urlsplit(idp_server.issuer).netloc}")
    rp.discover()
    yield rp
    rp.close()


def click_and_wait(page: Page, selector: str):
    """Click a submit button and return the response of the page it navigates to."""
    with page.expect_navigation() as navigation:
        page.click(selector)
    return navigation.value


def log_in(page: Page, password: str = PASSWORD):
    assert page.locator("#login").is_visible()
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", password)
    return click_and_wait(page, "#login")


def test_person_completes_code_flow_in_chromium(idp_server, chromium, callback_server, rp):
    page = chromium
    client = rp.register({"client_name": "Browser RP", "redirect_uris": [callback_server.redirect_uri],
                          "token_endpoint_auth_method": "client_secret_basic"},
                         idp_server.registration_token)
    url = rp.authorization_url(callback_server.redirect_uri, scope="openid profile")

    # No session yet: the authorization request shows the login page.
    response = page.goto(url)
    assert response.status == 200 and urlsplit(page.url).path == "/login"

    # A wrong password: the same page again, 401, with the error element.
    response = log_in(page, password="wrong horse")
    assert response.status == 401
    assert page.locator("#error").is_visible()
    assert callback_server.received == []

    # The right one: the consent page names the client and the scopes.
    response = log_in(page)
    assert response.status == 200 and urlsplit(page.url).path == "/authorize"
    text = page.inner_text("body")
    assert "Browser RP" in text and "openid" in text and "profile" in text
    assert page.locator("#deny").is_visible()

    # Approve: the browser follows the redirect to the relying party's callback.
    response = click_and_wait(page, "#approve")
    assert response.status == 200 and page.inner_text("#callback") == "signed in"
    assert page.url.startswith(callback_server.redirect_uri + "?")
    assert len(callback_server.received) == 1
    callback = callback_server.redirect_uri + "?" + urlsplit(callback_server.received[0]).query

    tokens = rp.exchange(callback)                  # PKCE verifier, state, ID-token checks
    assert tokens.claims["iss"] == idp_server.issuer
    audience = tokens.claims["aud"]
    assert client["client_id"] in (audience if isinstance(audience, list) else [audience])
    info = rp.userinfo(tokens.raw["access_token"])
    assert info["sub"] == tokens.claims["sub"] and info["preferred_username"] == USER

    # The person's receipts for the activity log (same browser session): each leaf is
    # SHA256(salt || u16be(len sub) || sub || u64be(period)) of this person's sub, recomputed
    # here with hashlib alone.
    response = page.goto(idp_server.issuer + "/milagro/receipts")
    assert response.status == 200
    receipts = response.json()
    assert receipts and len({r["salt"] for r in receipts}) == len(receipts)
    sub = tokens.claims["sub"].encode()
    for receipt in receipts:
        assert receipt["issuer"] == idp_server.issuer
        leaf = hashlib.sha256(bytes.fromhex(receipt["salt"]) + struct.pack(">H", len(sub)) + sub
                              + struct.pack(">Q", receipt["period"])).hexdigest()
        assert receipt["leaf"] == leaf


def test_person_approves_device_code_in_chromium(idp_server, chromium, rp):
    page = chromium
    client = rp.register({"client_name": "Thermostat in the hall",
                          "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
                          "token_endpoint_auth_method": "client_secret_basic"},
                         idp_server.registration_token)
    thing = DeviceClient(rp.metadata, client["client_id"], client["client_secret"], str(idp_server.ca_file))
    try:
        device = thing.start("openid profile")
        status, body = thing.poll_once(device["device_code"])
        assert (status, body["error"]) == (400, "authorization_pending")

        # The person opens the plain verification URI the device displays and logs in ...
        response = page.goto(device["verification_uri"])
        assert response.status == 200 and urlsplit(page.url).path == "/login"
        response = log_in(page)
        assert response.status == 200 and urlsplit(page.url).path == "/device"

        # ... types the code shown on the device, sees who asks for what, approves.
        page.fill("input[name=user_code]", device["user_code"])
        response = click_and_wait(page, "#confirm")
        assert response.status == 200
        text = page.inner_text("body")
        assert "Thermostat in the hall" in text and "openid" in text
        response = click_and_wait(page, "#approve")
        assert response.status == 200 and page.locator("#device-approved").is_visible()

        tokens = thing.poll(device, timeout=60)
    finally:
        thing.close()
    claims = verify_id_token(tokens["id_token"], jwks=rp.jwks(), issuer=idp_server.issuer,
                             client_id=client["client_id"], nonce=None, access_token=tokens["access_token"])
    info = rp.userinfo(tokens["access_token"])
    assert info["sub"] == claims["sub"] and info["preferred_username"] == USER
    assert [status for status, _ in thing.polls] == [400, 200]


def test_unknown_user_code_shows_error_in_chromium(idp_server, chromium):
    """A mistyped code: the device page answers 400 with the error element, nothing approved."""
    page = chromium
    page.goto(idp_server.issuer + "/device")
    log_in(page)
    page.fill("input[name=user_code]", "ZZZZ-ZZZZ")
    response = click_and_wait(page, "#confirm")
    assert response.status == 400 and page.locator("#error").is_visible()
    assert page.locator("#device-approved").count() == 0
