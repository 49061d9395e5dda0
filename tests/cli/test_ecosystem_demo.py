"""``milagro demo --pats 2``: the ecosystem demo end to end, its summary checked against the
chain it leaves behind and its pcaps read back by the real tshark; and a demo whose TBS cannot
start fails with a clear message and leaves no process running."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from milagro_tls.capture.keylog import parse_keylog
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.hashes import from_display_hex
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.proof import fetch_anchor_proof
from milagro_tls.chain.tx import parse_tx, tx_weight
from milagro_tls.chain.verify import verify_anchor
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.identity.party import Party
from milagro_tls.mpin import encode_identity
from milagro_tls.roles.dta.client import MpinCredential, credential_path

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LUA = REPO / "interop" / "wireshark" / "milagro.lua"
YAK_AES128 = "0xff20"


def demo(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "milagro_tls.cli", "demo", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"})


def tshark(*args) -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is not installed: run `make test` (it installs the Debian package tshark)", pytrace=False)
    done = subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ecosystem") / "demo"
    done = demo("--pats", 2, "--dir", workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return workdir, done, json.loads((workdir / "summary.json").read_text())


def test_the_demo_exits_0_and_stops_every_process(run):
    workdir, done, summary = run
    assert "demo finished" in done.stdout and "2 PATs enrolled, anchored and authenticated" in done.stdout
    assert "M-Pin passed for 2" in done.stdout
    assert processes_mentioning(str(workdir)) == []
    # The roles each ran as their own process.
    pids = {role["pid"] for role in summary["roles"].values()}
    assert len(pids) == len(summary["roles"]) == 5          # idp, dta-a, dta-b, service, tbs


def test_the_summary_matches_the_chain(run):
    """The batch the summary names is mined, at the height and depth it says, with the weight it
    says; both PATs' anchors in it verify against headers synced from the chain alone."""
    workdir, _, summary = run
    (batch,) = summary["batches"]
    assert batch["pats"] == 2 and batch["confirmations"] >= 6
    with EmbeddedSource.open(workdir / "chain") as source:
        txid = from_display_hex(batch["txid"])
        status = source.tx_status(txid)
        assert status.block_hash is not None and status.height == batch["height"]
        assert source.tip().height - status.height + 1 == batch["confirmations"]
        raw = source.transaction(txid, status.block_hash)
        weight = tx_weight(raw, parse_tx(raw))
        assert (batch["weight"], batch["vbytes"]) == (weight, -(-weight // 4))
        assert batch["vbytes_per_pat"] == round(batch["vbytes"] / 2, 1)
        headers = HeaderChain(":memory:", source.network)
        headers.sync_from(source)
        inputs = set()
        for pat in summary["pats"]:
            assert pat["locator"]["txid"] == batch["txid"] and pat["locator"]["kind"] == "taproot-batch"
            identity = BatchPat.load(Path(pat["home"]), pat["name"])
            assert identity.locator.to_json() == pat["locator"]
            proof = fetch_anchor_proof(source, identity.locator.txid, identity.locator.block_hash, status.height)
            verified = verify_anchor(identity.locator, identity.certificate, proof, headers, min_confirmations=6)
            assert verified.certificate.pubkey == identity.certificate.pubkey
            inputs.add((pat["locator"]["input"], identity.locator.batch_slot.position))
        assert len(inputs) == 2                                 # two slots, not one PAT twice
        headers.close()
        # The TBS that batched them is the one whose batch key they name.
        tbs = Party.load(workdir / "tbs", "tbs")
        assert all(BatchPat.load(Path(p["home"]), p["name"]).certificate.batch_key == tbs.certificate.batch_key
                   for p in summary["pats"])


def test_each_pat_passed_mpin_with_both_dtas_shares(run):
    workdir, _, summary = run
    issuer = summary["roles"]["idp"]["url"]
    for pat in summary["pats"]:
        assert pat["mpin_authenticated"] is True
        assert pat["service_suite"].startswith("YAK-BTC") and set(pat["dta_suites"]) == {"dta-a", "dta-b"}
        assert all(suite.startswith("YAK-BTC") for suite in pat["dta_suites"].values())
        # The user the demo approved as: one identity, issuer || sub, for both PATs.
        assert bytes.fromhex(pat["identity"]) == encode_identity(issuer, pat["mpin_sub"])
        path = credential_path(Path(pat["home"]), pat["name"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        credential = MpinCredential.load(path)
        assert {d["txid"] for d in credential.dtas} == {summary["roles"][n]["locator"]["txid"] for n in ("dta-a", "dta-b")}


def test_the_pcaps_hold_the_yak_handshakes(run):
    """The service's pcap: every ServerHello picks TLS_YAK_BTC_WITH_AES_128_GCM_SHA256, the
    ClientHellos carry the PATs' batch txid and the ServerHellos the service's anchor (the Lua
    dissector), and the key log has the client random of each completed handshake."""
    workdir, _, summary = run
    pcaps = summary["pcaps"]
    assert set(pcaps) == {"tbs", "dta-a", "dta-b", "service"}
    for role in ("service", "dta-a", "dta-b"):
        suites = tshark("-r", pcaps[role]["path"], "-Y", "tls.handshake.type == 2", "-T", "fields",
                        "-e", "tls.handshake.ciphersuite").split()
        assert len(suites) >= 2 and set(suites) == {YAK_AES128}, (role, suites)
    service = pcaps["service"]["path"]
    txids = tshark("-r", service, "-X", f"lua_script:{LUA}", "-Y", "milagro.txid", "-T", "fields",
                   "-e", "tls.handshake.type", "-e", "milagro.txid").splitlines()
    seen = {(types.split(",")[0], txid) for types, txid in (line.split("\t") for line in txids)}
    assert seen == {("1", summary["batches"][0]["txid"]), ("2", summary["roles"]["service"]["locator"]["txid"])}
    randoms = set(tshark("-r", service, "-Y", "tls.handshake.type == 1", "-T", "fields",
                         "-e", "tls.handshake.random").split())
    logged = {random.hex() for random in parse_keylog(Path(summary["keylog"]).read_text())}
    assert len(randoms & logged) >= 2


def test_a_demo_whose_tbs_cannot_start_fails_clearly_and_stops_everything(tmp_path):
    workdir = tmp_path / "broken"
    (workdir / "tbs").mkdir(parents=True)
    (workdir / "tbs" / "state.db").write_bytes(b"this is not an SQLite database" * 100)
    done = demo("--pats", 1, "--dir", workdir, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "demo failed: tbs did not start" in done.stderr.replace("\n", " ")
    assert "every process it started is stopped" in done.stderr
    assert processes_mentioning(str(workdir)) == []
