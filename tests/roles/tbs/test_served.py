"""The TBS as deployed: ``milagro tbs serve`` under gunicorn against the world's chain. PATs
(patclient.py, from the test side) enrol anonymously over milagro-tls, sign their slots, and
fetch their instructions; the test mines the blocks. Every answer is checked for its exact
status and JSON body, and every state against the TBS's store."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlalchemy import select

from milagro_tls.chain.batchverify import read_batch_input
from milagro_tls.chain.block import Block
from milagro_tls.chain.hashes import to_display_hex
from milagro_tls.context import Context
from milagro_tls.enrolment import open_instructions, poll_mac, verify_instruction_entries
from milagro_tls.identity.batch import SigningResponse
from milagro_tls.roles.tbs import groups
from milagro_tls.roles.tbs.tables import batches, enrolments, signatures

from .patclient import SNI, PatClient, enrol_and_sign


@pytest.fixture(scope="module")
def tbs(tbs_server):
    return tbs_server("tbs-served", batch_wait=6)


def row_of(tbs, enrolment_id: str):
    store = tbs.store()
    try:
        with store.read() as connection:
            return connection.execute(select(enrolments).where(enrolments.c.id == enrolment_id)).first()
    finally:
        store.close()


def error(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def mined_batch(world, txid: bytes):
    status = world.source.tx_status(txid)
    block = Block.parse(world.source.block(status.block_hash))
    return block.txs[block.txids().index(txid)]


def test_an_enrolment_is_committed_when_acknowledged_and_enrolling_again_is_idempotent(tbs, pats):
    pat, = pats(1)
    first = pat.enrol()
    assert first.status_code == 202, first.text
    doc = first.json()
    assert set(doc) == {"enrolment_id", "status"} and doc["status"] == "queued" and len(doc["enrolment_id"]) == 32
    row = row_of(tbs, doc["enrolment_id"])          # another process reads it: committed
    assert row is not None and row.digest == pat.pat.certificate.digest() and row.group_name == "default"
    assert row.state in ("queued", "batched") and pat.aes_key not in row.aes_key     # sealed at rest

    again = pat.enrol()                                # a fresh ECIES blob of the same request
    assert again.status_code == 202 and again.json()["enrolment_id"] == doc["enrolment_id"]
    assert error(pat.enrol(pat.sealed(bytes(16)))) == (409, "enrolment_exists")
    assert error(pat.enrol(b"\x04" + bytes(200))) == (400, "invalid_enrolment")
    assert pat.enrol(b"").json()["error_description"]

    assert error(pat.status(mac="00" * 32)) == (403, "invalid_mac")
    assert error(pat.get(f"/enrolments/{doc['enrolment_id']}/status")) == (403, "invalid_mac")
    assert error(pat.get(f"/enrolments/{'ab' * 16}/status", mac="00")) == (404, "unknown_enrolment")

    # It completes, once, like any other.
    request = pat.wait_signing_request()
    assert pat.sign(request).status_code == 200
    anchored = pat.wait_status("anchored", mine=True)
    assert anchored["txid"] == to_display_hex(request.txid)
    again = pat.enrol()
    assert again.status_code == 202 and again.json() == {"enrolment_id": doc["enrolment_id"], "status": "anchored"}


def test_a_batch_is_formed_sent_and_settled(world, tbs, pats):
    members = pats(3)
    txid = enrol_and_sign(members)
    positions = {row_of(tbs, pat.enrolment_id).position for pat in members}
    assert positions == {0, 1, 2}
    for pat in members:
        doc = pat.wait_status("batched")
        assert doc["txid"] == to_display_hex(txid) and doc["locator"] is None
    # Everyone signed: the batch goes out without waiting for --batch-wait.
    deadline = time.monotonic() + 5
    while True:
        try:
            status = world.source.tx_status(txid)
            break
        except Exception:
            assert time.monotonic() < deadline, "the batch was not broadcast"
            time.sleep(0.2)
    assert status.block_hash is None
    world.source.mine(1)
    tx = mined_batch(world, txid)
    view = read_batch_input(tx, 0)
    for pat in members:
        doc = pat.wait_status("anchored")
        position = row_of(tbs, pat.enrolment_id).position
        assert len(view.signatures[position]) == 64
        locator = pat.pat.confirm(world.source)
        assert doc["locator"] == locator.to_json() and doc["txid"] == to_display_hex(txid)
        assert set(doc["receipt"]) == {"period", "salt", "leaf"}
        assert error(pat.signing_request()) == (410, "already_anchored")
        # The receipt's leaf is in the TBS's activity log (its period is not anchored yet).
        logged = pat.get("/.well-known/milagro/activity-log/inclusion", leaf=doc["receipt"]["leaf"])
        assert logged.status_code == 409, logged.text


def test_a_bad_signature_is_refused_and_a_good_one_accepted_afterwards(world, tbs, pats):
    pat, = pats(1)
    assert pat.enrol().status_code == 202
    request = pat.wait_signing_request()
    good = pat.pat.sign(request)
    flipped = bytearray(good.signature)
    flipped[10] ^= 1
    bad = SigningResponse(txid=good.txid, input_index=0, position=good.position, signature=bytes(flipped))
    assert error(pat.submit(bad.to_json())) == (400, "invalid_signature")
    elsewhere = SigningResponse(txid=good.txid, input_index=0, position=good.position + 1, signature=good.signature)
    assert error(pat.submit(elsewhere.to_json())) == (400, "invalid_signature")
    assert error(pat.submit({"txid": "zz"})) == (400, "invalid_request")
    assert error(pat.post(f"/enrolments/{pat.enrolment_id}/signature", content=b"[1]",
                          headers={"Content-Type": "application/json"})) == (400, "invalid_request")
    accepted = pat.submit(good.to_json())
    assert accepted.status_code == 200 and accepted.json() == {"status": "accepted",
                                                              "txid": to_display_hex(request.txid)}
    anchored = pat.wait_status("anchored", mine=True)
    tx = mined_batch(world, request.txid)
    assert read_batch_input(tx, 0).signatures[request.position] == good.signature
    assert anchored["locator"] == pat.pat.confirm(world.source).to_json()
    # The batch is over: a signature now (even a bad one) changes nothing.
    assert error(pat.submit(bad.to_json())) == (409, "batch_closed")
    store = tbs.store()
    try:
        with store.read() as connection:
            kept = connection.execute(select(signatures.c.signature).where(
                signatures.c.position == request.position,
                signatures.c.batch_id == row_of(tbs, pat.enrolment_id).batch_id)).scalar_one()
    finally:
        store.close()
    assert kept == good.signature


def test_a_silent_pat_leaves_its_slot_empty_and_is_requeued_into_the_next_batch(world, tbs, pats):
    talker, silent = pats(2)
    for pat in (talker, silent):
        assert pat.enrol().status_code == 202
    first = talker.wait_signing_request()
    silent_first = silent.wait_signing_request()
    assert silent_first.txid == first.txid
    assert talker.sign(first).status_code == 200
    # --batch-wait (6 s) passes: the batch goes out with the silent PAT's slot empty.
    talker.wait_status("batched")
    deadline = time.monotonic() + 30
    while True:
        try:
            world.source.tx_status(first.txid)
            break
        except Exception:
            assert time.monotonic() < deadline, "the batch was not sent after --batch-wait"
            time.sleep(0.5)
    assert error(silent.signing_request()) == (410, "batch_closed")
    assert error(silent.sign(silent_first)) == (409, "batch_closed")
    world.source.mine(1)
    talker.wait_status("anchored")
    tx = mined_batch(world, first.txid)
    assert read_batch_input(tx, 0).signatures[silent_first.position] == b""
    # Requeued into the next batch, where it signs and is anchored.
    second = silent.wait_signing_request(other_than=first.txid)
    assert second.txid != first.txid
    assert silent.sign(second).status_code == 200
    anchored = silent.wait_status("anchored", mine=True)
    assert anchored["txid"] == to_display_hex(second.txid)
    assert anchored["locator"] == silent.pat.confirm(world.source).to_json()
    assert row_of(tbs, silent.enrolment_id).attempts == 2


def test_instructions_are_served_only_with_the_right_mac(world, tbs, pats):
    pat, waiting = pats(2)
    enrol_and_sign([pat])
    pat.wait_status("anchored", mine=True)
    assert error(pat.instructions(mac="00" * 32)) == (403, "invalid_mac")
    assert error(pat.get(f"/enrolments/{pat.enrolment_id}/instructions")) == (403, "invalid_mac")
    other_key = poll_mac(bytes(16), pat.enrolment_id)
    assert error(pat.instructions(mac=other_key)) == (403, "invalid_mac")
    sealed = pat.instructions()
    assert sealed.status_code == 200 and sealed.headers["content-type"] == "application/octet-stream"
    tbs_key = tbs.party().key.public_key
    instructions = open_instructions(pat.aes_key, sealed.content, tbs_key)
    assert instructions.group == "default" and instructions.tbs == tbs.name
    assert instructions.pat_locator == pat.pat.confirm(world.source)
    verify_instruction_entries(instructions, world.headers())
    # Not anchored yet: nothing to seal.
    assert waiting.enrol().status_code == 202
    assert error(waiting.instructions()) == (409, "not_anchored")
    waiting.sign(waiting.wait_signing_request())
    waiting.wait_status("anchored", mine=True)


def test_newer_instructions_reach_an_anchored_pat_over_milagro_tls(world, tbs, pats, tmp_path):
    alice = world.parties["alice"]
    trust_file = tmp_path / "alice.json"
    trust_file.write_text(json.dumps({**alice.trust_entry(roles=["dta"]), "name": "dta.alice",
                                      "certificate": alice.certificate.canonical_bytes().decode()}))
    added = tbs.milagro("admin", "group", "add", "--name", "field", "--dta", "https://dta-one.example",
                        "--trust", str(trust_file), "--chain", f"regtest://{tbs.chain_dir}")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["trust"][0]["name"] == "dta.alice"
    assert tbs.milagro("admin", "group", "default", "field").returncode == 0
    try:
        pat, = pats(1)
        enrol_and_sign([pat])
        pat.wait_status("anchored", mine=True)
        first = open_instructions(pat.aes_key, pat.instructions().content, tbs.party().key.public_key)
        assert first.group == "field" and first.dta_urls == ("https://dta-one.example",)
        entries = verify_instruction_entries(first, world.headers())
        assert [e.name for e in entries if e.name == "dta.alice"] == ["dta.alice"]

        # Nothing newer yet: 204.
        assert pat.pat_instructions(first.version).status_code == 204
        # The device maker adds a D-TA and pushes: the PAT gets it over milagro-tls.
        store = tbs.store()
        try:
            assert groups.set_group_dta_urls(store, "field", ["https://dta-one.example", "https://dta-two.example"])
        finally:
            store.close()
        pushed = tbs.milagro("admin", "push", "field")
        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout)["version"] > first.version
        newer = pat.pat_instructions(first.version)
        assert newer.status_code == 200, newer.text
        update = open_instructions(pat.aes_key, newer.content, tbs.party().key.public_key,
                                   installed_version=first.version)
        assert update.version == json.loads(pushed.stdout)["version"]
        assert update.dta_urls == ("https://dta-one.example", "https://dta-two.example")
        assert update.pat_locator == first.pat_locator
        assert pat.pat_instructions(update.version).status_code == 204
        assert row_of(tbs, pat.enrolment_id).installed_version == update.version
        # Only an anchored PAT of this TBS: not an anonymous client, not another anchored party.
        assert error(pat.get("/pat/instructions", since=0)) == (401, "milagro_tls_required")
        assert error(pat.pat_instructions(-1)) == (400, "invalid_request")
        with Context(identity=world.identities["alice"], trust=pat.trust, chain=world.source,
                     headers=":memory:") as context, httpx.Client(base_url=tbs.base_url, verify=context) as http:
            stranger = http.get("/pat/instructions", params={"since": 0}, extensions={"sni_hostname": SNI})
        assert error(stranger) == (403, "unknown_pat")
    finally:
        assert tbs.milagro("admin", "group", "default", "default").returncode == 0


def test_the_chain_endpoints_are_served(world, tbs, pats):
    pat, = pats(1)
    tip = pat.get("/chain/tip")
    assert tip.status_code == 200, tip.text
    height = tip.json()["height"]
    assert height >= world.source.tip().height - 1
    headers = pat.get("/chain/headers", start=1, count=2)
    assert headers.status_code == 200
    assert headers.content == world.source.header(1) + world.source.header(2)


def test_two_workers_anchor_every_pat_once(world, tbs_server, tmp_path):
    """gunicorn's default two workers, each with its batch worker, over one SQLite store."""
    two = tbs_server("tbs-two-workers", workers=2, batch_wait=6)
    members = [PatClient(world, two, tmp_path / "pats", f"two-{i}") for i in range(4)]
    try:
        for pat in members:
            assert pat.enrol().status_code == 202
        txids = set()
        for pat in members:
            request = pat.wait_signing_request()
            assert pat.sign(request).status_code == 200
            txids.add(request.txid)
        for pat in members:
            doc = pat.wait_status("anchored", mine=True)
            assert doc["locator"] == pat.pat.confirm(world.source).to_json()
            assert row_of(two, pat.enrolment_id).attempts == 1
        store = two.store()
        try:
            with store.read() as connection:
                states = [row.state for row in connection.execute(select(batches.c.state))]
        finally:
            store.close()
        assert states == ["settled"] * len(txids)
    finally:
        for pat in members:
            pat.close()
