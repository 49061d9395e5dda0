"""A TBS with 2-second activity-log periods and an admin port: the leaf of a registration is
anchored on the TBS's own type-0x03 root chain and verifies against headers alone; the admin
app answers only on --admin-port and the PAT API only on --port; the birth certificate names
the batching and enrolment keys; the admin CLI refuses what it should."""
from __future__ import annotations

import hashlib
import json
import ssl
import time

import httpx
import pytest

from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.batch import BatchKey
from milagro_tls.identity.marker import MarkerType
from milagro_tls.roles.activitylog import receipt_leaf, verify_log_inclusion
from milagro_tls.roles.tbs.service import enrolment_key

from .patclient import PatClient, enrol_and_sign


@pytest.fixture(scope="module")
def tbs(tbs_server):
    return tbs_server("tbs-log", period=2, admin_port=0)


@pytest.fixture
def https(tbs):
    with httpx.Client(verify=ssl.create_default_context(cafile=tbs.ca_file), timeout=30) as client:
        yield client


def test_the_certificate_names_the_batch_and_enrolment_keys_and_both_root_chains(tbs):
    certificate = tbs.party().certificate
    assert certificate.role == "tbs"
    assert certificate.batch_key == BatchKey.load_or_create(tbs.home).xonly == bytes.fromhex(tbs.announced["batch_key"])
    assert certificate.role_data["enrolment_key"] == enrolment_key(tbs.home).public_key.format().hex()
    assert {entry.type for entry in certificate.root_chains} == {MarkerType.ACTIVITY_LOG_ROOT,
                                                                 MarkerType.REVOCATION_LIST_ROOT}
    for name in ("batch.key", "enrolment.key", "secrets/tbs-at-rest.key"):
        assert (tbs.home / name).stat().st_mode & 0o777 == 0o600, name


def test_a_registration_is_logged_and_its_root_anchored_on_the_tbs_chain(world, tbs, tmp_path):
    pat = PatClient(world, tbs, tmp_path, "logged-pat")
    try:
        enrol_and_sign([pat])
        receipt = pat.wait_status("anchored", mine=True)["receipt"]
    finally:
        pat.close()
    digest = pat.pat.certificate.digest()
    leaf = receipt_leaf(bytes.fromhex(receipt["salt"]), digest, receipt["period"])
    assert leaf.hex() == receipt["leaf"] and leaf == hashlib.sha256(
        bytes.fromhex(receipt["salt"]) + len(digest).to_bytes(2, "big") + digest
        + receipt["period"].to_bytes(8, "big")).digest()
    with httpx.Client(verify=ssl.create_default_context(cafile=tbs.ca_file), timeout=30) as http:
        deadline = time.monotonic() + 90
        while True:
            found = http.get(tbs.base_url + "/.well-known/milagro/activity-log/inclusion", params={"leaf": leaf.hex()})
            if found.status_code == 200:
                break
            assert found.status_code == 409, found.text
            assert time.monotonic() < deadline, tbs.log()[-3000:]
            world.source.mine(1)
            time.sleep(0.5)
    world.source.mine(1)
    party = tbs.party()
    headers = world.headers()
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, headers)
    verified = verify_log_inclusion(found.json(), leaf, identity, proof.tx, world.source, headers)
    assert verified.period == receipt["period"]


def test_the_admin_app_answers_only_on_the_admin_port(tbs, https):
    admin = f"https://localhost:{tbs.admin_port}"
    assert tbs.admin_port not in (None, tbs.port) and tbs.admin_url == admin
    login = https.get(admin + "/login")
    assert login.status_code == 200 and "csrf_token" in login.text
    on_main = https.get(tbs.base_url + "/login")
    assert on_main.status_code == 404 and on_main.json()["error"] == "not_found"
    assert https.get(tbs.base_url + "/healthz").json() == {"status": "ok"}
    # A refused POST's unread body ends its connection on the server's side; the client must not
    # reuse that connection for the next request (httpx does not retry on a closed keep-alive).
    assert https.post(admin + "/enrol", content=b"x", headers={"Connection": "close"}).status_code in (403, 404, 405)
    assert https.get(admin + "/enrolments/" + "ab" * 16 + "/status").status_code in (302, 401, 404)


def test_the_admin_command_line(tbs, tmp_path):
    added = tbs.milagro("admin", "user", "add", "root", "--password", "correct horse battery")
    assert added.returncode == 0 and json.loads(added.stdout) == {"admin": "root", "added": True}
    again = tbs.milagro("admin", "user", "add", "root", "--password", "x")
    assert again.returncode == 1 and "already exists" in again.stderr
    group = tbs.milagro("admin", "group", "add", "--name", "lab", "--dta", "https://dta.example/")
    assert group.returncode == 0, group.stderr
    assert json.loads(group.stdout) == {"name": "lab", "dta_urls": ["https://dta.example"], "default": False,
                                        "version": None, "trust": []}
    twice = tbs.milagro("admin", "group", "add", "--name", "lab")
    assert twice.returncode == 1 and twice.stderr.startswith("group_exists: ")
    unknown = tbs.milagro("admin", "push", "nowhere")
    assert unknown.returncode == 1 and unknown.stderr.startswith("unknown_group: ")
    assert tbs.milagro("admin", "group", "default", "nowhere").returncode == 1
    pushed = tbs.milagro("admin", "push", "lab")
    assert pushed.returncode == 0 and json.loads(pushed.stdout)["pats"] == 0
    trust = tmp_path / "entry.json"
    trust.write_text(json.dumps({"name": "x", "locator": tbs.locator, "roles": ["dta"]}))
    unchecked = tbs.milagro("admin", "group", "add", "--name", "lab2", "--trust", str(trust))
    assert unchecked.returncode != 0 and "--chain" in unchecked.stderr
    no_certificate = tbs.milagro("admin", "group", "add", "--name", "lab3", "--trust", str(trust),
                                 "--chain", f"regtest://{tbs.chain_dir}")
    assert no_certificate.returncode != 0 and "certificate" in no_certificate.stderr
