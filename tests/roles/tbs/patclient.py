"""A PAT played from the test side, to drive the TBS's endpoints one by one (the real PAT is
milagro_tls.roles.pat). It keeps a BatchPat in a temporary home, seals its enrolment to the
TBS's enrolment key (read from the TBS's certificate), and speaks milagro-tls to the TBS:
anonymously until it is anchored, then with its batch-anchored identity."""
from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from milagro_tls.context import Context
from milagro_tls.enrolment import enrolment_key_of, poll_mac, seal_enrolment
from milagro_tls.identity.batch import SigningRequest
from milagro_tls.identity.batchpat import BatchPat
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.roles.pat.flow import refused_as_revoked
from milagro_tls.trust import TrustEntry, TrustStore

SNI = "tbs.pinned"


class PatClient:
    def __init__(self, world, tbs, home: Path, name: str) -> None:
        self.world, self.tbs = world, tbs
        self.tbs_certificate = tbs.party().certificate
        self.pat = BatchPat.create(home, name=name, batch_key=self.tbs_certificate.batch_key,
                                   network=world.source.network)
        self.aes_key = os.urandom(16)
        self.trust = TrustStore([TrustEntry.from_json(tbs.trust_entry(SNI))])
        self.context = Context(trust=self.trust, chain=world.source, headers=":memory:")
        self.http = httpx.Client(base_url=tbs.base_url, verify=self.context, timeout=60)
        self.enrolment_id: str | None = None
        self._anchored: tuple[Context, httpx.Client] | None = None

    # --- requests -------------------------------------------------------------------------
    def get(self, path: str, **params) -> httpx.Response:
        return self.http.get(path, params=params, extensions={"sni_hostname": SNI})

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.http.post(path, extensions={"sni_hostname": SNI}, **kwargs)

    def sealed(self, aes_key: bytes | None = None) -> bytes:
        return seal_enrolment(enrolment_key_of(self.tbs_certificate), self.pat.certificate, aes_key or self.aes_key)

    def enrol(self, blob: bytes | None = None) -> httpx.Response:
        response = self.post("/enrol", content=self.sealed() if blob is None else blob,
                             headers={"Content-Type": "application/octet-stream"})
        if response.status_code == 202 and self.enrolment_id is None:
            self.enrolment_id = response.json()["enrolment_id"]
        return response

    @property
    def mac(self) -> str:
        return poll_mac(self.aes_key, self.enrolment_id)

    def status(self, mac: str | None = None) -> httpx.Response:
        return self.get(f"/enrolments/{self.enrolment_id}/status", mac=mac or self.mac)

    def signing_request(self) -> httpx.Response:
        return self.get(f"/enrolments/{self.enrolment_id}/signing-request", mac=self.mac)

    def wait_signing_request(self, timeout: float = 60, *, other_than: bytes | None = None) -> SigningRequest:
        deadline = time.monotonic() + timeout
        while True:
            response = self.signing_request()
            if response.status_code == 200:
                request = SigningRequest.from_json(response.json())
                if other_than is None or request.txid != other_than:
                    return request
            else:
                assert response.status_code in (204, 410), (response.status_code, response.text)
            assert time.monotonic() < deadline, f"no signing request for {self.pat.name}: {response.status_code}"
            time.sleep(0.3)

    def submit(self, doc: dict) -> httpx.Response:
        return self.post(f"/enrolments/{self.enrolment_id}/signature", json=doc)

    def sign(self, request: SigningRequest) -> httpx.Response:
        return self.submit(self.pat.sign(request).to_json())

    def wait_status(self, wanted: str, timeout: float = 60, *, mine: bool = False) -> dict:
        """Poll until the status is ``wanted``; with ``mine``, a block is mined between polls."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.status().json()
            if doc["status"] == wanted:
                return doc
            assert time.monotonic() < deadline, f"{self.pat.name} is still {doc}"
            if mine:
                self.world.source.mine(1)
            time.sleep(0.5)

    def instructions(self, mac: str | None = None) -> httpx.Response:
        return self.get(f"/enrolments/{self.enrolment_id}/instructions", mac=mac or self.mac)

    # --- once anchored ---------------------------------------------------------------------
    def anchored_http(self, *, fresh: bool = False) -> httpx.Client:
        """A client speaking milagro-tls with the PAT's batch-anchored identity; ``fresh``: a
        new one (a new handshake: a kept-alive connection is not checked again)."""
        if fresh and self._anchored is not None:
            self._anchored[1].close()
            self._anchored[0].close()
            self._anchored = None
        if self._anchored is None:
            self.pat.confirm(self.world.source)
            identity = LocalIdentity.from_batch_pat(self.pat, self.world.source)
            context = Context(identity=identity, trust=self.trust, chain=self.world.source, headers=":memory:")
            self._anchored = context, httpx.Client(base_url=self.tbs.base_url, verify=context, timeout=60)
        return self._anchored[1]

    def pat_instructions(self, since: int, *, timeout: float = 30, fresh: bool = False) -> httpx.Response:
        """GET /pat/instructions with the anchored identity. A connect is retried: the TBS's
        header sync may not have seen the block that anchored the PAT yet; a handshake the TBS
        refused as revoked (certificate_revoked) is not, and raises."""
        deadline = time.monotonic() + timeout
        http = self.anchored_http(fresh=fresh)
        while True:
            try:
                return http.get("/pat/instructions", params={"since": since}, extensions={"sni_hostname": SNI})
            except httpx.ConnectError as exc:
                if refused_as_revoked(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        self.http.close()
        self.context.close()
        if self._anchored is not None:
            self._anchored[1].close()
            self._anchored[0].close()


def enrol_and_sign(pats: list[PatClient], *, timeout: float = 60) -> bytes:
    """Every PAT enrols, gets its signing request and signs; all in one batch. Returns its txid."""
    for pat in pats:
        assert pat.enrol().status_code == 202
    txids = set()
    for pat in pats:
        request = pat.wait_signing_request(timeout)
        assert pat.sign(request).status_code == 200
        txids.add(request.txid)
    assert len(txids) == 1, "the PATs were put in one batch"
    return txids.pop()


def wait_anchored_list(tbs, number: int, timeout: float = 60):
    """The tbs_revocation_lists row of list ``number`` once the TBS's worker has anchored
    (sent) it, read from the TBS's store."""
    from sqlalchemy import select

    from milagro_tls.roles.tbs.tables import revocation_lists
    store = tbs.store()
    deadline = time.monotonic() + timeout
    try:
        while True:
            with store.read() as connection:
                row = connection.execute(select(revocation_lists)
                                         .where(revocation_lists.c.number == number)).first()
            if row is not None and row.state == "anchored":
                return row
            assert time.monotonic() < deadline, f"revocation list {number} not anchored: {row}"
            time.sleep(0.2)
    finally:
        store.close()
