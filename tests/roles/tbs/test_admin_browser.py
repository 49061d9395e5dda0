"""An admin in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright;
nothing downloads a browser) over HTTPS with the role's fallback certificate: a bad password is
refused, then the admin logs in, creates a group with its D-TA URLs, watches an enrolment's
status change live on the enrolments page (the page's script polls the JSON API; the test moves
the row in the store as the TBS's batch worker would), and pushes an update to the group.

The browser trusts the certificate by its public key alone (as in tests/roles/idp/test_browser.py):
any other certificate still fails, so the pages are really served over HTTPS, and the Secure
session cookie travels only there.
"""
from __future__ import annotations

import threading

import pytest
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.tbs.admin import add_admin
from milagro_tls.roles.tbs.groups import get_group

from .admin_support import ADMIN, PASSWORD, add_enrolment, make_app, make_store, set_state

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def spki_pin(cert_file) -> str:
    import base64
    import hashlib
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def served(tmp_path):
    """The admin app on a loopback HTTPS port (werkzeug, threaded) with a fallback certificate."""
    store = make_store(tmp_path)
    add_admin(store, ADMIN, PASSWORD)
    app = make_app(store, poll_interval_ms=300)
    cert, key = RoleHome(tmp_path / "home", "tbs", "tbs.test").fallback_certificate()
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store, f"https://localhost:{server.server_port}", cert
    server.shutdown()
    store.close()


@pytest.fixture
def page(served, tmp_path):
    _, _, cert = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=FLAGS + [f"--ignore-certificate-errors-spki-list={spki_pin(cert)}"])
        page = browser.new_page()
        page.set_default_timeout(30_000)
        yield page
        page.screenshot(path=str(tmp_path / "last-page.png"))
        browser.close()


def submit(page, selector: str):
    with page.expect_navigation() as navigation:
        page.click(selector)
    return navigation.value


def test_admin_in_chromium(served, page, world):
    store, base, _ = served
    errors: list[str] = []
    # Script exceptions and CSP refusals (a 401 or a missing favicon also log console errors).
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text else None)

    # Login required: the page sends the browser to the login form.
    page.goto(base + "/enrolments")
    assert page.url.startswith(base + "/login?next=")

    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", "wrong")
    assert submit(page, "#login").status == 401
    expect(page.locator("#error")).to_have_text("Wrong username or password.")

    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    assert submit(page, "#login").status == 200
    assert page.url == base + "/enrolments"                  # back where the login began
    cookie = next(c for c in page.context.cookies() if c["name"] == "milagro_tbs_admin")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # A device group with two D-TAs.
    page.goto(base + "/groups")
    page.fill("#create-group-form input[name=name]", "field-a")
    page.fill("#create-group-form textarea[name=dta_urls]", "https://dta1.example:8443\nhttps://dta2.example:8443")
    submit(page, "#create-group")
    assert page.url == base + "/groups/field-a"
    expect(page.locator("#message")).to_have_text("Group field-a created.")
    assert get_group(store, "field-a").dta_urls == ["https://dta1.example:8443", "https://dta2.example:8443"]

    # An enrolment in the group; the page follows its status without a reload.
    enrolment = add_enrolment(store, world.parties["alice"].certificate, group="field-a")
    page.goto(base + "/enrolments?group=field-a")
    status = page.locator(f"#enrolment-{enrolment} td.status")
    expect(status).to_have_text("queued")
    page.evaluate("window.loadedOnce = true")                # gone if the page reloads
    set_state(store, enrolment, "batched")
    expect(status).to_have_text("batched")
    set_state(store, enrolment, "anchored")
    expect(status).to_have_text("anchored")
    expect(status).to_have_class("status status-anchored")
    assert page.evaluate("window.loadedOnce") is True        # updated in place by the script
    # A new enrolment appears in the table while it is open.
    newcomer = add_enrolment(store, world.parties["idp.example"].certificate, group="field-a")
    expect(page.locator(f"#enrolment-{newcomer} td.status")).to_have_text("queued")
    expect(page.locator("#poll-status")).to_contain_text("Live: updated")

    # Push an update: a new instruction version for the group (one anchored device).
    page.goto(base + "/groups/field-a")
    expect(page.locator("#version")).to_have_text("none pushed yet")
    submit(page, "#push")
    version = get_group(store, "field-a").version
    assert version is not None
    expect(page.locator("#message")).to_have_text(f"Pushed: field-a version {version} for 1 device(s).")
    expect(page.locator("#version")).to_have_text(str(version))

    # Log out: the pages need a login again.
    submit(page, "#logout")
    page.goto(base + "/groups")
    assert page.url.startswith(base + "/login")
    assert errors == []                                      # no CSP violation or script error
