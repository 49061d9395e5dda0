"""A TBS subprocess (``milagro tbs serve``, helper M1's role) for the PAT's tests, against the
world's chain served on loopback. Its default group names two of the world's parties, so the
first instructions carry trust entries the PAT must verify."""
from __future__ import annotations

import json

import pytest

from milagro_tls.chain.hashes import sha256d, to_display_hex
from milagro_tls.identity.locator import Locator

from ..idp.served import ServedChain
from ..tbs.conftest import start_tbs

#: What the PAT tests' device group trusts (world party, pinned name, role).
GROUP_TRUST = [("echo.example", "dta.echo", "dta"), ("idp.example", "idp.main", "idp")]
GROUP_DTAS = ["https://dta-one.example:8443"]


@pytest.fixture(scope="module")
def pat_chain(world):
    chain = ServedChain(world)
    yield chain
    chain.close()


@pytest.fixture(scope="module")
def tbs(world, pat_chain, tmp_path_factory):
    """``milagro tbs serve`` with a default group "devices" (GROUP_DTAS, GROUP_TRUST)."""
    home = tmp_path_factory.mktemp("pat-tbs")
    process = start_tbs(home, pat_chain.chain_dir, name="tbs-pat", batch_wait=8, gather=0.5)
    try:
        files = []
        for party, name, role in GROUP_TRUST:
            entry = world.parties[party]
            path = home / f"{name}.json"
            path.write_text(json.dumps({**entry.trust_entry(roles=[role]), "name": name,
                                        "certificate": entry.certificate.canonical_bytes().decode()}))
            files += ["--trust", str(path)]
        dtas = [arg for url in GROUP_DTAS for arg in ("--dta", url)]
        added = process.milagro("admin", "group", "add", "--name", "devices", *dtas, *files,
                                "--chain", f"regtest://{pat_chain.chain_dir}")
        assert added.returncode == 0, added.stderr
        assert process.milagro("admin", "group", "default", "devices").returncode == 0
        yield process
    finally:
        process.stop()


def tbs_address(tbs) -> str:
    return f"127.0.0.1:{tbs.port}"


def checkpoint_below(world, tbs) -> tuple[int, str]:
    """(HEIGHT, "HEIGHT:HASH") of a block below the TBS's anchor and those of the parties its
    group trusts: what a device ships with (a PAT verifies nothing anchored below it)."""
    anchors = [Locator.from_json(tbs.locator).txid] + [world.parties[p].locator.txid for p, _, _ in GROUP_TRUST]
    height = min(world.source.tx_status(txid).height for txid in anchors) - 1
    return height, f"{height}:{to_display_hex(sha256d(world.source.header(height)))}"
