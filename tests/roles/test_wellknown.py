"""The normative birth-certificate URL, the metadata with its live signature and canary, and the
client's check_role naming every difference and warning about the canary (expired, missing,
badly signed, not anchored), over httpx against the Flask routes."""
from __future__ import annotations

import dataclasses
import hashlib
import threading

import httpx
import pytest
import rfc8785
from flask import Flask

from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.keys import IdentityKey, StatementType
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.roles.activitylog import ActivityLog
from milagro_tls.roles.canary import CANARY_TEXT, CanaryKeeper
from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.store import open_store
from milagro_tls.roles.wellknown import (BIRTH_CERTIFICATE_PATH, INCLUSION_PATH, METADATA_PATH, check_role,
                                         live_signature_payload, wellknown_blueprint)

PERIOD = 60
BASE = 1_800_000_000 // PERIOD * PERIOD
P = BASE // PERIOD


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def role(world, tmp_path_factory):
    home = RoleHome(tmp_path_factory.mktemp("wk-role"), "idp", "wk-idp.example")
    party = home.ensure_identity(world.source)
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, world.headers())
    return home, party, identity, proof.tx


@pytest.fixture(scope="module")
def stranger(world, tmp_path_factory):
    return RoleHome(tmp_path_factory.mktemp("wk-stranger"), "idp", "wk-stranger.example").ensure_identity(world.source)


def client_for(app: Flask) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://role.test")


def make_app(party, *, keeper=None, log=None, clock=None) -> Flask:
    app = Flask("role")
    app.register_blueprint(wellknown_blueprint(party, canary=keeper, log=log, clock=clock or Clock(BASE + 10)))
    return app


@pytest.fixture
def served(world, role, tmp_path):
    """The role's routes with a fresh store (log and canary) and a settable clock."""
    home, party, identity, birth_tx = role
    clock = Clock(BASE + 10)
    log = ActivityLog(open_store(None, tmp_path), PERIOD, RootAnchorer(home.path, party.name, world.source))
    keeper = CanaryKeeper(log.store, party.key, party.name, log, clock=clock)
    return make_app(party, keeper=keeper, log=log, clock=clock), log, keeper, clock


def test_routes_serve_the_certificate_metadata_and_inclusion_errors(role, served):
    home, party, identity, birth_tx = role
    app, log, keeper, clock = served
    with client_for(app) as http:
        response = http.get(BIRTH_CERTIFICATE_PATH)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.content == party.certificate.canonical_bytes()
        meta = http.get(METADATA_PATH).json()
        assert http.get(INCLUSION_PATH, params={"leaf": "zz"}).json() == {
            "error": "invalid_leaf", "error_description": "leaf must be 64 hex digits"}
        unknown = http.get(INCLUSION_PATH, params={"leaf": "00" * 32})
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_leaf"
        pending = http.get(INCLUSION_PATH, params={"leaf": meta["canary"]["leaf"]})
        assert pending.status_code == 409 and pending.json() == {
            "error": "not_anchored_yet", "error_description": f"period {P} is open", "period": P}
    digest = party.certificate.digest()
    assert meta["certificate_sha256"] == digest.hex() == hashlib.sha256(party.certificate.canonical_bytes()).hexdigest()
    assert meta["pubkey"] == party.key.public_key.hex() and meta["locator"] == party.locator.to_json()
    assert meta["signed_at"] == BASE + 10
    assert IdentityKey.verify_statement(party.key.public_key, StatementType.LIVE_CERTIFICATE,
                                        digest + (BASE + 10).to_bytes(8, "big"), bytes.fromhex(meta["live_signature"]))
    statement = meta["canary"]["statement"]
    assert statement == {"issuer": "wk-idp.example", "statement": CANARY_TEXT, "issued": BASE + 10,
                         "expires": BASE + 10 + 2 * PERIOD, "period": P}
    body = rfc8785.dumps(statement)
    assert IdentityKey.verify_statement(party.key.public_key, StatementType.CANARY, body,
                                        bytes.fromhex(meta["canary"]["signature"]))
    assert meta["canary"]["leaf"] == hashlib.sha256(body).hexdigest() and meta["canary"]["period"] == P
    assert meta["activity_log"] == {"period_seconds": PERIOD, "inclusion_uri": INCLUSION_PATH}
    assert live_signature_payload(digest, 1) == digest + b"\0" * 7 + b"\1"


def test_an_honest_role_checks_clean_before_and_after_its_canary_is_anchored(world, role, served):
    home, party, identity, birth_tx = role
    app, log, keeper, clock = served
    headers = world.headers()
    with client_for(app) as http:
        before = check_role("https://role.test", identity, birth_tx, http, world.source, headers, now=BASE + 11)
        assert (before.differences, before.warnings) == ([], [])             # pending in the open period: fine
        assert [c.period for c in log.close_due(now=BASE + PERIOD)] == [P]
        world.source.mine(1)
        after = check_role("https://role.test", identity, birth_tx, http, world.source, headers, now=BASE + 12)
        assert (after.differences, after.warnings, after.ok) == ([], [], True)
        # Without a chain the client says what it did not check.
        unchecked = check_role("https://role.test", identity, birth_tx, http, now=BASE + 12)
        assert unchecked.warnings == ["the canary's log inclusion was not checked (no chain source given)"]


def test_the_canary_warning_fires_when_it_expires_or_its_period_is_never_anchored(world, role, served):
    home, party, identity, birth_tx = role
    app, log, keeper, clock = served
    with client_for(app) as http:
        http.get(METADATA_PATH)                      # the canary of period P is signed at BASE + 10
        # The role stops re-signing (its clock, and so its canary, stays put) while time passes.
        later = BASE + 10 + 2 * PERIOD + 5
        check = check_role("https://role.test", identity, birth_tx, http, world.source, world.headers(), now=later)
        stale = check_role("https://role.test", identity, birth_tx, http, world.source, world.headers(),
                           now=BASE + 10 + 301)
    assert check.differences == [] and stale.differences == []
    assert check.warnings == [f"the canary expired 5 s ago (issued {BASE + 10})",
                              f"the canary's log period {P} is not anchored yet"]
    assert stale.warnings == ["the live signature is 301 s old (replayed, or a clock is wrong)",
                              f"the canary expired 181 s ago (issued {BASE + 10})",
                              f"the canary's log period {P} is not anchored yet"]


def test_missing_and_badly_signed_canaries_warn(world, role, stranger, tmp_path):
    home, party, identity, birth_tx = role
    with client_for(make_app(party)) as http:
        check = check_role("https://role.test", identity, birth_tx, http, now=BASE + 11)
    assert check.differences == [] and check.warnings == ["no canary is published"]

    log = ActivityLog(open_store(None, tmp_path), PERIOD, anchorer=None)
    forged = CanaryKeeper(log.store, stranger.key, party.name, log, clock=Clock(BASE + 10))   # not our key
    with client_for(make_app(party, keeper=forged, log=log)) as http:
        check = check_role("https://role.test", identity, birth_tx, http, now=BASE + 11)
    assert check.differences == []
    assert check.warnings == ["the canary's signature does not verify with the anchored key",
                              "the canary's log inclusion was not checked (no chain source given)"]


def test_a_role_serving_another_certificate_or_key_is_named(world, role, stranger):
    home, party, identity, birth_tx = role
    altered = dataclasses.replace(party, certificate=dataclasses.replace(
        party.certificate, urls=("https://evil.example",)))
    with client_for(make_app(altered)) as http:
        check = check_role("https://role.test", identity, birth_tx, http, now=BASE + 11)
    assert check.differences == [
        f"birth certificate field 'urls': live ['https://evil.example'], anchored {list(party.certificate.urls)!r}",
        f"metadata certificate_sha256: live {altered.certificate.digest().hex()!r}, "
        f"anchored {party.certificate.digest().hex()!r}",
        "metadata live_signature: does not verify with the anchored key over the anchored certificate's digest"]

    with client_for(make_app(stranger)) as http:
        check = check_role("https://role.test", identity, birth_tx, http, now=BASE + 11)
    names = [d.split(":")[0] for d in check.differences]
    names = [n for n in names if n != "birth certificate field 'created'"]      # equal within one second
    assert names == ["birth certificate field 'name'", "birth certificate field 'pubkey'",
                     "birth certificate field 'root_chains'", "metadata certificate_sha256", "metadata pubkey",
                     "metadata locator", "metadata live_signature"]
    assert not check.ok

    broken = Flask("broken")
    with client_for(broken) as http:
        check = check_role("https://role.test", identity, birth_tx, http, now=BASE + 11)
    assert check.differences == [f"birth certificate: HTTP 404 from https://role.test{BIRTH_CERTIFICATE_PATH}",
                                 f"metadata: HTTP 404 from https://role.test{METADATA_PATH}"]


def test_canaries_are_signed_once_per_period_by_whichever_worker_asks(store_url, role, tmp_path):
    home, party, identity, birth_tx = role
    keepers = []
    for _ in range(4):                                  # four workers, each with its own engine
        log = ActivityLog(open_store(store_url, tmp_path), PERIOD, anchorer=None)
        keepers.append(CanaryKeeper(log.store, party.key, party.name, log))
    results, errors = [], []

    def ask(keeper, now):
        try:
            results.append(keeper.current(now))
        except Exception as error:
            errors.append(error)

    for now in (BASE + 5, BASE + PERIOD + 5):
        threads = [threading.Thread(target=ask, args=(k, now)) for k in keepers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert {(c.period, c.leaf) for c in results[:4]} == {(P, results[0].leaf)}
    assert {(c.period, c.leaf) for c in results[4:]} == {(P + 1, results[4].leaf)}
    log = keepers[0].log
    assert log.period(P)["size"] == 1 and log.period(P + 1)["size"] == 1     # one leaf per period: the winner's
    assert keepers[0].current(BASE + PERIOD + 30) == results[4]              # same period: the same canary
