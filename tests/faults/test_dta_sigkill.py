"""A D-TA killed with SIGKILL (master and workers) while parties are fetching their shares.

Twelve logins of the world's anchored party alice are finished through the served IdP (a person
walking the code flow over HTTPS). Four threads then ask for the client shares of those logins
over milagro-tls while the D-TA's processes are SIGKILLed after the first answers. The D-TA is
started again on the same home and every login is asked once more. Then:

- nothing acknowledged is lost: every share a party received (HTTP 200) is recorded in the
  D-TA's store (``issued``: the share's digest, for that login) and its receipt's leaf is in the
  activity log;
- nothing is issued twice: each login has at most one client secret and one time permit in the
  store, a login whose shares were acknowledged is answered 409 nonce_used when asked again, and
  the only shares in the store are ones some answer carried or the retry carried (the kill may
  land after the commit and before the answer: that login then has its one issuance on record
  and the party starts a new login);
- the restarted D-TA answers every retry (200 or 409), none times out or fails."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import ssl
import threading
import time

import httpx
import pytest
from sqlalchemy import select

from interop.oidc.person import Person, parse
from milagro_tls.mpin import SignedShare
from milagro_tls.roles.activitylog import leaves as activity_leaves
from milagro_tls.roles.dta import tables
from milagro_tls.roles.store import open_store

from roles.dta.conftest import idp_trust_file, start_dta
from roles.dta.test_served import PartyClient
from roles.idp.served import ServedChain, start_idp

PASSWORD = "correct horse"
LOGINS = 12


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _sigkill_tree(process) -> None:
    """SIGKILL the gunicorn master and its workers (by pid, all at once: no one shuts down cleanly)."""
    pids = _children(process.pid) + [process.pid]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(10)


@pytest.fixture(scope="module")
def chain(world):
    served = ServedChain(world)
    yield served
    served.close()


def test_sigkilled_dta_loses_no_acknowledged_share_and_issues_none_twice(world, chain, tmp_path_factory):
    idp = start_idp(tmp_path_factory.mktemp("idp-sigkill"), chain.chain_dir)
    home = tmp_path_factory.mktemp("dta-sigkill")
    trust = str(idp_trust_file(idp, home.parent / f"{home.name}-idp-trust.json"))
    dta = start_dta(home, chain.chain_dir, [idp.issuer], name="dta-kill", idp_trust=trust)
    clients: list[PartyClient] = []
    try:
        alice = PartyClient(world, dta, "alice")
        clients.append(alice)
        person = Person("alice", PASSWORD, idp.ca_file)
        context = ssl.create_default_context(cafile=idp.ca_file)
        context.load_verify_locations(cafile=dta.ca_file)
        person.http = httpx.Client(verify=context, follow_redirects=False, timeout=30)
        nonces = []
        try:
            for _ in range(LOGINS):
                started = alice.post("/login/start", {"idp": idp.issuer, "method": "code"})
                assert started.status_code == 200, started.text
                page = person.walk(started.json()["browser_url"])
                assert "login-done" in parse(page.text).ids, page.text[-2000:]
                nonces.append(started.json()["login_nonce"])
        finally:
            person.close()

        # Four threads fetch shares; the D-TA is SIGKILLed after the third answer.
        acknowledged: dict[str, dict] = {}
        failed: list[str] = []
        lock = threading.Lock()
        answered = threading.Event()
        workers = [PartyClient(world, dta, "alice") for _ in range(4)]
        clients += workers

        def fetch(index: int):
            nonce = nonces[index]
            client = workers[index % 4]
            try:
                response = client.post("/shares/client", {"login_nonce": nonce})
            except (httpx.HTTPError, OSError) as exc:
                with lock:
                    failed.append(f"{nonce}: {type(exc).__name__}")
                return
            with lock:
                if response.status_code == 200:
                    acknowledged[nonce] = response.json()
                    if len(acknowledged) >= 3:
                        answered.set()
                else:
                    failed.append(f"{nonce}: {response.status_code} {response.text[:200]}")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(fetch, i) for i in range(LOGINS)]
            assert answered.wait(60), (failed, dta.log()[-3000:])
            _sigkill_tree(dta.process)
            killed_at = time.monotonic()
            concurrent.futures.wait(futures, timeout=90)
        assert 3 <= len(acknowledged) < LOGINS, (len(acknowledged), failed)
        assert time.monotonic() - killed_at < 60

        # The D-TA again, on the same home (its store, master secret, identity, registration).
        for client in clients:
            client.close()
        clients.clear()
        # Same port: the D-TA's registration at the IdP names its callback URL.
        dta = start_dta(home, chain.chain_dir, [idp.issuer], name="dta-kill", idp_trust=trust,
                        extra=("--port", str(dta.port)))
        retry = PartyClient(world, dta, "alice")
        clients.append(retry)
        retried: dict[str, dict] = {}
        for nonce in nonces:
            response = retry.post("/shares/client", {"login_nonce": nonce})
            assert response.status_code in (200, 409), response.text
            if nonce in acknowledged:
                assert response.status_code == 409 and response.json()["error"] == "nonce_used"
            elif response.status_code == 200:
                retried[nonce] = response.json()
            else:
                assert response.json()["error"] == "nonce_used"

        import hashlib
        store = open_store(None, home)
        try:
            with store.read() as connection:
                rows = connection.execute(select(tables.issued.c.kind, tables.issued.c.share_sha256,
                                                 tables.issued.c.login_nonce_sha256)).all()
                logged = {bytes(leaf) for (leaf,) in connection.execute(select(activity_leaves.c.leaf))}
        finally:
            store.close()
        by_login: dict[str, list] = {}
        for kind, digest, login in rows:
            by_login.setdefault(login, []).append((kind, digest))
        # Nothing issued twice: one client secret and one time permit per login at most.
        for login, issued in by_login.items():
            assert sorted(kind for kind, _ in issued) == ["client-secret", "time-permit"], (login, issued)
        recorded = {digest for _, digest, _ in rows}
        # Nothing acknowledged lost: every share an answer carried is on record for its login.
        delivered = {**acknowledged, **retried}
        for nonce, doc in delivered.items():
            login = hashlib.sha256(nonce.encode()).hexdigest()
            cs = SignedShare.from_json(doc["client_secret"]).digest().hex()
            tp = SignedShare.from_json(doc["time_permit"]).digest().hex()
            assert sorted(d for _, d in by_login[login]) == sorted([cs, tp]), nonce
            assert cs in recorded and tp in recorded
            assert bytes.fromhex(doc["receipt"]["leaf"]) in logged, nonce          # its receipt is in the log
        # Logins with shares on record but never delivered: the kill fell between commit and answer.
        undelivered = set(by_login) - {hashlib.sha256(n.encode()).hexdigest() for n in delivered}
        assert len(by_login) == len(delivered) + len(undelivered) <= LOGINS
        print(f"acknowledged before the kill: {len(acknowledged)}, issued on retry: {len(retried)}, "
              f"committed but unanswered: {len(undelivered)}, failed in flight: {len(failed)}")
    finally:
        for client in clients:
            client.close()
        dta.stop()
        idp.stop()
