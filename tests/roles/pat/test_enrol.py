"""The PAT end to end against a TBS subprocess: enrolment through anchoring and the first
instructions, a field update, and the refusals (rollback, a forged set, a bad tag)."""
from __future__ import annotations

import os
import stat

import httpx
import pytest

from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.verify import verify_anchor
from milagro_tls.context import Context
from milagro_tls.enrolment import (InstructionSet, InstructionsForged, InstructionsRollback, InstructionsTampered,
                                   poll_mac, seal_instructions)
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.roles.pat import PatError, PatHome, enrol, install_instructions, update
from milagro_tls.roles.tbs import groups
from milagro_tls.trust import TrustEntry, TrustOrigin, TrustStore

from .conftest import GROUP_DTAS, GROUP_TRUST, checkpoint_below, tbs_address


@pytest.fixture(scope="module")
def enrolled(world, tbs, tmp_path_factory):
    """One PAT enrolled through the library (the test mines a block between polls)."""
    home = tmp_path_factory.mktemp("pat-home")
    height, checkpoint = checkpoint_below(world, tbs)
    steps: list[str] = []
    result = enrol(home, tbs_address(tbs), tbs.locator, checkpoint=checkpoint, name="pat-one",
                   min_confirmations=1, interval=0.3, timeout=180, progress=steps.append,
                   on_wait=lambda: world.source.mine(1))
    return home, result, height, steps


def test_enrolment_end_to_end(world, tbs, enrolled):
    home, result, checkpoint_height, steps = enrolled
    pat = BatchPat.load(home, "pat-one")
    # The PAT's certificate names the TBS's batch key; its slot verifies against the world's
    # headers (not only the PAT's own), in a taproot batch.
    assert pat.certificate.batch_key == tbs.party().certificate.batch_key
    assert result.locator == pat.locator and result.locator.kind.label == "taproot-batch"
    headers = world.headers()
    identity = verify_anchor(result.locator, pat.certificate,
                             LocalIdentity.from_batch_pat(pat, world.source).proof, headers, min_confirmations=1)
    assert identity.certificate.pubkey == pat.certificate.pubkey
    # The first instructions: the group's D-TAs and trust entries, verified and installed.
    assert (result.group, result.dta_urls) == ("devices", tuple(GROUP_DTAS))
    installed = {(e.name, tuple(sorted(e.roles)), e.origin) for e in result.trust}
    assert installed == {(name, (role,), TrustOrigin.TBS) for _, name, role in GROUP_TRUST}
    for party, name, _ in GROUP_TRUST:
        assert next(e for e in result.trust if e.name == name).locator == world.parties[party].locator
    store = TrustStore.load(home / "trust.json")
    tbs_entry = next(e for e in store if e.origin is TrustOrigin.PINNED)
    assert (tbs_entry.name, tbs_entry.roles, tbs_entry.locator.to_json()) == ("tbs-pat", {"tbs"}, tbs.locator)
    state = PatHome(home).load()
    assert state.installed_version == result.version >= 1 and state.dta_urls == list(GROUP_DTAS)
    # All the device keeps: secrets 0600, a header chain from the checkpoint on (nothing below).
    for secret in (home / "instructions.key", home / "identities" / "pat-one" / "identity.key"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    chain = HeaderChain(str(home / "headers.sqlite"), world.source.network)
    assert chain.header_at(checkpoint_height - 1) is None and chain.header_at(checkpoint_height) is not None
    assert chain.height_of(result.locator.block_hash) is not None
    chain.close()
    assert (home / "tbs-certificate.json").read_bytes() == tbs.party().certificate.canonical_bytes()
    assert steps[0].startswith("headers:") and any(s.startswith("TBS tbs-pat verified") for s in steps)
    assert any(s.startswith("signed slot") for s in steps)


def test_enrol_again_is_a_no_op_resume(world, tbs, enrolled):
    home, result, _, _ = enrolled
    again = enrol(home, min_confirmations=1, interval=0.3, timeout=30)
    assert (again.locator, again.version) == (result.locator, result.version)
    with pytest.raises(PatError, match="is enrolled \\(or enrolling\\) with"):
        enrol(home, "127.0.0.1:1", tbs.locator, min_confirmations=1)


def _sealed_first_set(world, tbs, home) -> bytes:
    """What the TBS serves at /enrolments/<id>/instructions, fetched as the PAT would."""
    state = PatHome(home).load()
    aes_key = PatHome(home).aes_key()
    trust = TrustStore([TrustEntry.from_json(tbs.trust_entry("tbs-pat"))])
    with Context(trust=trust, chain=world.source, headers=":memory:", min_confirmations=1) as context, \
            httpx.Client(base_url=tbs.base_url, verify=context) as http:
        response = http.get(f"/enrolments/{state.enrolment_id}/instructions",
                            params={"mac": poll_mac(aes_key, state.enrolment_id)},
                            extensions={"sni_hostname": "tbs-pat"})
    assert response.status_code == 200, response.text
    return response.content


def _snapshot(home):
    return {name: (home / name).read_bytes() for name in ("pat.json", "trust.json", "instructions.json")}


def test_field_update_then_rollback_forgery_and_bad_tag_refused(world, tbs, enrolled):
    home, result, _, _ = enrolled
    old_blob = _sealed_first_set(world, tbs, home)
    world.source.mine(6)          # the TBS accepts an anchored client at 6 confirmations (its default)
    assert update(home, min_confirmations=1) is None            # nothing newer: 204
    store = tbs.store()
    try:
        assert groups.set_group_dta_urls(store, "devices", [*GROUP_DTAS, "https://dta-two.example:8443"])
    finally:
        store.close()
    pushed = tbs.milagro("admin", "push", "devices")
    assert pushed.returncode == 0, pushed.stderr
    newer = update(home, min_confirmations=1)
    assert newer is not None and newer.version > result.version
    assert newer.dta_urls == (*GROUP_DTAS, "https://dta-two.example:8443")
    state = PatHome(home).load()
    assert (state.installed_version, state.dta_urls) == (newer.version, list(newer.dta_urls))
    assert update(home, min_confirmations=1) is None

    before = _snapshot(home)
    # A rollback: the TBS's own, genuine, older set.
    with pytest.raises(InstructionsRollback, match=f"version {result.version} is not above the installed "
                                                   f"version {newer.version}"):
        install_instructions(home, old_blob)
    # A set sealed with the PAT's key (as if it leaked) but signed by another key.
    aes_key = PatHome(home).aes_key()
    forged = InstructionSet(version=newer.version + 5, tbs="tbs-pat", group="devices",
                            dta_urls=("https://evil.example",), trust=(), pat_locator=result.locator,
                            pat_proof=LocalIdentity.from_batch_pat(BatchPat.load(home, "pat-one"), world.source).proof)
    with pytest.raises(InstructionsForged, match="not signed by the TBS's anchored identity key"):
        install_instructions(home, seal_instructions(forged, IdentityKey.generate(), aes_key))
    # A genuine set with one byte flipped, and one sealed for another PAT (another key).
    flipped = bytearray(old_blob)
    flipped[-3] ^= 0x01
    with pytest.raises(InstructionsTampered, match="tag mismatch"):
        install_instructions(home, bytes(flipped))
    with pytest.raises(InstructionsTampered):
        install_instructions(home, seal_instructions(forged, tbs.party().key, os.urandom(16)))
    # Nothing was installed by any of them.
    assert _snapshot(home) == before


class Miner:
    """Mines a block every ``every`` seconds while a PAT subprocess waits on the chain."""

    def __init__(self, world, every: float = 0.5) -> None:
        import threading
        self.world, self.every = world, every
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.every):
            self.world.source.mine(1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join()


def pat_cli(*args, timeout: float = 240):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "milagro_tls.cli", "pat", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_the_command_line(world, tbs, tmp_path):
    import json
    home = tmp_path / "device"
    locator_file = tmp_path / "tbs-locator.json"
    locator_file.write_text(json.dumps(tbs.locator))
    _, checkpoint = checkpoint_below(world, tbs)
    with Miner(world):
        done = pat_cli("enrol", "--home", home, "--tbs", tbs_address(tbs), "--tbs-locator", f"@{locator_file}",
                       "--checkpoint", checkpoint, "--name", "pat-cli", "--min-confirmations", "1",
                       "--interval", "0.3", "--timeout", "180")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["name"] == "pat-cli" and result["locator"]["kind"] == "taproot-batch"
        assert result["locator"] == BatchPat.load(home, "pat-cli").locator.to_json()
        assert {e["name"] for e in result["trust"]} == {name for _, name, _ in GROUP_TRUST}
        assert "TBS tbs-pat verified" in done.stderr and "signed slot" in done.stderr
        world.source.mine(6)
        updated = pat_cli("update", "--home", home, "--min-confirmations", "1")
        assert updated.returncode == 0, updated.stderr
        assert json.loads(updated.stdout) == {"updated": False, "version": result["version"]}
    # One request with the PAT's identity to a peer its trust store pins (the TBS itself).
    healthz = f"https://127.0.0.1:{tbs.port}/healthz"
    connected = pat_cli("connect", "--home", home, healthz, "--name", "tbs-pat", "--min-confirmations", "1")
    assert connected.returncode == 0, connected.stderr
    assert json.loads(connected.stdout) == {"status": "ok"} and "HTTP 200" in connected.stderr
    # A name the trust store does not pin that anchor under: the handshake is refused.
    refused = pat_cli("connect", "--home", home, healthz, "--name", "stranger.example", "--min-confirmations", "1")
    assert refused.returncode == 1 and refused.stderr.startswith("PatError: ")
    assert "is pinned as 'tbs-pat', not 'stranger.example'" in refused.stderr, refused.stderr
    # A first enrol needs the TBS; a malformed checkpoint is refused before anything is contacted.
    missing = pat_cli("enrol", "--home", tmp_path / "other")
    assert missing.returncode == 1 and "a first enrol needs the TBS's HOST:PORT and locator" in missing.stderr
    bad = pat_cli("enrol", "--home", tmp_path / "third", "--tbs", tbs_address(tbs), "--tbs-locator",
                  f"@{locator_file}", "--checkpoint", "12:nothex")
    assert bad.returncode == 1 and "checkpoint hash 'nothex' is not a 32-byte hex hash" in bad.stderr


def test_nothing_but_headers_is_taken_from_an_unverified_tbs(world, tbs, tmp_path):
    """A device shipped with a locator that is not this TBS's (alice's): the certificate the
    TBS serves does not match that anchor's digest, and the PAT creates no key, sends no
    enrolment and keeps no certificate."""
    home = tmp_path / "device"
    _, checkpoint = checkpoint_below(world, tbs)
    with pytest.raises(PatError, match="the TBS's anchor does not verify against our headers: DigestMismatch"):
        enrol(home, tbs_address(tbs), world.parties["alice"].locator, checkpoint=checkpoint, min_confirmations=1,
              timeout=20)
    assert sorted(p.name for p in home.iterdir()) == ["headers.sqlite", "pat.json"]
    assert PatHome(home).load().enrolment_id is None


def test_an_anchored_non_tbs_is_not_enrolled_with(world, tbs, tmp_path, monkeypatch):
    """The certificate at the locator verifies but is a service's: no TBS, no enrolment."""
    from milagro_tls.roles.pat import flow
    echo = world.parties["echo.example"]
    monkeypatch.setattr(flow, "_fetch_tbs_certificate", lambda base_url, timeout: echo.certificate)
    home = tmp_path / "device"
    _, checkpoint = checkpoint_below(world, tbs)
    with pytest.raises(PatError, match="is a 'service' naming no batch key, not a TBS"):
        enrol(home, tbs_address(tbs), echo.locator, checkpoint=checkpoint, min_confirmations=1, timeout=20)
    assert sorted(p.name for p in home.iterdir()) == ["headers.sqlite", "pat.json"]
