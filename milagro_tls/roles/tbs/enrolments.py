"""The enrolment queue, as the PATs see it (app.py maps each method to one endpoint).

An enrolment is the ECIES-sealed request of enrolment/request.py: the PAT's certificate (naming
this TBS's batch key) and an AES-128 key. Its row is committed before the PAT hears "queued",
so an acknowledged enrolment is never lost; the same certificate again gets the same id (it
is never anchored twice), while the same certificate with another AES key is refused: the key
of the first request stays the only one the instructions are sealed with.

The PAT proves it owns an enrolment id with HMAC-SHA256(aes_key, "poll" ‖ id) (``?mac=``), so
nobody else reads its state or its instructions. Its signature needs no MAC: the TBS verifies
it against the certificate's key before keeping it, and a bad one never replaces a good one.

The AES key is a secret: it is kept AES-256-GCM sealed under a 0600 key file
(HOME/secrets/tbs-at-rest.key), bound to the certificate's digest.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

from ...chain.errors import SourceError
from ...chain.hashes import to_display_hex
from ...chain.proof import AnchorProof
from ...enrolment import (InstructionSet, InstructionTrust, MalformedEnrolment, check_poll_mac, open_enrolment,
                          seal_instructions)
from ...enrolment.instructions import InstructionRevocation
from ...errors import MalformedInput
from ...identity.batch import PendingBatch, SigningResponse
from ...identity.certificate import BirthCertificate
from ...identity.keys import IdentityKey
from ...identity.locator import Locator
from ..activitylog import receipt_leaf
from ..dta.peer import locator_key
from ..store import Store, insert_or_ignore
from . import tables
from .groups import TbsError, ensure_instructions
from .revocations import RevocationLists, SealStatus, is_revoked
from .tables import batches, enrolments, signatures

_AT_REST_AD = b"milagro-tls tbs aes key v1"
_PENDING_CACHE = 16
#: States a PAT's enrolment passes through (tables.py).
QUEUED, BATCHED, ANCHORED, REQUEUED, FAILED = "queued", "batched", "anchored", "requeued", "failed"
WAITING = (QUEUED, REQUEUED)


class AtRestKey:
    """AES-256-GCM over the PATs' AES keys, bound to the certificate digest."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, digest: bytes, aes_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, aes_key, _AT_REST_AD + digest)

    def open(self, digest: bytes, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], _AT_REST_AD + digest)
        except InvalidTag:
            raise TbsError(500, "server_error", "a stored key does not open") from None


class PendingBatches:
    """PendingBatch objects by batch id, parsed once per worker (a batch's JSON never changes
    once written; its signatures live in their own table)."""

    def __init__(self, size: int = _PENDING_CACHE) -> None:
        self._items: OrderedDict[int, PendingBatch] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, batch_id: int, pending_json: str) -> PendingBatch:
        with self._lock:
            if batch_id in self._items:
                self._items.move_to_end(batch_id)
                return self._items[batch_id]
        batch = PendingBatch.from_json(json.loads(pending_json))
        with self._lock:
            self._items[batch_id] = batch
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return batch


class Enrolments:
    def __init__(self, store: Store, *, enrolment_key: coincurve.PrivateKey, at_rest: AtRestKey, batch_key: bytes,
                 network: str, tbs_key: IdentityKey, tbs_name: str, accept: Callable[[PendingBatch, SigningResponse], bool],
                 pending: PendingBatches | None = None, clock: Callable[[], float] = time.time,
                 revocations: RevocationLists | None = None, seals: SealStatus | None = None) -> None:
        """With ``revocations`` and ``seals`` every instruction set carries its revocation
        status (the PAT's own answer, the trust entries' seals; entries with a spent seal are
        left out)."""
        self.store = store
        self.revocations = revocations
        self.seals = seals
        self.enrolment_key = enrolment_key
        self.at_rest = at_rest
        self.batch_key = batch_key
        self.network = network
        self.tbs_key = tbs_key
        self.tbs_name = tbs_name
        self.accept = accept
        self.pending = pending or PendingBatches()
        self.clock = clock

    # --- POST /enrol ------------------------------------------------------------------------
    def enrol(self, blob: bytes) -> dict[str, Any]:
        try:
            request = open_enrolment(self.enrolment_key, blob, batch_key=self.batch_key)
        except MalformedEnrolment as exc:
            raise TbsError(400, "invalid_enrolment", str(exc)) from None
        certificate = request.certificate
        if certificate.network != self.network:
            raise TbsError(400, "invalid_enrolment", f"the certificate is for {certificate.network}, "
                                                     f"this TBS anchors on {self.network}")
        digest = certificate.digest()
        now = self.clock()
        with self.store.begin() as connection:
            inserted = insert_or_ignore(connection, enrolments, {
                "id": secrets.token_hex(16), "digest": digest,
                "certificate": certificate.canonical_bytes().decode(),
                "aes_key": self.at_rest.seal(digest, request.aes_key),
                "group_name": tables.default_group(connection), "state": QUEUED, "attempts": 0,
                "queued_at": now, "created_at": now, "updated_at": now})
            row = connection.execute(select(enrolments.c.id, enrolments.c.state, enrolments.c.aes_key)
                                     .where(enrolments.c.digest == digest)).one()
        if not inserted:
            stored = self.at_rest.open(digest, row.aes_key)
            # compare_digest: the stored key is a secret, whatever the answer reveals.
            if not hmac.compare_digest(stored, request.aes_key):
                raise TbsError(409, "enrolment_exists",
                               "this certificate is enrolled already, with another instructions key")
        return {"enrolment_id": row.id, "status": row.state}

    # --- the PAT's polls --------------------------------------------------------------------
    def _owned(self, connection, enrolment_id: str, mac: str | None):
        if not isinstance(enrolment_id, str) or len(enrolment_id) != 32:
            raise TbsError(404, "unknown_enrolment", "no such enrolment")
        row = connection.execute(select(enrolments).where(enrolments.c.id == enrolment_id)).first()
        if row is None:
            raise TbsError(404, "unknown_enrolment", "no such enrolment")
        aes_key = self.at_rest.open(row.digest, row.aes_key)
        if not mac or not check_poll_mac(aes_key, enrolment_id, mac):
            raise TbsError(403, "invalid_mac", "the mac does not prove this enrolment's key")
        return row, aes_key

    def status(self, enrolment_id: str, mac: str | None) -> dict[str, Any]:
        with self.store.read() as connection:
            row, _ = self._owned(connection, enrolment_id, mac)
            txid = None
            if row.batch_id is not None:
                txid = connection.scalar(select(batches.c.txid).where(batches.c.id == row.batch_id))
        doc = {"status": row.state, "txid": to_display_hex(txid) if txid else None,
               "locator": json.loads(row.locator) if row.locator else None}
        if row.receipt_salt is not None:
            doc["receipt"] = {"period": row.receipt_period, "salt": row.receipt_salt.hex(),
                              "leaf": receipt_leaf(row.receipt_salt, row.digest, row.receipt_period).hex()}
        return doc

    def signing_request(self, enrolment_id: str, mac: str | None) -> dict[str, Any] | None:
        """The SigningRequest JSON for the PAT's slot while its batch collects signatures; None
        while it waits for a batch (HTTP 204); 410 once there is nothing (left) to sign."""
        with self.store.read() as connection:
            row, _ = self._owned(connection, enrolment_id, mac)
            if row.state in WAITING:
                return None
            if row.state == ANCHORED:
                raise TbsError(410, "already_anchored", "this enrolment is anchored: fetch its instructions")
            if row.state == FAILED:
                raise TbsError(410, "enrolment_failed", "this enrolment was given up: enrol a new certificate")
            batch = connection.execute(select(batches.c.state, batches.c.pending)
                                       .where(batches.c.id == row.batch_id)).one()
        if batch.state == "opening":
            return None
        if batch.state != "signing":
            raise TbsError(410, "batch_closed", "this batch takes no more signatures; poll the status")
        return self.pending.get(row.batch_id, batch.pending).request(row.position).to_json()

    def submit_signature(self, enrolment_id: str, doc: Any) -> dict[str, Any]:
        try:
            response = SigningResponse.from_json(doc)
        except MalformedInput as exc:
            raise TbsError(400, "invalid_request", str(exc)) from None
        with self.store.read() as connection:
            row = connection.execute(select(enrolments.c.state, enrolments.c.batch_id, enrolments.c.position)
                                     .where(enrolments.c.id == enrolment_id)).first()
            if row is None:
                raise TbsError(404, "unknown_enrolment", "no such enrolment")
            batch = None
            if row.state == BATCHED:
                batch = connection.execute(select(batches.c.state, batches.c.pending)
                                           .where(batches.c.id == row.batch_id)).one()
        if batch is None or batch.state != "signing":
            raise TbsError(409, "batch_closed", "this enrolment has no batch collecting signatures now")
        if response.position != row.position:
            raise TbsError(400, "invalid_signature", "the response names another position than this PAT's slot")
        pending = self.pending.get(row.batch_id, batch.pending)
        if not self.accept(pending, response):
            raise TbsError(400, "invalid_signature",
                           "the signature does not verify over this batch's sighash under the PAT's key")
        with self.store.begin() as connection:
            # The first good signature stays: a later answer never replaces it.
            insert_or_ignore(connection, signatures, {"batch_id": row.batch_id, "position": row.position,
                                                      "signature": response.signature, "received_at": self.clock()})
            connection.execute(update(enrolments).where(enrolments.c.id == enrolment_id)
                               .values(updated_at=self.clock()))
        return {"status": "accepted", "txid": to_display_hex(pending.txid)}

    # --- instructions -----------------------------------------------------------------------
    def _refuse_revoked(self, connection, row) -> None:
        if is_revoked(connection, row.digest):
            raise TbsError(403, "pat_revoked", "this PAT's certificate is revoked by its TBS: no more instructions")

    def _snapshot(self, connection, row) -> tuple[int, dict, bytes]:
        """In the caller's transaction: the group's newest set (pushed if it never was) and the
        PAT's batch proof. Sealing (which may ask the chain source) runs after it commits."""
        version, body = ensure_instructions(connection, row.group_name)
        proof = connection.scalar(select(batches.c.proof).where(batches.c.id == row.batch_id))
        return version, body, proof

    def _seal(self, row, snapshot: tuple[int, dict, bytes], aes_key: bytes) -> bytes:
        version, body, proof = snapshot
        trust = tuple(InstructionTrust.from_json(entry) for entry in body["trust"])
        revocation = None
        if self.revocations is not None and self.seals is not None:
            try:
                kept, status = self.seals.entries(trust)
            except SourceError as exc:
                raise TbsError(503, "source_unavailable", "the TBS's chain source cannot say whether the trust "
                                                          f"entries' seals are spent now: {type(exc).__name__}") from None
            trust = tuple(kept)
            revocation = InstructionRevocation(self.revocations.answer(row.digest), tuple(status))
        instructions = InstructionSet(
            version=version, tbs=self.tbs_name, group=body["group"], dta_urls=tuple(body["dta_urls"]),
            trust=trust, pat_locator=Locator.from_json(json.loads(row.locator)), pat_proof=AnchorProof.decode(proof),
            issued=int(self.clock()), revocation=revocation)
        return seal_instructions(instructions, self.tbs_key, aes_key)

    def instructions(self, enrolment_id: str, mac: str | None) -> bytes:
        """The newest instruction set of the PAT's group, sealed to it, once it is anchored
        (403 pat_revoked once its certificate is revoked)."""
        with self.store.begin() as connection:
            row, aes_key = self._owned(connection, enrolment_id, mac)
            if row.state != ANCHORED:
                raise TbsError(409, "not_anchored", f"this enrolment is {row.state}: no instructions before "
                                                    "it is anchored")
            self._refuse_revoked(connection, row)
            snapshot = self._snapshot(connection, row)
        return self._seal(row, snapshot, aes_key)

    def pat_instructions(self, peer: Locator, since: Any) -> bytes | None:
        """For an anchored PAT (known by its verified locator): a set newer than ``since``, or
        None (HTTP 204). ``since`` is what the PAT has installed; it is recorded."""
        try:
            since = int(since)
        except (TypeError, ValueError):
            raise TbsError(400, "invalid_request", "since is the installed instruction version (an integer)") from None
        if not 0 <= since < 2**32:
            raise TbsError(400, "invalid_request", "since is out of range")
        with self.store.begin() as connection:
            row = connection.execute(select(enrolments).where(enrolments.c.locator_key == locator_key(peer),
                                                              enrolments.c.state == ANCHORED)).first()
            if row is None:
                raise TbsError(403, "unknown_pat", "no PAT anchored by this TBS has this locator")
            self._refuse_revoked(connection, row)
            if row.installed_version is None or since > row.installed_version:
                connection.execute(update(enrolments).where(enrolments.c.id == row.id)
                                   .values(installed_version=since, updated_at=self.clock()))
            snapshot = self._snapshot(connection, row)
            if snapshot[0] <= since:
                return None
        return self._seal(row, snapshot, self.at_rest.open(row.digest, row.aes_key))


def certificate_of(row) -> BirthCertificate:
    return BirthCertificate.parse(row.certificate.encode())
