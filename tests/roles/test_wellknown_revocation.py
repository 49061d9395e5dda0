"""The metadata's revocation status: the role's seal and whether its chain source says it is
spent (the source's word, cached about 10 s; a failing source gives spent null, never a 500),
before and after ``milagro identity revoke`` spends it; and check_role naming a spent seal as a
difference saying "revoked", by its own source's word or by the role's metadata.

A chain of its own: revoking spends a seal, which nothing on the session's ``world`` may see."""
from __future__ import annotations

import httpx
import pytest
from flask import Flask

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.errors import SourceUnavailable
from milagro_tls.chain.hashes import to_display_hex
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.anchor import SEAL_VOUT
from milagro_tls.identity.revoke import revoke_party
from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.wellknown import (METADATA_PATH, REVOCATION_CACHE_SECONDS, check_role, party_seal,
                                         wellknown_blueprint)

BASE = 1_800_000_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class DeadSource:
    """A chain source that went away."""

    def __init__(self, network) -> None:
        self.network = network
        self.asked = 0

    def tip(self):
        self.asked += 1
        raise SourceUnavailable("connection refused", maybe_sent=False)

    def outspend_unverified(self, txid, vout):
        self.asked += 1
        raise SourceUnavailable("connection refused", maybe_sent=False)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    source = EmbeddedSource.open(tmp_path_factory.mktemp("wk-revocation") / "chain")
    source.mine(110)
    yield source
    source.close()


@pytest.fixture(scope="module")
def role(chain, tmp_path_factory):
    """A D-TA's anchored identity (single anchor: it has a seal) and its verified PeerIdentity."""
    home = RoleHome(tmp_path_factory.mktemp("wk-revocation-role"), "dta", "wk-dta.example")
    party = home.ensure_identity(chain)
    headers = HeaderChain(":memory:", chain.network)
    headers.sync_from(chain)
    identity, proof = resolve_anchor(party.locator, party.certificate, chain, headers)
    return home, party, identity, proof.tx


def client_for(app: Flask) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="https://role.test")


def served(party, source, clock) -> Flask:
    app = Flask("role")
    app.register_blueprint(wellknown_blueprint(party, clock=clock, source=source))
    return app


def test_the_seal_is_the_anchor_output_paying_the_identity_key(role):
    home, party, identity, birth_tx = role
    assert party_seal(party) == identity.seal == (party.anchor_txid, SEAL_VOUT)


def test_metadata_says_unspent_then_spent_after_revoke_and_check_role_names_it(chain, role):
    home, party, identity, birth_tx = role
    clock = Clock(BASE + 10)
    seal = {"txid": to_display_hex(party.anchor_txid), "vout": SEAL_VOUT}
    with client_for(served(party, chain, clock)) as http:
        meta = http.get(METADATA_PATH).json()
        assert meta["revocation"] == {"seal": seal, "spent": False, "spender": None,
                                      "checked_height": chain.tip().height}
        clean = check_role("https://role.test", identity, birth_tx, http, chain, None, now=BASE + 11)
        assert clean.differences == [] and not any("revoked" in w for w in clean.warnings)

        revocation = revoke_party(home.path, party.name, chain)          # `milagro identity revoke`
        assert revocation.seal == identity.seal

        # Within the cache's 10 s the role repeats what its source said last.
        clock.now += REVOCATION_CACHE_SECONDS - 1
        assert http.get(METADATA_PATH).json()["revocation"]["spent"] is False
        clock.now += 2
        meta = http.get(METADATA_PATH).json()
        assert meta["revocation"] == {"seal": seal, "spent": True, "spender": revocation.txid_hex,
                                      "checked_height": chain.tip().height}      # in the mempool: counts at once

        # The client without a source of its own believes the role's metadata ...
        said = check_role("https://role.test", identity, birth_tx, http, now=clock.now + 1)
        assert said.differences == [f"revoked: the seal {seal['txid']}:{SEAL_VOUT} is spent by "
                                    f"{revocation.txid_hex} (the role's own metadata, not SPV)"]
        assert not said.ok
        # ... and with one it asks it.
        asked = check_role("https://role.test", identity, birth_tx, http, chain, None, now=clock.now + 1)
        assert asked.differences == [f"revoked: the seal {seal['txid']}:{SEAL_VOUT} is spent by "
                                     f"{revocation.txid_hex} (the chain source's word, not SPV)"]

        chain.mine(1)
        clock.now += REVOCATION_CACHE_SECONDS + 1
        mined = http.get(METADATA_PATH).json()["revocation"]
        assert mined["spent"] is True and mined["checked_height"] == chain.tip().height

    # A role that reports nothing (no source given) cannot hide it from a client with a source.
    app = Flask("quiet")
    app.register_blueprint(wellknown_blueprint(party, clock=Clock(BASE + 10)))
    with client_for(app) as http:
        assert http.get(METADATA_PATH).json()["revocation"] is None
        quiet = check_role("https://role.test", identity, birth_tx, http, chain, None, now=BASE + 11)
    assert [d.split(":")[0] for d in quiet.differences] == ["revoked"]


def test_a_failing_source_gives_spent_null_not_a_500_and_is_asked_again_after_the_cache(chain, role):
    home, party, identity, birth_tx = role
    dead = DeadSource(chain.network)
    clock = Clock(BASE + 10)
    with client_for(served(party, dead, clock)) as http:
        response = http.get(METADATA_PATH)
        assert response.status_code == 200
        assert response.json()["revocation"] == {"seal": {"txid": to_display_hex(party.anchor_txid), "vout": SEAL_VOUT},
                                                 "spent": None, "spender": None, "checked_height": None}
        asked = dead.asked
        http.get(METADATA_PATH)
        assert dead.asked == asked                        # cached: a dead source is not hammered
        clock.now += REVOCATION_CACHE_SECONDS + 1
        http.get(METADATA_PATH)
        assert dead.asked > asked
        # The client's own dead source is a warning, not a difference.
        check = check_role("https://role.test", identity, birth_tx, http, dead, None, now=clock.now)
    assert check.differences == []
    assert any(w.startswith("the seal's revocation status was not checked (SourceUnavailable") for w in check.warnings)
