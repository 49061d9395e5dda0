"""Issue 15 end to end: one IdP, two D-TAs in separate processes with their own master secrets,
and a relying service, all ``milagro ... serve`` under gunicorn against the world's chain.

- A person in a real headless Chromium (Debian's, via Playwright) logs in to each D-TA through
  the IdP: a password at the first, and at the second only the consent click (SSO: no password
  form is shown). A client (the world's anchored PAT ``alice``) gets each D-TA's shares over
  milagro-tls, checks every signature against the D-TA's anchor, combines them with a PIN, and
  passes M-Pin at the service over milagro-tls (a YAK suite) and over plain HTTPS.
- A thing (a freshly anchored party) does the same with the device grant: the D-TAs hand it the
  user codes and the person approves them on the IdP's device page in the same browser.
- Both D-TAs' activity logs are anchored: every receipt's leaf is recomputed with hashlib, and its
  inclusion verifies against the D-TA's type-0x03 root chain on the chain.
- Client-side refusals against the served processes: a wrong PIN, one D-TA's shares alone, a share
  from a third, unrelated D-TA, an expired permit, a tampered share, a revoked user.

One set of processes per module (module-scoped fixtures); the tests run in file order and share
the person's browser session.
"""
from __future__ import annotations

import base64
import hashlib
import json
import ssl
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import sync_playwright

from interop.oidc.person import Person
from helpers.role_process import RoleProcess, start_announcing
from milagro_tls.chain.errors import RootNotInChain
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.context import Context
from milagro_tls.identity.party import Party
from milagro_tls.mpin import (
    MasterSecret, ShareSignatureError, SignedShare, encode_identity, issue_client_secret, issue_time_permit,
    today, verify_share,
)
from milagro_tls.roles.activitylog import verify_log_inclusion
from milagro_tls.roles.dta.client import (
    ClientShares, DtaClient, DtaRequestError, MpinCredential, ServiceRejected, combine_shares, credential_path,
    mpin_authenticate,
)
from milagro_tls.trust import TrustStore

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER, PASSWORD = "alice", "correct horse"
PIN = "7294"
START_TIMEOUT = 180


# --- the relying service process ----------------------------------------------------------
@dataclass(kw_only=True)
class ServiceProcess(RoleProcess):
    url: str
    port: int
    ca_file: str


def milagro(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milagro_tls.cli", *args], capture_output=True, text=True,
                          timeout=180)


def start_service(home: Path, chain_dir: Path, dtas: dict[str, object]) -> ServiceProcess:
    """``milagro service init``, registration at each D-TA (``milagro dta service add``), then
    ``milagro service serve`` pinning the D-TAs through a trust file."""
    home.mkdir(parents=True, exist_ok=True)
    chain = f"regtest://{chain_dir}"
    locator_file = home / "service-locator.json"
    init = milagro("service", "init", "--home", str(home), "--chain", chain, "--locator-file", str(locator_file))
    assert init.returncode == 0, init.stderr
    for dta in dtas.values():
        added = dta.milagro("service", "add", "--locator-file", str(locator_file), "--name", "service")
        assert added.returncode == 0, added.stderr
    trust_file = home / "dta-trust.json"
    trust_file.write_text(json.dumps([dta.trust_entry(name) for name, dta in dtas.items()]))
    command = [sys.executable, "-m", "milagro_tls.cli", "service", "serve", "--home", str(home), "--chain", chain,
               "--port", "0", "--workers", "1", "--dta-trust", str(trust_file)]
    for name, dta in dtas.items():
        command += ["--dta", f"{name}={dta.base_url}"]
    log_path = home / "service-serve.log"
    process, announced = start_announcing(command, log_path, "milagro service serve", START_TIMEOUT)
    return ServiceProcess(url=f"https://localhost:{announced['listening']}", port=announced["listening"],
                          ca_file=announced["ca_file"], home=home, process=process, log_path=log_path,
                          announced=announced)


# --- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deployment(world, served_chain, idp_for_dta, dta_server, tmp_path_factory):
    idp = idp_for_dta
    bob = milagro("idp", "user", "add", "--home", str(idp.home), "bob", "--password", "bob's horse")
    assert bob.returncode == 0, bob.stderr
    # Short log periods, so that the roots are anchored while the module runs.
    a = dta_server("dta-a", idp=idp, period=3)
    b = dta_server("dta-b", idp=idp, period=3)
    service = start_service(tmp_path_factory.mktemp("service"), served_chain.chain_dir, {"dta-a": a, "dta-b": b})
    yield SimpleNamespace(idp=idp, a=a, b=b, dtas={"dta-a": a, "dta-b": b}, service=service,
                          bob_sub=json.loads(bob.stdout)["sub"], receipts=[])
    service.stop()


def trust_for(deployment) -> TrustStore:
    service_entry = Party.load(deployment.service.home, "service").trust_entry()
    return TrustStore.from_json([deployment.a.trust_entry("dta-a"), deployment.b.trust_entry("dta-b"),
                                 {**service_entry, "name": "service"}])


@pytest.fixture(scope="module")
def alice_context(world, deployment):
    """The world's anchored PAT ``alice``, pinning the two D-TAs and the service."""
    with Context(identity=world.parties["alice"], trust=trust_for(deployment), chain=world.source,
                 headers=":memory:") as context:
        yield context


@pytest.fixture(scope="module")
def thing(world, deployment, tmp_path_factory):
    """A thermostat: a party anchored for this test, pinning the two D-TAs and the service."""
    home = tmp_path_factory.mktemp("thing")
    party = Party.create(home, world.source, role="pat", name="thermostat")
    with Context(identity=party, trust=trust_for(deployment), chain=world.source, headers=":memory:") as context:
        yield SimpleNamespace(party=party, home=home, context=context)


def spki_pin(cert_file) -> str:
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(deployment, tmp_path_factory):
    """One headless Chromium page for the module (the person's IdP session carries over), trusting
    exactly the IdP's and the two D-TAs' self-signed keys."""
    pins = ",".join(spki_pin(f) for f in (deployment.idp.ca_file, deployment.a.ca_file, deployment.b.ca_file))
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=FLAGS + [f"--ignore-certificate-errors-spki-list={pins}"])
        page = chromium.new_page()
        page.set_default_timeout(30_000)
        yield SimpleNamespace(page=page)
        page.screenshot(path=str(tmp_path_factory.mktemp("browser") / "last-page.png"))
        chromium.close()


def click(page, selector: str):
    with page.expect_navigation():
        page.click(selector)


def browser_login(browser, url: str, *, password: str | None) -> list[str]:
    """Open a D-TA's browser URL and act as the person until the D-TA's ``login-done`` page:
    log in when asked (only with ``password``; without, a password form fails the test), approve
    consent. Returns the clicks made."""
    page, clicks = browser.page, []
    page.goto(url)
    for _ in range(6):
        if page.locator("#login-done").count():
            return clicks
        if page.locator("input[name=password]").count():
            assert password is not None, f"a password form at {page.url}"
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", password)
            click(page, "#login")
            clicks.append("login")
        elif page.locator("#approve").count():
            click(page, "#approve")
            clicks.append("approve")
        else:
            raise AssertionError(f"unexpected page {page.url}: {page.inner_text('body')[:500]}")
    raise AssertionError(f"no login-done page after {clicks}")


def approve_device(browser, url: str) -> None:
    """The person opens the verification URI with the code and approves it (logged in already)."""
    page = browser.page
    page.goto(url)
    assert page.locator("input[name=password]").count() == 0          # the IdP session is still there
    click(page, "#confirm")
    if page.locator("#approve").count():
        click(page, "#approve")
    assert page.locator("#device-approved").is_visible(), page.inner_text("body")[:500]


def check_receipt(receipt: dict, shares: ClientShares) -> bytes:
    """leaf = SHA256(salt ‖ u16be(len ID) ‖ ID ‖ u64be(period) ‖ SHA256(digest(CS) ‖ digest(TP))),
    recomputed with hashlib from the shares as received."""
    identity = shares.identity
    digest = hashlib.sha256(hashlib.sha256(shares.client_secret.canonical()).digest()
                            + hashlib.sha256(shares.time_permit.canonical()).digest()).digest()
    leaf = hashlib.sha256(bytes.fromhex(receipt["salt"]) + struct.pack(">H", len(identity)) + identity
                          + struct.pack(">Q", receipt["period"]) + digest).digest()
    assert receipt["leaf"] == leaf.hex()
    return leaf


# --- the person, with Chromium -------------------------------------------------------------
def test_a_person_logs_in_to_two_dtas_in_chromium_and_the_client_passes_mpin(deployment, browser, alice_context,
                                                                            world, tmp_path):
    idp = deployment.idp
    shares = []
    clicks = {}
    for name, dta in deployment.dtas.items():
        with DtaClient(dta.base_url, alice_context, name) as client:
            login = client.start_login(idp.issuer, "code")
            assert login.browser_url.startswith(dta.base_url + "/login/browser/")
            assert client.poll(login.login_nonce) == "pending"
            # The second login is given no password: a password form on any page fails it.
            clicks[name] = browser_login(browser, login.browser_url, password=None if shares else PASSWORD)
            client.wait_for_login(login.login_nonce, timeout=30)
            got = client.fetch_client_shares(login.login_nonce)
            assert client.dta_locator.to_json() == dta.locator
            with pytest.raises(DtaRequestError) as again:          # one issuance per login
                client.fetch_client_shares(login.login_nonce)
            assert (again.value.status, again.value.error) == (409, "nonce_used")
        shares.append(got)
        deployment.receipts.append((dta, check_receipt(got.receipt, got), got.receipt))

    # The first login asked for the password; the second (SSO at the IdP) showed no password
    # form at all and took one click, the consent for the second D-TA's registration.
    assert clicks["dta-a"][0] == "login"
    assert clicks["dta-b"] == ["approve"]

    # The two D-TAs' shares are for one identity, issuer ‖ sub, and are different keys.
    a, b = shares
    assert a.identity == b.identity
    assert a.identity[2:2 + len(idp.issuer)] == idp.issuer.encode()
    assert a.client_secret.point != b.client_secret.point and a.time_permit.date == today()

    credential = combine_shares(shares, PIN)
    path = credential.save(credential_path(tmp_path, "alice"))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    credential = MpinCredential.load(path)

    # M-Pin at the service over milagro-tls (YAK suite) ...
    with Context(trust=trust_for(deployment), chain=world.source, headers=":memory:", suites="yak") as yak:
        with httpx.Client(verify=yak, timeout=30) as http:
            with http.stream("GET", deployment.service.url + "/healthz",
                             extensions={"sni_hostname": "service"}) as response:
                cipher = response.extensions["network_stream"].get_extra_info("socket").cipher()
                response.read()
            assert cipher[0].startswith("YAK-BTC") and response.json()["dtas"][0]["name"] == "dta-a"
            ok = mpin_authenticate(http, deployment.service.url, credential, PIN,
                                   extensions={"sni_hostname": "service"})
    assert ok["authenticated"] is True and ok["issuer"] == idp.issuer and ok["id"] == a.identity.hex()
    # ... and over plain HTTPS (the service's fallback certificate) for a standard client.
    with httpx.Client(verify=ssl.create_default_context(cafile=deployment.service.ca_file), timeout=30) as http:
        assert mpin_authenticate(http, deployment.service.url, credential, PIN)["sub"] == ok["sub"]
        # A wrong PIN: the pairing fails; the service says so and no more.
        with pytest.raises(ServiceRejected) as wrong:
            mpin_authenticate(http, deployment.service.url, credential, "7295")
        assert (wrong.value.status, wrong.value.reason) == (401, "authentication-failed")
    deployment.alice = SimpleNamespace(shares=shares, credential=credential, sub=ok["sub"])


# --- the thing, with the device grant --------------------------------------------------------
def test_a_thing_gets_shares_through_the_device_grant_and_passes_mpin(deployment, browser, thing, tmp_path):
    idp = deployment.idp
    shares = []
    for name, dta in deployment.dtas.items():
        with DtaClient(dta.base_url, thing.context, name) as client:
            login = client.start_login(idp.issuer, "device")
            assert login.browser_url is None and login.user_code
            assert login.verification_uri.startswith(idp.issuer + "/device")
            approve_device(browser, login.verification_uri_complete)
            client.wait_for_login(login.login_nonce, timeout=60)
            got = client.fetch_client_shares(login.login_nonce)
        assert got.client_secret.recipient == thing.party.locator.to_json()
        shares.append(got)
        deployment.receipts.append((dta, check_receipt(got.receipt, got), got.receipt))
    credential = combine_shares(shares, "0042")
    credential.save(credential_path(thing.home, "thermostat"))
    with httpx.Client(verify=thing.context, timeout=30) as http:
        ok = mpin_authenticate(http, deployment.service.url, credential, "0042", extensions={"sni_hostname": "service"})
    # The same person: the same identity as alice's browser logins.
    assert ok["authenticated"] is True and ok["sub"] == deployment.alice.sub


# --- refusals -----------------------------------------------------------------------------
@pytest.fixture
def plain_service(deployment):
    with httpx.Client(verify=ssl.create_default_context(cafile=deployment.service.ca_file), timeout=30) as http:
        yield lambda credential, pin=PIN: mpin_authenticate(http, deployment.service.url, credential, pin)


def test_one_dtas_shares_alone_are_refused(deployment, plain_service):
    a, _ = deployment.alice.shares
    with pytest.raises(ValueError, match="at least 2 D-TAs"):
        combine_shares([a], PIN)
    with pytest.raises(ServiceRejected) as refused:
        plain_service(combine_shares([a], PIN, min_dtas=1))
    assert (refused.value.status, refused.value.reason) == (401, "authentication-failed")


def test_a_share_from_a_third_unrelated_dta_is_refused(deployment, plain_service, world, tmp_path):
    """A third D-TA (its own master secret and anchored key: the world's ``mallory.example``)
    issues shares for the same identity to alice. Passed off as dta-b's, its signature fails
    under dta-b's anchored key; combined in dta-b's place, the service refuses it."""
    a, b = deployment.alice.shares
    mallory = world.parties["mallory.example"]
    master = MasterSecret.create(tmp_path / "third.key")
    common = dict(identity=a.identity, dta="dta-c", dta_locator=mallory.locator,
                  recipient=world.parties["alice"].locator)
    third = ClientShares(issue_client_secret(master, mallory.key, **common),
                         issue_time_permit(master, mallory.key, date=today(), **common), {}, mallory.locator)
    with pytest.raises(ShareSignatureError):
        verify_share(third.client_secret, deployment.b.party().key.public_key)
    with pytest.raises(ServiceRejected) as refused:
        plain_service(combine_shares([a, third], PIN))
    assert (refused.value.status, refused.value.reason) == (401, "authentication-failed")


def test_an_expired_permit_is_refused(deployment, plain_service):
    credential = deployment.alice.credential
    stale = MpinCredential(credential.identity, credential.token, credential.time_permit, credential.date - 1,
                           credential.dtas)
    with pytest.raises(ServiceRejected) as refused:
        plain_service(stale)
    assert (refused.value.status, refused.value.reason) == (401, "expired-permit")


def test_a_tampered_share_fails_its_signature(deployment):
    """Shares as the D-TAs sent them, altered: each check the client makes refuses them."""
    a, b = deployment.alice.shares
    key_a = deployment.a.party().key.public_key
    doc = a.client_secret.to_json()
    doc["share"]["point"] = b.client_secret.to_json()["share"]["point"]      # a valid point, another D-TA's
    with pytest.raises(ShareSignatureError):
        verify_share(SignedShare.from_json(doc), key_a)
    doc = a.time_permit.to_json()
    doc["share"]["date"] += 1                                               # tomorrow's permit?
    with pytest.raises(ShareSignatureError):
        verify_share(SignedShare.from_json(doc), key_a)
    doc = a.client_secret.to_json()
    doc["signature"] = doc["signature"][:-2] + ("00" if doc["signature"][-2:] != "00" else "01")
    with pytest.raises(ShareSignatureError):
        verify_share(SignedShare.from_json(doc), key_a)


def test_a_revoked_user_gets_no_shares(deployment, world):
    """bob logs in (a person with httpx at the same pages), is revoked at dta-a, and dta-a
    refuses his shares; dta-b, where he is not revoked, still issues them."""
    idp = deployment.idp
    party = world.parties["echo.example"]             # bob's device: another anchored party
    revoked = deployment.a.milagro("user", "revoke", "--issuer", idp.issuer, f"--sub={deployment.bob_sub}")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked"] is True, revoked.stderr
    person = Person("bob", "bob's horse", idp.ca_file)
    verify = ssl.create_default_context(cafile=idp.ca_file)
    for dta in (deployment.a, deployment.b):
        verify.load_verify_locations(dta.ca_file)
    person.http = httpx.Client(verify=verify, follow_redirects=False, timeout=30)
    with Context(identity=party, trust=trust_for(deployment), chain=world.source, headers=":memory:") as context:
        try:
            for name, dta in deployment.dtas.items():
                with DtaClient(dta.base_url, context, name) as client:
                    login = client.start_login(idp.issuer, "code")
                    done = person.walk(login.browser_url)
                    assert done.status_code == 200 and 'id="login-done"' in done.text, done.text[:300]
                    client.wait_for_login(login.login_nonce, timeout=30)
                    if name == "dta-a":
                        with pytest.raises(DtaRequestError) as refused:
                            client.fetch_client_shares(login.login_nonce)
                        assert (refused.value.status, refused.value.error) == (403, "user_revoked")
                    else:
                        got = client.fetch_client_shares(login.login_nonce)
                        assert got.identity == encode_identity(idp.issuer, deployment.bob_sub)
        finally:
            person.close()


# --- the activity logs --------------------------------------------------------------------------
def test_both_dtas_logs_are_anchored_with_working_inclusion_proofs(deployment, world, alice_context):
    assert {dta.name for dta, _, _ in deployment.receipts} == {"dta-a", "dta-b"}
    headers = world.headers()
    identities = {}
    for dta in (deployment.a, deployment.b):
        party = dta.party()
        identities[dta.name] = resolve_anchor(party.locator, party.certificate, world.source, headers)
    deadline = time.monotonic() + 90
    for dta, leaf, receipt in deployment.receipts:
        with DtaClient(dta.base_url, alice_context, dta.name) as client:
            while (doc := client.log_inclusion(leaf)) is None:
                assert time.monotonic() < deadline, dta.log()[-3000:]
                world.source.mine(1)
                time.sleep(0.5)
        world.source.mine(1)
        headers.sync_from(world.source)
        identity, proof = identities[dta.name]
        verified = verify_log_inclusion(doc, leaf, identity, proof.tx, world.source, headers)
        assert verified.period == receipt["period"] and doc["leaf"] == leaf.hex()
        # Against the other D-TA's root chain the same proof is refused.
        other = identities["dta-b" if dta.name == "dta-a" else "dta-a"]
        with pytest.raises(RootNotInChain):
            verify_log_inclusion(doc, leaf, other[0], other[1].tx, world.source, headers)


def test_a_service_not_registered_at_a_dta_does_not_start(deployment, served_chain, tmp_path):
    """The D-TAs give SS_i only to services registered with ``milagro dta service add``: an
    unregistered one exits 1 naming the D-TA and its refusal, and a single --dta is refused."""
    home = tmp_path / "rogue-service"
    home.mkdir()
    trust_file = home / "dta-trust.json"
    trust_file.write_text(json.dumps([deployment.a.trust_entry("dta-a"), deployment.b.trust_entry("dta-b")]))
    chain = f"regtest://{served_chain.chain_dir}"
    base = ["service", "serve", "--home", str(home), "--chain", chain, "--port", "0", "--dta-trust", str(trust_file)]
    refused = milagro(*base, "--dta", f"dta-a={deployment.a.base_url}", "--dta", f"dta-b={deployment.b.base_url}")
    assert refused.returncode == 1
    assert f"D-TA dta-a at {deployment.a.base_url}" in refused.stderr and "403 service_not_registered" in refused.stderr
    alone = milagro(*base, "--dta", f"dta-a={deployment.a.base_url}")
    assert alone.returncode == 1 and "at least 2 D-TAs" in alone.stderr
    assert not (home / "mpin" / "server-secret.json").exists()
