"""The roles' shape end to end: a small role (store, home, well-known routes, canary, activity log)
served by gunicorn with two workers sharing one database (a real PostgreSQL, and SQLite in WAL
mode), its periods closed by the workers' background jobs and anchored on the world's chain,
a receipt's inclusion proof checked against the chain, and check_role clean over HTTPS."""
from __future__ import annotations

import hashlib
import signal
import ssl
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from milagro_tls.chain.server import ChainServer
from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.roles.activitylog import verify_log_inclusion
from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.wellknown import INCLUSION_PATH, check_role

from helpers.nodes import LockedNode
from helpers.role_process import run_role

PERIOD = 2

APP = '''
import os

from flask import Flask, jsonify, request

from milagro_tls.chain.spec import open_source
from milagro_tls.identity.rootchain import RootAnchorer
from milagro_tls.roles.activitylog import ActivityLog, PeriodicJobs
from milagro_tls.roles.canary import CanaryKeeper
from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.wellknown import wellknown_blueprint


def create_app(tag, markers, home, name, chain, db, period):
    with open(os.path.join(markers, f"started-{os.getpid()}"), "w") as marker:
        marker.write(tag)
    role = RoleHome(home, "idp", name)
    party = role.party()
    source = open_source(chain)                  # the chain server's RPC: workers never open the directory
    store = role.open_store(db)
    log = ActivityLog(store, period, RootAnchorer(role.path, name, source))
    keeper = CanaryKeeper(store, party.key, name, log)
    jobs = PeriodicJobs(log, canary=keeper, interval=0.2).start()
    app = Flask(__name__)
    app.register_blueprint(wellknown_blueprint(party, canary=keeper, log=log))

    @app.post("/event")
    def event():
        receipt = log.append_receipt(request.get_json()["user"])
        return jsonify({**receipt.to_json(name), "pid": os.getpid()})

    app.milagro_shutdown = jobs.stop
    return app
'''

RUNNER = '''
import json, os
from milagro_tls import Context
from milagro_tls.roles.serving import ServeConfig, chain_service, serve

settings = json.loads(os.environ["ROLE_TEST"])
with chain_service(settings["chain"]):
    context = Context(identity=settings["identity"], home=settings["home"], chain=settings["chain"],
                      headers=":memory:", sync_interval=0.5)
    serve(ServeConfig(app="app:create_app", app_kwargs={
              "tag": "shape", "markers": settings["markers"], "home": settings["home"], "name": settings["identity"],
              "chain": settings["chain"], "db": settings["db"], "period": settings["period"]},
          certfile=settings["certfile"], keyfile=settings["keyfile"], workers=2, threads=4), context)
'''


@pytest.fixture(scope="module")
def shape_role(world, tmp_path_factory):
    home = RoleHome(tmp_path_factory.mktemp("shape-role"), "idp", "shape-idp.example")
    party = home.ensure_identity(world.source)
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, world.headers())
    return home, party, identity, proof.tx


def test_two_gunicorn_workers_share_one_store_and_anchor_its_log(world, shape_role, store_url, tmp_path):
    home, party, identity, birth_tx = shape_role
    chain_dir = Path(world.source.node.datadir)
    cert, key = home.fallback_certificate()
    tls = ssl.create_default_context(cafile=str(cert))
    db = store_url or f"sqlite:///{tmp_path / 'shared.db'}"
    with ChainServer(LockedNode(world.source), chain_dir).start():
        settings = {"chain": f"regtest://{chain_dir}", "home": str(home.path), "identity": party.name,
                    "certfile": str(cert), "keyfile": str(key), "db": db, "period": PERIOD}
        with run_role(tmp_path, settings, APP, RUNNER) as role, \
                httpx.Client(base_url=f"https://localhost:{role.port}", verify=tls, timeout=30) as http:
            users = [f"user{i}" for i in range(24)]
            with ThreadPoolExecutor(8) as pool:
                replies = list(pool.map(lambda user: http.post("/event", json={"user": user}), users))
            assert [r.status_code for r in replies] == [200] * len(users), replies[0].text
            receipts = [r.json() for r in replies]
            # Every receipt is a distinct, acknowledged leaf that the user can recompute.
            assert len({r["leaf"] for r in receipts}) == len(users)
            for user, receipt in zip(users, receipts):
                salt = bytes.fromhex(receipt["salt"])
                assert receipt["issuer"] == party.name
                assert receipt["leaf"] == hashlib.sha256(salt + struct.pack(">H", len(user)) + user.encode()
                                                         + struct.pack(">Q", receipt["period"])).hexdigest()
            # The workers close the periods and anchor them; we mine until every receipt is provable.
            deadline = time.monotonic() + 90
            docs = {}
            while len(docs) < len(receipts):
                assert time.monotonic() < deadline, f"only {len(docs)} receipts anchored: {role.log.read_text()[-3000:]}"
                world.source.mine(1)
                for receipt in receipts:
                    if receipt["leaf"] not in docs:
                        answer = http.get(INCLUSION_PATH, params={"leaf": receipt["leaf"]})
                        assert answer.status_code in (200, 409), answer.text
                        if answer.status_code == 200 and answer.json()["block_hash"] is not None:
                            docs[receipt["leaf"]] = answer.json()
                time.sleep(0.3)
            headers = world.headers()
            for leaf, doc in docs.items():
                verified = verify_log_inclusion(doc, bytes.fromhex(leaf), identity, birth_tx, world.source, headers)
                assert verified.root.hex() == doc["root"]
            check = check_role(f"https://localhost:{role.port}", identity, birth_tx, http, world.source, headers)
            role.process.send_signal(signal.SIGTERM)
            assert role.process.wait(30) == 0, role.log.read_text()[-3000:]
    assert check.differences == [] and check.warnings == []
    assert len({doc["txid"] for doc in docs.values()}) == len({doc["period"] for doc in docs.values()})
    started = sorted((tmp_path / "markers").glob("started-*"))
    assert len(started) == 2                                        # two workers, each built its own app
