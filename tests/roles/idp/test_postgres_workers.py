"""``milagro idp serve --workers 2 --db postgresql://...``: two gunicorn workers sharing one
PostgreSQL, with every request's worker known.

The IdP names no worker in its answers, so the test finds out itself, from the kernel: the
client's end of a keep-alive connection has a local port; /proc/net/tcp gives the socket inode
of the server's end (local port = the IdP's, remote port = ours), and the gunicorn worker whose
/proc/PID/fd holds that inode is the one serving the connection. The master's
``/proc/PID/task/PID/children`` lists the workers. With a keep-alive connection to each worker,
the test sends each request where it wants it and checks, after every answer, who answered.
"""
from __future__ import annotations

import http.cookiejar
import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from milagro_tls.chain.verify import resolve_anchor
from milagro_tls.identity.party import Party
from milagro_tls.roles.activitylog import receipt_leaf, verify_log_inclusion
from milagro_tls.roles.wellknown import INCLUSION_PATH

from .flows import REDIRECT_URI, authorize, authorize_params, exchange, location, login, pkce_pair, query_of
from .served import ServedChain, start_idp

PERIOD = 2                     # activity-log period, seconds: short, so the test sees anchored roots
#: Re-open a worker's connection when idle this long: gunicorn closes keep-alive connections
#: after 5 s, and the client would then reconnect to whichever worker accepts.
IDLE_LIMIT = 3.0


# --- which process serves a connection -------------------------------------------------------
def _server_socket_inode(server_port: int, client_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                local_port, remote_port = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                if (local_port, remote_port) == (server_port, client_port):
                    return int(fields[9])
    return None


def worker_pids(master: int) -> set[int]:
    with open(f"/proc/{master}/task/{master}/children") as children:
        return {int(pid) for pid in children.read().split()}


def _holder(inode: int, pids: set[int]) -> int | None:
    wanted = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return pid
            except FileNotFoundError:
                continue
    return None


class Workers:
    """One keep-alive HTTPS connection (an httpx.Client limited to one) per gunicorn worker,
    all sharing one cookie jar (one browser), and the record of who answered what."""

    def __init__(self, idp) -> None:
        self.idp = idp
        self.master = idp.announced["pid"]
        self.tls = ssl.create_default_context(cafile=idp.ca_file)
        self.jar = http.cookiejar.CookieJar()          # httpx uses a CookieJar as given, not a copy
        self.clients: dict[int, httpx.Client] = {}
        self.last_used: dict[int, float] = {}
        self.served: list[tuple[str, str, int]] = []   # (method, path, worker pid)
        self.lock = threading.Lock()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.idp.issuer, verify=self.tls, cookies=self.jar, timeout=30,
                            follow_redirects=False, limits=httpx.Limits(max_connections=1))

    def served_by(self, response: httpx.Response) -> int:
        """The worker pid holding the server's end of the connection this response came on."""
        client_port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        inode = _server_socket_inode(self.idp.port, client_port)
        assert inode is not None, f"no server socket for client port {client_port}"
        pid = _holder(inode, worker_pids(self.master))
        assert pid is not None, f"no worker of {self.master} holds socket {inode}"
        return pid

    def connect(self, want: int = 2, attempts: int = 200) -> list[int]:
        """Open connections until ``want`` workers each have a fresh one; returns their pids.
        Which worker accepts is the kernel's choice: one busy for a while (its log job anchoring
        a period) leaves every connection to the other, so a miss waits a little and retries."""
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.05)
            fresh = [pid for pid, used in self.last_used.items() if time.monotonic() - used < IDLE_LIMIT]
            if len(fresh) >= want:
                return sorted(fresh)
            client = self._client()
            pid = self.served_by(client.get("/jwks"))
            if pid in fresh:
                client.close()
                continue
            old = self.clients.pop(pid, None)
            if old is not None:
                old.close()
            self.clients[pid], self.last_used[pid] = client, time.monotonic()
        raise AssertionError(f"{attempts} connections reached only workers {sorted(self.clients)} of "
                             f"{sorted(worker_pids(self.master))}")

    def request(self, pid: int, method: str, url: str, **kwargs) -> httpx.Response:
        if time.monotonic() - self.last_used.get(pid, 0) >= IDLE_LIMIT:
            self.connect()
        response = self.clients[pid].request(method, url, **kwargs)
        served = self.served_by(response)
        assert served == pid, f"{method} {url} went to worker {served}, not {pid}"
        with self.lock:
            self.last_used[pid] = time.monotonic()
            self.served.append((method, url.split("?")[0], served))
        return response

    def on(self, pid: int) -> "OnWorker":
        return OnWorker(self, [pid])

    def alternating(self, first: int, second: int) -> "OnWorker":
        return OnWorker(self, [first, second])

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


class OnWorker:
    """What the flow helpers call .get/.post on: each request goes to the next worker of the
    cycle (one worker, or two alternating)."""

    def __init__(self, workers: Workers, cycle: list[int]) -> None:
        self.workers, self.cycle, self.turn = workers, cycle, 0

    def _next(self) -> int:
        pid = self.cycle[self.turn % len(self.cycle)]
        self.turn += 1
        return pid

    def get(self, url, **kwargs):
        return self.workers.request(self._next(), "GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.workers.request(self._next(), "POST", url, **kwargs)


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# --- the test --------------------------------------------------------------------------------
def test_two_gunicorn_workers_on_postgresql(world, tmp_path, postgres_database):
    chain = ServedChain(world)
    try:
        idp = start_idp(tmp_path / "idp", chain.chain_dir, workers=2, db=postgres_database,
                        extra=("--period", str(PERIOD)))
        workers = Workers(idp)
        try:
            _exercise(world, idp, workers)
        finally:
            workers.close()
            idp.stop()
    finally:
        chain.close()
    assert idp.process.returncode == 0, idp.log()[-3000:]


def _exercise(world, idp, workers: Workers) -> None:
    a, b = workers.connect()
    assert {a, b} == worker_pids(idp.announced["pid"])           # exactly two workers, both reached
    booted = idp.log()
    assert f"Booting worker with pid: {a}" in booted and f"Booting worker with pid: {b}" in booted

    client = workers.on(a).post("/register", json={"client_name": "Two Workers", "redirect_uris": [REDIRECT_URI],
                                                   "grant_types": ["authorization_code", "refresh_token"]})
    assert client.status_code == 201, client.text
    client = client.json()
    assert workers.on(b).get("/.well-known/openid-configuration").json()["issuer"] == idp.issuer

    # Code flows whose steps alternate between the workers: the session cookie, the consent
    # and the code written by one worker are read by the other.
    logins: list[int] = []                     # the worker of each login, in order (receipts are too)
    sub = None
    for flow in range(4):
        workers.jar.clear()                    # a new browser session: this flow logs in
        first, second = (a, b) if flow % 2 == 0 else (b, a)
        verifier, challenge = pkce_pair()
        before = len(workers.served)
        response = authorize(workers.alternating(first, second), authorize_params(client["client_id"], challenge))
        assert response.status_code == 302 and location(response).startswith(REDIRECT_URI), response.text
        steps = workers.served[before:]
        assert {pid for _, _, pid in steps} == {a, b}, steps
        logins += [pid for method, path, pid in steps if (method, path) == ("POST", "/login")]
        # The code comes from `first`'s side of the cycle; it is redeemed on the other worker.
        issued_on = steps[-1][2]
        redeemer = b if issued_on == a else a
        tokens = exchange(workers.on(redeemer), query_of(location(response))["code"], verifier,
                          client["client_id"], client["client_secret"])
        assert tokens.status_code == 200, tokens.text
        tokens = tokens.json()
        # Tokens issued by one worker are accepted by the other.
        info = workers.on(issued_on).get("/userinfo", headers=_bearer(tokens["access_token"]))
        assert info.status_code == 200 and info.json()["preferred_username"] == "alice", info.text
        sub = info.json()["sub"]
        refreshed = workers.on(issued_on).post("/token", auth=(client["client_id"], client["client_secret"]),
                                               data={"grant_type": "refresh_token",
                                                     "refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        renewed = workers.on(redeemer).get("/userinfo", headers=_bearer(refreshed.json()["access_token"]))
        assert renewed.status_code == 200, renewed.text
        # Rotation across workers: the first refresh token, used again on the other worker, is refused.
        again = workers.on(redeemer).post("/token", auth=(client["client_id"], client["client_secret"]),
                                          data={"grant_type": "refresh_token",
                                                "refresh_token": tokens["refresh_token"]})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
    assert sorted(logins) == sorted([a, b, a, b])

    # A code redeemed by both workers at the same moment: exactly one gets tokens.
    for _ in range(3):
        verifier, challenge = pkce_pair()
        response = authorize(workers.on(a), authorize_params(client["client_id"], challenge))
        assert response.status_code == 302, response.text
        code = query_of(location(response))["code"]
        workers.connect()                      # both connections fresh before the threads use them
        start = threading.Barrier(2)

        def redeem(pid: int) -> httpx.Response:
            start.wait()
            return exchange(workers.on(pid), code, verifier, client["client_id"], client["client_secret"])

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(redeem, (a, b)))
        assert sorted(r.status_code for r in answers) == [200, 400], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 400)
        assert refused.json()["error"] == "invalid_grant", refused.text

    # Receipts: the login on each worker appended a leaf to the one shared log.
    receipts = workers.on(a).get("/milagro/receipts").json()
    assert len(receipts) == len(logins)
    by_worker = {a: [], b: []}
    for pid, receipt in zip(logins, receipts):
        leaf = bytes.fromhex(receipt["leaf"])
        assert receipt_leaf(bytes.fromhex(receipt["salt"]), sub, receipt["period"]) == leaf
        by_worker[pid].append(receipt)
    shared = {r["period"] for r in by_worker[a]} & {r["period"] for r in by_worker[b]}
    for _ in range(5):                         # the flows' logins straddled period boundaries: log in on both again
        if shared:
            break
        found = []
        for pid in (a, b):
            workers.jar.clear()
            assert login(workers.on(pid)).status_code == 302
            found.append(workers.on(pid).get("/milagro/receipts").json()[-1])
        by_worker[a].append(found[0])
        by_worker[b].append(found[1])
        if found[0]["period"] == found[1]["period"]:
            shared = {found[0]["period"]}
    assert shared, "no period with a login on each worker"

    # Wait for every receipt's period to be anchored and mined (either worker's job anchors it),
    # asking both workers each time; they must give the same document.
    pending = {r["leaf"] for rs in by_worker.values() for r in rs}
    docs: dict[str, dict] = {}
    deadline = time.monotonic() + 45
    while pending:
        assert time.monotonic() < deadline, f"not anchored: {sorted(pending)}\n{idp.log()[-3000:]}"
        world.source.mine(1)
        time.sleep(0.5)
        workers.connect()
        for leaf in sorted(pending):
            answers = [workers.on(pid).get(INCLUSION_PATH, params={"leaf": leaf}) for pid in (a, b)]
            statuses = [r.status_code for r in answers]
            assert set(statuses) <= {200, 409}, [r.text for r in answers]
            if statuses == [200, 200] and all(r.json()["block_hash"] for r in answers):
                assert answers[0].json() == answers[1].json()
                docs[leaf] = answers[0].json()
                pending.discard(leaf)

    party = Party.load(idp.home, "idp")
    headers = world.headers()
    identity, proof = resolve_anchor(party.locator, party.certificate, world.source, headers)
    for pid, receipts_of in by_worker.items():
        for receipt in receipts_of:
            doc = docs[receipt["leaf"]]
            assert doc["period"] == receipt["period"]
            verified = verify_log_inclusion(doc, bytes.fromhex(receipt["leaf"]), identity, proof.tx, world.source,
                                            headers)
            assert verified.period == receipt["period"]
    # One root per period, whichever worker logged the leaf: both workers' receipts of a shared
    # period are leaves of the same anchored tree.
    for period in shared:
        roots = {(docs[r["leaf"]]["root"], docs[r["leaf"]]["txid"]) for rs in by_worker.values() for r in rs
                 if r["period"] == period}
        assert len(roots) == 1, roots
    assert len({d["txid"] for d in docs.values()}) == len({d["period"] for d in docs.values()})
