"""The D-TA's relying party against a foreign, certified OpenID Provider: panva's oidc-provider
(npm, pinned in interop/oidc-provider with its lock file), run by node on loopback over HTTPS
with a self-signed certificate. The D-TA reaches it as ordinary HTTPS (``--idp-ca``): discovery,
dynamic registration, the code flow with PKCE and the RFC 9207 ``iss`` in the response, the ID
token checked against the provider's JWKS; then it issues shares for ID = issuer ‖ sub.

``npm ci`` in interop/oidc-provider installs the provider (the fixture runs it when node_modules
is missing or older than the lock file)."""
from __future__ import annotations

import json
import ssl
import subprocess
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from interop.oidc.node import npm_ci
from interop.oidc.person import Person
from milagro_tls.context import Context
from milagro_tls.mpin import encode_identity, today
from milagro_tls.roles.dta.client import DtaClient
from milagro_tls.roles.home import RoleHome
from milagro_tls.trust import TrustStore

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).resolve().parents[3] / "interop" / "oidc-provider"
#: provider.mjs's one account: username, password and the sub it is given.
USER, PASSWORD, SUB = "alice", "correct horse", "alice-3f9c"


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory):
    """provider.mjs with a fresh self-signed certificate for localhost; yields (issuer, ca_file)."""
    npm_ci(NODE_DIR)
    cert, key = RoleHome(tmp_path_factory.mktemp("oidc-provider"), "idp", "oidc-provider").fallback_certificate()
    process = subprocess.Popen(["node", str(NODE_DIR / "provider.mjs"), str(cert), str(key)], cwd=NODE_DIR,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(60)
    try:
        if not line or not line[0]:
            process.kill()
            raise RuntimeError(f"provider.mjs did not start: {process.stderr.read()[-3000:]}")
        announced = json.loads(line[0])
        yield announced["issuer"], str(cert)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
        for stream in (process.stdout, process.stderr):
            stream.close()


def test_the_dta_logs_a_person_in_at_oidc_provider_and_issues_shares(oidc_provider, dta_server, world):
    issuer, ca_file = oidc_provider
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_file)) as http:
        discovery = http.get(issuer + "/.well-known/openid-configuration").json()
    assert discovery["issuer"] == issuer and discovery["authorization_response_iss_parameter_supported"] is True

    dta = dta_server("dta-op", issuers=(issuer,), idp_ca=ca_file)
    person = Person(USER, PASSWORD, ca_file)
    verify = ssl.create_default_context(cafile=ca_file)
    verify.load_verify_locations(dta.ca_file)
    person.http = httpx.Client(verify=verify, follow_redirects=False, timeout=30)
    trust = TrustStore.from_json([dta.trust_entry("dta-op")])
    try:
        with Context(identity=world.parties["alice"], trust=trust, chain=world.source, headers=":memory:") as context, \
                DtaClient(dta.base_url, context, "dta-op") as client:
            login = client.start_login(issuer, "code")
            done = person.walk(login.browser_url)
            client.wait_for_login(login.login_nonce, timeout=30)
            shares = client.fetch_client_shares(login.login_nonce)
    finally:
        person.close()

    assert done.status_code == 200 and 'id="login-done"' in done.text, done.text[:500]
    # The walk: the D-TA sent the browser to oidc-provider's authorization endpoint, the person
    # logged in and consented on its pages, and the response came back to the D-TA's callback
    # with code, state and the RFC 9207 iss.
    steps = [(method, urlsplit(url).netloc, urlsplit(url).path, status) for method, url, status in person.trail]
    op, rp = urlsplit(issuer).netloc, urlsplit(dta.base_url).netloc
    assert steps[0] == ("GET", rp, urlsplit(login.browser_url).path, 302)
    assert steps[1][:3] == ("GET", op, urlsplit(discovery["authorization_endpoint"]).path)
    assert [s[2].rsplit("/", 1)[-1] for s in steps if s[0] == "POST"] == ["login", "consent"]
    assert steps[-1] == ("GET", rp, "/callback", 200)
    callback = parse_qs(urlsplit(person.trail[-1][1]).query)
    assert callback["iss"] == [issuer] and set(callback) == {"code", "state", "iss"}

    # The shares are for ID = oidc-provider's issuer ‖ the account's sub, issued to alice.
    assert shares.identity == encode_identity(issuer, SUB)
    assert shares.time_permit.date == today()
    assert shares.client_secret.recipient == world.parties["alice"].locator.to_json()
