"""The roles' Flask apps built in-process, the way their unit tests build them (tests/roles/*/),
for the request-body property tests (test_role_bodies.py): no gunicorn, SQLite stores in a
temporary directory, a fake IdP behind httpx.MockTransport, a fake milagro-tls peer in
``environ["gunicorn.socket"]`` (roles.dta.fakes.FakeSocket), a fixed fake ChainSource for the
chain endpoints and the embedded node behind the Esplora REST routes."""
from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

import coincurve
from flask import Flask
from sqlalchemy import func, select

from milagro_tls.chain.errors import BlockNotFound, TxNotFound, TxRejected
from milagro_tls.chain.hashes import sha256d
from milagro_tls.chain.network import Network
from milagro_tls.chain.source import ChainSource, Tip, TxStatus
from milagro_tls.chain.tbs_endpoints import chain_blueprint
from milagro_tls.chain.tx import parse_tx, txid_of
from milagro_tls.enrolment import seal_enrolment
from milagro_tls.errors import MalformedInput
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.mpin import MasterSecret, MpinServer, combine_g2, issue_server_secret
from milagro_tls.roles.store import open_store

from roles.dta.fakes import FakeSocket, fake_locator
from roles.dta.rig import Clock
from roles.dta.rig import dta_rig as build_dta_rig



def count(store, table) -> int:
    with store.read() as connection:
        return connection.scalar(select(func.count()).select_from(table))


def party_client(app: Flask, locator):
    """A test client whose requests come from ``locator`` over milagro-tls (None: an X.509 peer;
    the string "none": no gunicorn socket at all)."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    if locator != "none":
        client.environ_base["gunicorn.socket"] = FakeSocket(locator)
    return client


# --- the D-TA (as tests/roles/dta/conftest.py's dta_unit) --------------------------------------
def dta_rig(tmp_path):
    from milagro_tls.roles.dta.issuance import add_service

    rig = build_dta_rig(tmp_path, "dta-fuzz")
    add_service(rig.store, fake_locator(3), "svc")
    return rig


# --- the TBS's main port (as tests/roles/tbs/test_batcher.py's rig, without a chain) ------------
def tbs_rig(tmp_path):
    from milagro_tls.roles.tbs import tables
    from milagro_tls.roles.tbs.app import TbsApp, create_app
    from milagro_tls.roles.tbs.enrolments import AtRestKey, Enrolments

    store = open_store(None, tmp_path)
    tables.migrate(store)
    batch_key = coincurve.PrivateKey().public_key.format()[1:]
    enrolment_key = coincurve.PrivateKey()
    enrolments = Enrolments(store, enrolment_key=enrolment_key, at_rest=AtRestKey(os.urandom(32)),
                            batch_key=batch_key, network=Network.REGTEST.label, tbs_key=IdentityKey.generate(),
                            tbs_name="tbs-fuzz", accept=lambda pending, response: False, clock=Clock())
    app = create_app(TbsApp(enrolments, blueprints=(chain_blueprint(FakeSource()),)))
    pat = BatchPat.create(tmp_path / "pats", name="fuzz-pat", batch_key=batch_key, network=Network.REGTEST)
    aes_key = bytes(range(16))
    sealed = seal_enrolment(enrolment_key.public_key.format(), pat.certificate, aes_key)
    enrolled = enrolments.enrol(sealed)["enrolment_id"]
    return SimpleNamespace(app=app, store=store, tables=tables, sealed=sealed, enrolled=enrolled, aes_key=aes_key,
                           enrolment_key=enrolment_key, pat=pat, close=store.close)


# --- the relying service (as tests/roles/service/test_mpin_service.py's service) ------------------
def service_rig(tmp_path):
    from milagro_tls.roles.service import sessions
    from milagro_tls.roles.service.app import ServiceConfig, create_app

    shares = []
    for n in (1, 2):
        master = MasterSecret.create(tmp_path / f"master-{n}.key")
        shares.append(issue_server_secret(master, IdentityKey.generate(), dta=f"dta-{n}", dta_locator=fake_locator(n),
                                          recipient=fake_locator(70)))
    store = open_store(None, tmp_path)
    sessions.migrate(store)
    app = create_app(ServiceConfig(store=store, server=MpinServer(combine_g2(s.point for s in shares)),
                                   dtas=[{"name": "dta-1"}, {"name": "dta-2"}]))
    return SimpleNamespace(app=app, store=store, sessions=sessions, close=store.close)


# --- the IdP (as tests/roles/idp/conftest.py's idp_app) --------------------------------------------
def idp_rig(tmp_path, registration_token=None):
    from milagro_tls.roles.idp import tables
    from milagro_tls.roles.idp.app import create_app
    from milagro_tls.roles.idp.config import IdPConfig
    from milagro_tls.roles.idp.keys import KeyRing

    store = open_store(None, tmp_path)
    tables.migrate(store)
    keys = KeyRing(tmp_path / "keys", token_lifetime=3600).ensure()
    config = IdPConfig(issuer="https://localhost", store=store, keys=keys, secret_key=b"k" * 32,
                       registration_token=registration_token)
    return SimpleNamespace(app=create_app(config), store=store, tables=tables, close=store.close)


# --- a fixed chain for the TBS's chain endpoints -------------------------------------------------
#: One input, one output: what the fake source knows.
RAW_TX = bytes.fromhex("02000000" "01" + "11" * 32 + "00000000" "00" "ffffffff" "01" "e803000000000000" "16"
                       "0014" + "ab" * 20 + "00000000")
KNOWN_TXID = txid_of(parse_tx(RAW_TX))
KNOWN_BLOCK = hashlib.sha256(b"fuzz block").digest()


class FakeSource(ChainSource):
    """Knows one transaction (unconfirmed: proofs are 404) and a short header chain."""
    network = Network.REGTEST

    def __init__(self) -> None:
        self._headers = [bytes([h]) * 80 for h in range(5)]

    def tip(self) -> Tip:
        return Tip(len(self._headers) - 1, sha256d(self._headers[-1]))

    def header(self, height: int) -> bytes:
        if not 0 <= height < len(self._headers):
            raise BlockNotFound(f"no block at {height}")
        return self._headers[height]

    def block(self, block_hash: bytes) -> bytes:
        raise BlockNotFound("no blocks here")

    def transaction(self, txid: bytes, block_hash: bytes | None = None) -> bytes:
        if txid != KNOWN_TXID or block_hash not in (None, KNOWN_BLOCK):
            raise TxNotFound("unknown")
        return RAW_TX

    def tx_status(self, txid: bytes, block_hash: bytes | None = None) -> TxStatus:
        self.transaction(txid, block_hash)
        return TxStatus(txid, None, None)

    def outspend_unverified(self, txid: bytes, vout: int) -> bytes | None:
        if txid != KNOWN_TXID:
            raise TxNotFound("unknown")
        return None

    def broadcast(self, raw_tx: bytes) -> bytes:
        try:
            tx = parse_tx(raw_tx)
        except MalformedInput:
            raise TxRejected("tx-decode-failed") from None
        if not tx.vin:
            raise TxRejected("bad-txns-vin-empty")
        return txid_of(tx)
