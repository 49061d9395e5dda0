"""No secret in any log line or exception text.

With every logger at DEBUG, the test runs the handshake (every suite, plus refused and corrupted
handshakes), the PAT's enrolment and instruction sets (plus wrong keys and flipped bytes), a
D-TA's issuance over its HTTP API (plus a foreign-signed ID token, a wrong audience, a reused
nonce, a revoked user, a stolen login nonce, bad JSON), M-Pin (right and wrong PINs, an expired
permit, a tampered pass) and the IdP's login and token endpoint (wrong passwords, a wrong client
secret). It keeps every log record (formatted with its traceback), every exception raised
(str, repr and the formatted traceback) and every response body a peer saw, then searches all of
it for every secret involved: private keys, the anchors' nonces k, D-TA master secrets, M-Pin
client secrets, tokens and PINs, PAT AES keys, the TBS's enrolment key, OIDC client secrets,
passwords, session keys and TLS master secrets, each in hex (either case), in decimal (big- and
little-endian) and in base64. None may appear."""
from __future__ import annotations

import base64
import logging
import os
import traceback
from urllib.parse import urlsplit

import coincurve
import pytest

from milagro_tls.ciphersuites.registry import SUITES
from milagro_tls.enrolment import open_enrolment, open_instructions, seal_enrolment, seal_instructions
from milagro_tls.enrolment.request import check_poll_mac, poll_mac
from milagro_tls.handshake import NEED_DATA, ConnectionFailed, HandshakeComplete
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.mpin import MasterSecret, identity as mpin_identity, shares as mpin_shares
from milagro_tls.mpin.curve import encode_g1, encode_g2
from milagro_tls.mpin.protocol import MpinClient, MpinServer, Pass2, extract_pin
from milagro_tls.roles.dta.issuance import revoke_user
from milagro_tls.roles.idp.app import create_app as create_idp_app
from milagro_tls.roles.idp.clients import register_client
from milagro_tls.roles.idp.config import IdPConfig
from milagro_tls.roles.idp.keys import KeyRing
from milagro_tls.roles.idp.tables import migrate as migrate_idp
from milagro_tls.roles.idp.users import add_user
from milagro_tls.roles.store import open_store

from helpers.handshake import config, connect
from roles.dta.fakes import CLIENT_SECRET, ISSUER, fake_locator, rsa_key
from roles.dta.rig import BASE_URL, dta_rig
from roles.idp.flows import REDIRECT_URI, authorize, authorize_params, exchange, location, login, pkce_pair, query_of

MIN_DECIMAL_DIGITS = 7          # shorter decimals occur by chance (ports, timestamps)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))       # the formatter appends exc_info's traceback


class Scan:
    """The texts a secret must not reach, and the secrets."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.texts: list[str] = []
        self.secrets: dict[str, list[str]] = {}
        self.exceptions = 0

    def secret(self, name: str, value) -> None:
        forms: list[str] = []
        if isinstance(value, coincurve.PrivateKey):
            value = value.secret
        if isinstance(value, str):
            forms.append(value)
            value = value.encode()
        if isinstance(value, int) and not isinstance(value, bool):
            forms.append(str(value))
            value = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
        value = bytes(value)
        forms += [value.hex(), base64.b64encode(value).decode().rstrip("="),
                  base64.urlsafe_b64encode(value).decode().rstrip("=")]
        forms += [str(int.from_bytes(value, "big")), str(int.from_bytes(value, "little"))]
        forms = [f for f in forms if f and not (f.isdigit() and len(f) < MIN_DECIMAL_DIGITS)]
        assert forms, name
        self.secrets[name] = forms

    def raised(self, exc: BaseException) -> None:
        self.exceptions += 1
        self.texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]

    def expect_raise(self, exc_type, func, *args, **kwargs):
        with pytest.raises(exc_type) as info:
            func(*args, **kwargs)
        self.raised(info.value)
        return info.value

    def response(self, response) -> None:
        self.texts.append(response.get_data(as_text=True))
        self.texts.append(str(dict(response.headers)))

    def check(self, *, logged_by: str | None = None) -> None:
        # Not vacuous: refusals were seen, and the named logger did log at DEBUG.
        assert self.texts and self.secrets
        if logged_by:
            assert any(line.startswith(f"DEBUG {logged_by}") for line in self.capture.lines), self.capture.lines[:5]
        texts = self.texts + self.capture.lines
        haystack = "\n".join(texts)
        lowered = haystack.lower()
        found = []
        for name, forms in self.secrets.items():
            for form in forms:
                hexlike = all(c in "0123456789abcdef" for c in form.lower())
                at = lowered.find(form.lower()) if hexlike else haystack.find(form)
                if at >= 0:
                    found.append((name, form[:16], haystack[max(0, at - 160):at + 40]))
        assert not found, f"secrets found in logs or exception texts: {found}"


@pytest.fixture
def scan():
    capture = Capture()
    root = logging.getLogger()
    saved = {name: logger.level for name, logger in logging.root.manager.loggerDict.items()
             if isinstance(logger, logging.Logger)}
    root_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in saved:
        logging.getLogger(name).setLevel(logging.NOTSET)       # every logger passes DEBUG to the root
    yield Scan(capture)
    root.removeHandler(capture)
    root.setLevel(root_level)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def _world_secrets(scan, world):
    for name, party in world.parties.items():
        scan.secret(f"{name} identity key", party.key._private.secret)
        scan.secret(f"{name} nonce k", party.nonce_key().secret)


# --- the handshake -------------------------------------------------------------------------------
def test_handshakes_at_debug_leak_no_key_nonce_or_master_secret(world, scan):
    _world_secrets(scan, world)
    for suite in SUITES.values():
        client, server, client_events, server_events = connect(
            config(world, identity="alice", trust=world.trust("echo.example"), suites=(suite,)),
            config(world, identity="echo.example", trust=world.trust("alice")), server_hostname="echo.example")
        assert [type(e) for e in client_events] == [HandshakeComplete], (suite, client_events)
        scan.secret(f"{suite.name} master secret", client.master_secret)
    # Injected failures: the client trusts another server; the server trusts another client;
    # a byte of the server's flight flipped.
    _, _, events, _ = connect(config(world, identity="alice", trust=world.trust("mallory.example")),
                              config(world, identity="echo.example", trust=world.trust("alice")))
    assert isinstance(events[-1], ConnectionFailed)
    scan.texts.append(repr(events[-1]))
    _, _, _, events = connect(config(world, identity="alice", trust=world.trust("echo.example")),
                              config(world, identity="echo.example", trust=world.trust("mallory.example")))
    assert any(isinstance(e, ConnectionFailed) for e in events), events
    scan.texts += [repr(e) for e in events]
    from milagro_tls.handshake import Connection, Role
    client = Connection(Role.CLIENT, config(world, identity="alice", trust=world.trust("echo.example")))
    server = Connection(Role.SERVER, config(world, identity="echo.example", trust=world.trust("alice")))
    client.start()
    server.receive_data(client.data_to_send())
    while server.next_event() is not NEED_DATA:
        pass
    flight = bytearray(server.data_to_send())
    flight[len(flight) // 2] ^= 0x40
    client.receive_data(bytes(flight))
    seen = []
    for _ in range(5):
        try:
            event = client.next_event()
        except Exception as exc:          # a sans-IO error is also exception text
            scan.raised(exc)
            break
        seen.append(event)
        if isinstance(event, ConnectionFailed):
            break
    scan.texts += [repr(e) for e in seen]
    assert any(isinstance(e, ConnectionFailed) for e in seen) or scan.exceptions, seen
    scan.check(logged_by="milagro_tls.")


# --- enrolment and instruction sets ------------------------------------------------------------
def test_enrolment_at_debug_leaks_no_aes_or_enrolment_key(world, scan):
    from milagro_tls.enrolment import InstructionSet, InstructionTrust
    from milagro_tls.errors import MilagroError
    tbs_enrolment = coincurve.PrivateKey()
    aes_key = os.urandom(16)
    tbs_identity = world.parties["mallory.example"].key
    scan.secret("TBS enrolment key", tbs_enrolment)
    scan.secret("PAT AES key", aes_key)
    scan.secret("TBS identity key", tbs_identity._private.secret)
    pat = BirthCertificate(role="pat", name="pat-0001", pubkey=coincurve.PrivateKey().public_key.format(),
                           network="regtest", batch_key=bytes.fromhex("11" * 32), created="2025-01-01T00:00:00Z")
    blob = seal_enrolment(tbs_enrolment.public_key.format(), pat, aes_key)
    assert open_enrolment(tbs_enrolment, blob).aes_key == aes_key
    scan.expect_raise(MilagroError, open_enrolment, coincurve.PrivateKey(), blob)
    flipped = bytearray(blob)
    flipped[80] ^= 1
    scan.expect_raise(MilagroError, open_enrolment, tbs_enrolment, bytes(flipped))
    mac = poll_mac(aes_key, "enrolment-1")
    assert check_poll_mac(aes_key, "enrolment-1", mac) and not check_poll_mac(aes_key, "enrolment-2", mac)

    alice = world.parties["alice"]
    trust = (InstructionTrust("echo.example", world.parties["echo.example"].locator, ("dta",),
                              world.parties["echo.example"].certificate, world.identities["echo.example"].proof),)
    instructions = InstructionSet(version=2, tbs="tbs.example", group="default", dta_urls=("https://dta.example",),
                                  trust=trust, pat_locator=alice.locator, pat_proof=world.identities["alice"].proof,
                                  issued=1_700_000_000)
    sealed = seal_instructions(instructions, tbs_identity, aes_key)
    assert open_instructions(aes_key, sealed, tbs_identity.public_key, installed_version=1) == instructions
    scan.expect_raise(MilagroError, open_instructions, os.urandom(16), sealed, tbs_identity.public_key)
    scan.expect_raise(MilagroError, open_instructions, aes_key, sealed[:-1] + bytes([sealed[-1] ^ 1]),
                      tbs_identity.public_key)
    scan.expect_raise(MilagroError, open_instructions, aes_key, sealed, IdentityKey.generate().public_key)
    scan.expect_raise(MilagroError, open_instructions, aes_key, sealed, tbs_identity.public_key, installed_version=2)
    scan.check()


# --- a D-TA's issuance --------------------------------------------------------------------------
def test_dta_issuance_at_debug_leaks_no_master_secret_share_or_client_secret(tmp_path, scan):
    from roles.dta.test_api import browser_login, start_code_login
    unit = dta_rig(tmp_path)
    idp, store, key, master, session_key = unit.idp, unit.store, unit.key, unit.master, unit.session_key
    browser, as_party, base = unit.browser, unit.as_party, BASE_URL
    alice, bob = fake_locator(1), fake_locator(2)
    scan.secret("D-TA master secret", master._scalar.to_be_bytes())
    scan.secret("D-TA identity key", key._private.secret)
    scan.secret("D-TA session key", session_key)
    scan.secret("D-TA OIDC client secret", CLIENT_SECRET)
    scan.secret("fake IdP signing key", idp.signing_key.as_der(private=True))

    def share_for(sub):
        started = start_code_login(unit, alice)
        done = browser_login(unit, started, sub=sub)
        scan.response(done)
        answer = as_party(alice).post("/shares/client", json={"login_nonce": started["login_nonce"]})
        # The 200 answer carries alice's shares to alice: that is issuance, not a leak. Its logs
        # and every refusal below are scanned.
        return started, answer

    started, answer = share_for("alice-sub")
    assert answer.status_code == 200
    identity = mpin_identity.encode_identity(ISSUER, "alice-sub")
    h = mpin_identity.hash_identity(identity)
    scan.secret("alice's client secret share", encode_g1(mpin_shares.client_secret_share(master, h)))
    # Injected failures, each answered and logged by the D-TA.
    scan.response(as_party(alice).post("/shares/client", json={"login_nonce": started["login_nonce"]}))  # reused
    scan.response(as_party(bob).post("/shares/client", json={"login_nonce": started["login_nonce"]}))    # stolen
    scan.response(as_party(alice).post("/login/start", data="not json"))
    scan.response(as_party(None).post("/shares/client", json={}))
    idp.id_token_claims = {"aud": "another-client"}
    refused = browser_login(unit, start_code_login(unit, alice))
    assert refused.status_code == 400
    scan.response(refused)
    idp.id_token_claims = {}
    saved_key, idp.signing_key = idp.signing_key, rsa_key("forger")
    forged = browser_login(unit, start_code_login(unit, alice))
    assert forged.status_code == 400
    scan.response(forged)
    idp.signing_key = saved_key
    started = start_code_login(unit, alice)
    browser_login(unit, started, sub="mallory-sub")
    revoke_user(store, ISSUER, "mallory-sub")
    revoked = as_party(alice).post("/shares/client", json={"login_nonce": started["login_nonce"]})
    assert revoked.status_code == 403
    scan.response(revoked)
    callback = browser.get("/callback", query_string={"state": "x", "code": "y", "iss": ISSUER})
    scan.response(callback)
    assert urlsplit(base).hostname == "localhost"
    scan.check(logged_by="sqlalchemy.engine")
    unit.close()


# --- M-Pin ---------------------------------------------------------------------------------------
def test_mpin_at_debug_leaks_no_token_pin_or_secret(scan):
    from milagro_tls.errors import MilagroError
    pin, wrong_pin = "48151623", "48151624"
    day = 20_000
    masters = [MasterSecret.generate() for _ in range(2)]
    alice = mpin_identity.encode_identity("https://idp.example", "alice")
    h = mpin_identity.hash_identity(alice)
    client_secret = mpin_shares.combine_g1(mpin_shares.client_secret_share(m, h) for m in masters)
    permit = mpin_shares.combine_g1(mpin_shares.time_permit_share(m, h, day) for m in masters)
    server_secret = mpin_shares.combine_g2(mpin_shares.server_secret_share(m) for m in masters)
    token = extract_pin(client_secret, h, pin)
    for i, master in enumerate(masters):
        scan.secret(f"master secret {i}", master._scalar.to_be_bytes())
    scan.secret("client secret", encode_g1(client_secret))
    scan.secret("server secret", encode_g2(server_secret))
    scan.secret("token", encode_g1(token))
    scan.secret("PIN", pin)
    scan.secret("wrong PIN", wrong_pin)

    def run(candidate, *, tamper=False, today=day):
        server = MpinServer(server_secret, today=today)
        client = MpinClient(token, permit, alice, day)
        pending = server.begin(client.pass1())
        p2 = client.pass2(pending.challenge, candidate)
        if tamper:
            doc = p2.to_json()
            doc = {k: (v[:-2] + ("00" if v[-2:] != "00" else "01") if isinstance(v, str) else v) for k, v in doc.items()}
            p2 = Pass2.from_json(doc)
        return server.finish(pending, p2)

    assert run(pin).sub == "alice"
    scan.expect_raise(MilagroError, run, wrong_pin)
    scan.expect_raise(MilagroError, run, pin, tamper=True)
    scan.expect_raise(MilagroError, run, pin, today=day + 1)
    scan.expect_raise(MilagroError, extract_pin, client_secret, h, "48a51623")
    scan.check()


# --- the IdP's login and token endpoint ---------------------------------------------------------
def test_idp_at_debug_leaks_no_password_client_secret_or_signing_key(tmp_path, scan):
    password, wrong_password = "Tr0ub4dor&3-horse-staple", "Tr0ub4dor&3-horse-stapler"
    session_key = os.urandom(32)
    store = open_store(None, tmp_path)
    migrate_idp(store)
    keys = KeyRing(tmp_path / "keys", token_lifetime=3600).ensure()
    config_ = IdPConfig(issuer="https://localhost", store=store, keys=keys, secret_key=session_key)
    add_user(store, "alice", password)
    client, secret = register_client(store, {
        "client_name": "Confidential App", "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"], "scope": "openid profile"})
    scan.secret("password", password)
    scan.secret("wrong password", wrong_password)
    scan.secret("client secret", secret)
    scan.secret("IdP session key", session_key)
    for alg in ("RS256", "ES256"):
        scan.secret(f"IdP {alg} signing key", keys.signing_key(alg).as_der(private=True))
    browser = create_idp_app(config_).test_client()
    browser.environ_base["wsgi.url_scheme"] = "https"

    refused = login(browser, password=wrong_password)
    assert refused.status_code == 401
    scan.response(refused)
    scan.response(login(browser, username="nobody", password=wrong_password))
    verifier, challenge = pkce_pair()
    response = authorize(browser, authorize_params(client.client_id, challenge), password=password)
    assert response.status_code == 302, response.get_data(as_text=True)
    code = query_of(location(response))["code"]
    bad = exchange(browser, code, verifier, client.client_id, secret + "x")
    assert bad.status_code == 401, bad.get_data(as_text=True)
    scan.response(bad)
    good = exchange(browser, code, verifier, client.client_id, secret)
    assert good.status_code == 200, good.get_data(as_text=True)
    tokens = good.get_json()
    scan.secret("refresh token", tokens["refresh_token"])
    scan.secret("access token", tokens["access_token"])
    scan.response(exchange(browser, code, verifier, client.client_id, secret))        # the code again
    scan.response(browser.post("/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                               headers={"Authorization": "Basic " + base64.b64encode(
                                   f"{client.client_id}:{wrong_password}".encode()).decode()}))
    scan.check(logged_by="authlib.")
    store.close()
