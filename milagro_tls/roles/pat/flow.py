"""The PAT's three operations: enrol, update, connect (library functions; cli.py prints).

enrol, in order (each step is recorded in the home, so an interrupted enrol resumes):
 1. headers: a HeaderChain from the shipped checkpoint (HEIGHT:HASH; genesis without one),
    synced through the TBS's chain endpoints (tbs://). Headers prove themselves by proof of
    work; they are the only thing taken from the TBS before step 2.
 2. the TBS: its certificate from its normative URL, its anchor (the shipped locator) verified
    against those headers; it must be a "tbs" naming a batch key and an enrolment key.
 3. the PAT's key and certificate (naming the TBS's batch key) and its AES-128 key, both 0600.
 4. the enrolment, ECIES-sealed to the TBS's enrolment key, POSTed over milagro-tls with the
    TBS pinned by its verified locator (the PAT is anonymous: it has no anchor yet).
 5. poll (with the MAC of the AES key): sign the signing request of our slot (BatchPat.sign
    checks leaf, key, position, batch key and our digest in the root first), until anchored.
 6. confirm: our slot's locator from the batch proof the TBS serves (no block download).
 7. the instructions: AES-GCM with our key, signed by the TBS's anchored key, version above
    the installed one; every trust entry and our own anchor verified against our headers;
    the entries installed in the trust store (origin tbs), next to the pinned TBS.

update: the same step 7 over milagro-tls with the PAT's batch-anchored identity (GET
/pat/instructions?since=V). connect: one HTTPS request over milagro-tls to a peer the trust
store pins, with the PAT's identity; a handshake refused with certificate_revoked ends in
PatRevoked when the TBS confirms it (see below).

Revocation (issue 18): a set carries the TBS's answer for the PAT's own certificate digest.
"Revoked" is the TBS's word and ends the PAT (PatRevoked; the CLI prints {"revoked": true, ...}
and exits 3); "not revoked" is a non-membership proof that must hold against the newest link of
the TBS's 0x04 revocation-list chain, which the PAT walks through its tbs:// source
(chain.revocation_list; a proof against an older list is re-asked once, then refused). Trust
entries whose seal the TBS's source says is spent are not installed. A TBS refusing the PAT
``pat_revoked`` is asked for the PAT's status (GET /chain/revocation/<digest>) before the PAT
reports itself revoked. So is a TBS (or any peer) refusing the PAT's milagro-tls handshake
with alert certificate_revoked (44): the TBS refuses its own revoked PATs in the handshake
(roles.tbs.revocations.OwnPatRevocations), and such a refusal is not retried.
"""
from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import httpx
from tlslite.constants import AlertDescription

from ...chain.errors import SourceError, VerificationError
from ...chain.hashes import from_display_hex, to_display_hex
from ...chain.network import Network
from ...chain.proof import fetch_anchor_proof
from ...chain.revocation_list import RevocationAnswer, RevocationListStale, TbsRevocations, check_not_revoked_in_list
from ...chain.tbs_source import TbsSource, checkpoint_from_source
from ...chain.verify import resolve_anchor, verify_anchor
from ...context import Context
from ...enrolment import (InstructionEntryInvalid, InstructionSet, enrolment_key_of, open_instructions,
                          poll_mac, seal_enrolment, verify_instruction_entries)
from ...errors import MalformedInput, MilagroError
from ...identity.batch import SigningRequest
from ...identity.batchpat import BatchPat
from ...identity.certificate import MAX_CERTIFICATE_SIZE, BirthCertificate
from ...identity.local import LocalIdentity
from ...identity.locator import Locator
from ...identity.party import AnchorNotMined
from ...trust import TrustEntry, TrustOrigin, TrustStore
from .state import PatHome, PatState, parse_checkpoint

log = logging.getLogger(__name__)

BIRTH_CERTIFICATE_PATH = "/.well-known/milagro/birth-certificate"
DEFAULT_MIN_CONFIRMATIONS = 6
TBS_ROLE = "tbs"
#: A handshake a peer refuses because our fresh anchor is not in its headers yet succeeds once
#: it has synced (it does so on demand): a failed connect, where nothing was delivered, is retried.
CONNECT_ATTEMPTS = 5
CONNECT_RETRY_DELAY = 1.0


def refused_as_revoked(error: BaseException) -> bool:
    """Whether ``error`` (an httpx error, or any exception) is, or was caused by, the peer's
    fatal alert certificate_revoked in a milagro-tls handshake (adapters.errors.MilagroSSLError
    with ``alert_sent`` False: the peer sent it)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ssl.SSLError) and getattr(error, "alert", None) == AlertDescription.certificate_revoked \
                and getattr(error, "alert_sent", None) is False:
            return True
        error = error.__cause__ or error.__context__
    return False


def _send(http: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response:
    """One request, retrying only a failure to connect (the handshake), never a sent request,
    nor a handshake the peer refused as revoked (that will not pass on a retry)."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return http.request(method, url, **kwargs)
        except httpx.ConnectError as exc:
            if attempt == CONNECT_ATTEMPTS or refused_as_revoked(exc):
                raise
            time.sleep(CONNECT_RETRY_DELAY)
    raise AssertionError("unreachable")


class PatError(MilagroError):
    """The PAT could not complete an operation (the message says which step and why)."""


class PatRefused(PatError):
    """The TBS (or a peer) refused a request: ``status`` and the JSON ``error`` it sent."""

    def __init__(self, what: str, response: httpx.Response) -> None:
        self.status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        self.error = body.get("error") if isinstance(body, dict) else None
        detail = body.get("error_description") if isinstance(body, dict) else response.text[:200]
        super().__init__(f"{what}: HTTP {self.status} {self.error or ''} {detail or ''}".rstrip())


class PatTimeout(PatError):
    """A step did not finish within the time given."""


class PatRevoked(PatError):
    """The PAT's TBS says its certificate is revoked (the TBS's word: it can only deny its own
    PATs). The PAT gets no more instructions."""

    def __init__(self, name: str, digest: bytes, tbs: str) -> None:
        self.name, self.digest, self.tbs = name, digest, tbs
        super().__init__(f"PAT {name!r} (certificate {digest.hex()}) is revoked by its TBS {tbs!r}")

    def to_json(self) -> dict:
        return {"revoked": True, "name": self.name, "certificate_digest": self.digest.hex(), "tbs": self.tbs}


@dataclass(frozen=True)
class EnrolResult:
    name: str
    locator: Locator
    version: int
    group: str
    dta_urls: tuple[str, ...]
    trust: tuple[TrustEntry, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "locator": self.locator.to_json(), "version": self.version,
                "group": self.group, "dta_urls": list(self.dta_urls), "trust": [e.to_json() for e in self.trust]}


def _base_url(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the TBS is HOST:PORT, not {address!r}")
    return f"https://{host}:{port}"


class _Session:
    """What one operation holds open: the tbs:// source, the header chain, a milagro-tls client."""

    def __init__(self, home: PatHome, state: PatState, *, timeout: float = 30.0) -> None:
        self.home, self.state = home, state
        self.base_url = _base_url(state.tbs)
        self.network = Network.from_label(state.network)
        self.source = TbsSource(self.base_url, network=self.network, timeout=timeout)
        self.contexts: list[Context] = []
        self.clients: list[httpx.Client] = []
        try:
            self.headers = self._open_headers()
        except BaseException:
            self.source.close()
            raise

    def _open_headers(self):
        if self.home.has_headers:
            return self.home.headers(self.network)
        checkpoint = None
        if self.state.checkpoint is not None:
            checkpoint = checkpoint_from_source(self.source, self.state.checkpoint["height"],
                                                from_display_hex(self.state.checkpoint["hash"]))
        return self.home.headers(self.network, checkpoint)

    def sync(self) -> int:
        return self.headers.sync_from(self.source)

    def client(self, trust: TrustStore, *, identity: LocalIdentity | None = None,
               min_confirmations: int, timeout: float = 60.0) -> httpx.Client:
        # No revocation check of the TBS through this source: the source *is* the TBS, whose word
        # about its own seal proves nothing, and asking it in the middle of a handshake with it
        # takes a second worker thread of the same server for each PAT (under a burst of
        # enrolments every thread waits on another and each handshake fails after the timeout).
        context = Context(identity=identity, trust=trust, chain=self.source, headers=self.headers,
                          min_confirmations=min_confirmations, check_revocation=False)
        self.contexts.append(context)
        http = httpx.Client(base_url=self.base_url, verify=context, timeout=timeout, follow_redirects=False)
        self.clients.append(http)
        return http

    def close(self) -> None:
        for http in self.clients:
            http.close()
        for context in self.contexts:
            context.close()
        self.headers.close()
        self.source.close()


# --- the TBS ---------------------------------------------------------------------------------

def _fetch_tbs_certificate(base_url: str, timeout: float) -> BirthCertificate:
    """The certificate at the TBS's normative URL, over HTTPS *without* verification: it is
    trusted only once its anchor verifies against our headers (verify_tbs)."""
    try:
        with httpx.Client(verify=False, timeout=timeout, follow_redirects=False) as http:
            with http.stream("GET", base_url + BIRTH_CERTIFICATE_PATH) as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_CERTIFICATE_SIZE:
                        raise PatError(f"the TBS's certificate exceeds {MAX_CERTIFICATE_SIZE} bytes")
                if response.status_code != 200:
                    raise PatError(f"the TBS's certificate: HTTP {response.status_code}")
    except httpx.HTTPError as exc:
        raise PatError(f"the TBS at {base_url} cannot be reached: {type(exc).__name__}: {exc}") from None
    try:
        return BirthCertificate.parse(body)
    except MalformedInput as exc:
        raise PatError(f"the TBS's certificate: {exc}") from None


def verify_tbs(session: _Session, *, min_confirmations: int, timeout: float = 30.0) -> BirthCertificate:
    """The TBS's certificate, its anchor at the shipped locator verified against our headers,
    and its role data usable (batch key, enrolment key). Kept in the home once verified."""
    known = session.home.tbs_certificate()
    certificate = known or _fetch_tbs_certificate(session.base_url, timeout)
    try:
        resolve_anchor(session.state.locator, certificate, session.source, session.headers,
                       min_confirmations=min_confirmations)
    except VerificationError as exc:
        raise PatError(f"the TBS's anchor does not verify against our headers: {type(exc).__name__}: {exc}") from None
    if certificate.role != TBS_ROLE or certificate.batch_key is None:
        raise PatError(f"the anchored certificate at the TBS's locator is a {certificate.role!r} "
                       "naming no batch key, not a TBS")
    try:
        enrolment_key_of(certificate)
    except MalformedInput as exc:
        raise PatError(f"the TBS's certificate names no usable enrolment key: {exc}") from None
    if known is None:
        session.home.save_tbs_certificate(certificate)
    return certificate


def _tbs_entry(state: PatState, certificate: BirthCertificate) -> TrustEntry:
    # Pinned by the operator in effect: the locator shipped with the device.
    return TrustEntry(certificate.name, state.locator, frozenset({TBS_ROLE}), TrustOrigin.PINNED)


# --- revocation ------------------------------------------------------------------------------

def check_own_revocation(session: _Session, tbs_certificate: BirthCertificate, pat: BatchPat,
                         answer: RevocationAnswer | None = None, *,
                         min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> RevocationAnswer:
    """The TBS's answer for this PAT (``answer``, or asked now), checked: PatRevoked when the
    TBS says revoked; otherwise its proof must hold against the newest link of the TBS's 0x04
    chain as our tbs:// source shows it (a stale answer is asked again once). Returns the
    answer that held; PatError when none does."""
    digest = pat.certificate.digest()
    try:
        identity, proof = resolve_anchor(session.state.locator, tbs_certificate, session.source, session.headers,
                                         min_confirmations=min_confirmations)
        checker = TbsRevocations(identity, proof.tx, session.source, session.source, session.headers)
        for attempt in (1, 2):
            if answer is None:
                answer = session.source.revocation_status(digest)
            if answer.revoked:
                raise PatRevoked(pat.certificate.name, digest, tbs_certificate.name)
            try:
                check_not_revoked_in_list(digest, answer.proof, answer.root, checker.view())
                return answer
            except RevocationListStale:
                if attempt == 2:
                    raise
                answer = None           # a list anchored since: ask the TBS again
    except PatRevoked:
        log.warning("this PAT (%s) is revoked by its TBS %s", pat.certificate.name, tbs_certificate.name)
        raise
    except (VerificationError, SourceError) as exc:
        raise PatError(f"the TBS's word that this PAT is not revoked does not hold against its revocation-list "
                       f"chain: {type(exc).__name__}: {exc}") from None
    raise AssertionError("unreachable")


def _refused(what: str, response: httpx.Response, session: _Session, tbs_certificate: BirthCertificate,
             pat: BatchPat) -> PatError:
    """The error for a refused request: PatRevoked when the TBS refused ``pat_revoked`` and
    says so again for our digest, else PatRefused."""
    refused = PatRefused(what, response)
    if refused.status == 403 and refused.error == "pat_revoked":
        try:
            answer = session.source.revocation_status(pat.certificate.digest())
        except SourceError as exc:
            return PatError(f"{refused}; and the TBS's revocation status cannot be read: {exc}")
        if answer.revoked:
            return PatRevoked(pat.certificate.name, pat.certificate.digest(), tbs_certificate.name)
    return refused


def _refused_in_handshake(what: str, error: httpx.HTTPError, session: _Session, tbs_certificate: BirthCertificate,
                          pat: BatchPat) -> PatError:
    """The error for a handshake refused with certificate_revoked: PatRevoked when our TBS
    says so too for our digest (GET /chain/revocation/<digest> over tbs://), else PatError
    (a peer's alert alone is no proof: only the TBS can revoke its PATs)."""
    digest = pat.certificate.digest()
    try:
        answer = session.source.revocation_status(digest)
    except SourceError as exc:
        return PatError(f"{what}: the handshake was refused as revoked (alert certificate_revoked); and the TBS's "
                        f"revocation status cannot be read: {exc}")
    if answer.revoked:
        log.warning("this PAT (%s) is revoked by its TBS %s: %s refused its handshake", pat.certificate.name,
                    tbs_certificate.name, what)
        return PatRevoked(pat.certificate.name, digest, tbs_certificate.name)
    return PatError(f"{what}: the handshake was refused as revoked (alert certificate_revoked), but the TBS "
                    f"{tbs_certificate.name!r} answers this PAT not revoked: {type(error).__name__}: {error}")


# --- instructions ----------------------------------------------------------------------------

def _install(session: _Session, tbs_certificate: BirthCertificate, pat: BatchPat, blob: bytes, *,
             min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> InstructionSet:
    """Open, verify against our headers alone, check our own revocation status, and install a
    sealed instruction set."""
    home, state = session.home, session.state
    instructions = open_instructions(home.aes_key(), blob, tbs_certificate.pubkey,
                                     installed_version=state.installed_version, tbs_name=tbs_certificate.name)
    session.sync()
    entries = verify_instruction_entries(instructions, session.headers, pat_certificate=pat.certificate)
    if pat.locator is not None and instructions.pat_locator is not None and \
            instructions.pat_locator.encode() != pat.locator.encode():
        raise InstructionEntryInvalid("the instruction set names another locator for this PAT than its own")
    if instructions.revocation is not None:
        check_own_revocation(session, tbs_certificate, pat, instructions.revocation.pat,
                             min_confirmations=min_confirmations)
        spent = {seal.name for seal in instructions.revocation.entries if seal.seal_spent}
        entries = [entry for entry in entries if entry.name not in spent]
    else:
        log.info("instruction set %d carries no revocation status (a TBS older than issue 18)", instructions.version)
    store = TrustStore([_tbs_entry(state, tbs_certificate)])
    for entry in entries:
        store.add(entry)
    # The trust store first, then the version: a crash between them re-installs the same set.
    home.save_trust(store)
    home.save_instructions(instructions.to_json())
    state.installed_version = instructions.version
    state.group = instructions.group
    state.dta_urls = list(instructions.dta_urls)
    home.save(state)
    log.info("instruction set %d installed: group %s, %d trust entries, %d D-TAs", instructions.version,
             instructions.group, len(entries), len(instructions.dta_urls))
    return instructions


# --- enrol -----------------------------------------------------------------------------------

def _new_state(home: PatHome, tbs: str, tbs_locator: Locator | dict, checkpoint: str | dict | None,
               name: str | None) -> PatState:
    try:
        locator = tbs_locator if isinstance(tbs_locator, Locator) else Locator.from_json(tbs_locator)
        _base_url(tbs)
        if isinstance(checkpoint, str):
            checkpoint = parse_checkpoint(checkpoint)
    except ValueError as exc:             # MalformedInput is one too
        raise PatError(str(exc)) from None
    if name is None:
        import secrets
        name = f"pat-{secrets.token_hex(6)}"
    return PatState(tbs=tbs, tbs_locator=locator.to_json(), network=locator.network.label, name=name,
                    checkpoint=checkpoint)


def enrol(home, tbs: str | None = None, tbs_locator: Locator | dict | None = None, *, checkpoint: str | dict | None = None,
          name: str | None = None, min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS, timeout: float = 600.0,
          interval: float = 1.0, progress: Callable[[str], None] | None = None,
          on_wait: Callable[[], None] | None = None) -> EnrolResult:
    """Enrol the PAT at HOME with the TBS at ``tbs`` (HOST:PORT) anchored at ``tbs_locator``,
    from ``checkpoint`` (HEIGHT:HASH). Resumes an interrupted enrol in the same home (then the
    TBS and locator may be omitted). ``on_wait`` runs between polls (tests mine a block)."""
    say = progress or (lambda message: log.info("%s", message))
    home = PatHome(home)
    if home.exists():
        state = home.load()
        if tbs is not None and (tbs != state.tbs or (tbs_locator is not None and Locator.from_json(
                tbs_locator if isinstance(tbs_locator, dict) else tbs_locator.to_json()) != state.locator)):
            raise PatError(f"{home.path} is enrolled (or enrolling) with {state.tbs}; use a fresh home")
    else:
        if tbs is None or tbs_locator is None:
            raise PatError("a first enrol needs the TBS's HOST:PORT and locator")
        state = _new_state(home, tbs, tbs_locator, checkpoint, name)
        home.save(state)
    deadline = time.monotonic() + timeout
    session = _Session(home, state)
    try:
        added = session.sync()
        say(f"headers: {added} new, tip {session.headers.tip()[0]}")
        tbs_certificate = verify_tbs(session, min_confirmations=min_confirmations)
        say(f"TBS {tbs_certificate.name} verified at {state.locator.txid_hex}")
        pat = _load_or_create_pat(home, state, tbs_certificate)
        aes_key = home.aes_key()
        http = session.client(TrustStore([_tbs_entry(state, tbs_certificate)]), min_confirmations=min_confirmations)
        sni = {"sni_hostname": tbs_certificate.name}

        if state.enrolment_id is None:
            blob = seal_enrolment(enrolment_key_of(tbs_certificate), pat.certificate, aes_key)
            response = _send(http, "POST", "/enrol", content=blob, headers={"Content-Type": "application/octet-stream"},
                                 extensions=sni)
            if response.status_code != 202:
                raise PatRefused("enrolment", response)
            state.enrolment_id = response.json()["enrolment_id"]
            home.save(state)
        say(f"enrolment {state.enrolment_id} queued")
        mac = poll_mac(aes_key, state.enrolment_id)
        base = f"/enrolments/{state.enrolment_id}"

        if pat.locator is None:
            _wait_anchored(http, sni, base, mac, pat, deadline, interval, say, on_wait)
            pat.locator = _confirm(session, pat, deadline, interval, on_wait)
        say(f"anchored: {pat.locator.txid_hex}:{pat.locator.input_index} slot {pat.locator.batch_slot.position}")

        if state.installed_version == 0:
            response = _send(http, "GET", f"{base}/instructions", params={"mac": mac}, extensions=sni)
            if response.status_code != 200:
                raise _refused("instructions", response, session, tbs_certificate, pat)
            _install(session, tbs_certificate, pat, response.content, min_confirmations=min_confirmations)
        say(f"instructions version {state.installed_version} installed")
        return _result(home, state, pat)
    except httpx.HTTPError as exc:
        raise PatError(f"the TBS at {state.tbs}: {type(exc).__name__}: {exc}") from None
    finally:
        session.close()


def _load_or_create_pat(home: PatHome, state: PatState, tbs_certificate: BirthCertificate) -> BatchPat:
    if BatchPat.exists(home.path, state.name):
        pat = BatchPat.load(home.path, state.name)
        if pat.certificate.batch_key != tbs_certificate.batch_key:
            raise PatError(f"identity {state.name} names another batch key than the TBS's")
        return pat
    return BatchPat.create(home.path, name=state.name, batch_key=tbs_certificate.batch_key,
                           network=Network.from_label(state.network))


def _wait_anchored(http, sni, base, mac, pat: BatchPat, deadline, interval, say, on_wait) -> None:
    signed: set[bytes] = set()
    last = None
    while True:
        response = _send(http, "GET", f"{base}/status", params={"mac": mac}, extensions=sni)
        if response.status_code != 200:
            raise PatRefused("status", response)
        status = response.json().get("status")
        if status != last:
            say(f"status: {status}")
            last = status
        if status == "anchored":
            return
        if status == "failed":
            raise PatError("the TBS gave this enrolment up (failed): enrol again with a fresh home")
        if status == "batched":
            answer = _send(http, "GET", f"{base}/signing-request", params={"mac": mac}, extensions=sni)
            if answer.status_code == 200:
                request = SigningRequest.from_json(answer.json())
                if request.txid not in signed:
                    # BatchPat.sign checks the request against our certificate before signing.
                    reply = _send(http, "POST", f"{base}/signature", json=pat.sign(request).to_json(), extensions=sni)
                    if reply.status_code != 200:
                        raise PatRefused("signature", reply)
                    signed.add(request.txid)
                    say(f"signed slot {request.position} of batch {to_display_hex(request.txid)}")
            elif answer.status_code not in (204, 410):
                raise PatRefused("signing request", answer)
        if time.monotonic() > deadline:
            raise PatTimeout(f"enrolment still {status} when the time ran out")
        if on_wait is not None:
            on_wait()
        time.sleep(interval)


def _confirm(session: _Session, pat: BatchPat, deadline, interval, on_wait) -> Locator:
    """Our slot's locator (BatchPat.confirm through the tbs:// source: the batch proof, not the
    block), then checked against our own headers."""
    while True:
        try:
            locator = pat.confirm(session.source)
            break
        except AnchorNotMined:
            if time.monotonic() > deadline:
                raise PatTimeout("the TBS says anchored, but the batch is not confirmed at its source") from None
            if on_wait is not None:
                on_wait()
            time.sleep(interval)
    session.sync()
    height = session.headers.height_of(locator.block_hash)
    if height is None:
        raise PatError("our batch's block is not in our header chain")
    proof = fetch_anchor_proof(session.source, locator.txid, locator.block_hash, height)
    try:
        verify_anchor(locator, pat.certificate, proof, session.headers, min_confirmations=1)
    except VerificationError as exc:
        raise PatError(f"our own anchor does not verify against our headers: {type(exc).__name__}: {exc}") from None
    return locator


def _result(home: PatHome, state: PatState, pat: BatchPat) -> EnrolResult:
    return EnrolResult(name=state.name, locator=pat.locator, version=state.installed_version, group=state.group or "",
                       dta_urls=tuple(state.dta_urls),
                       trust=tuple(e for e in home.trust() if e.origin is TrustOrigin.TBS))


# --- update and connect ----------------------------------------------------------------------

def _anchored_session(home: PatHome) -> tuple[PatState, _Session, BirthCertificate, BatchPat]:
    state = home.load()
    if state.installed_version == 0 or not BatchPat.exists(home.path, state.name):
        raise PatError(f"the PAT in {home.path} has not finished enrolling: run `milagro pat enrol`")
    pat = BatchPat.load(home.path, state.name)
    tbs_certificate = home.tbs_certificate()
    if pat.locator is None or tbs_certificate is None:
        raise PatError(f"the PAT in {home.path} has not finished enrolling: run `milagro pat enrol`")
    session = _Session(home, state)
    try:
        session.sync()
    except BaseException:
        session.close()
        raise
    return state, session, tbs_certificate, pat


def update(home, *, min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> InstructionSet | None:
    """Fetch a newer instruction set over milagro-tls with the PAT's anchored identity and
    install it; None when the TBS has none newer. A rollback (a version not above the
    installed one), a set not signed by the TBS or one sealed under another key is refused
    (InstructionsRefused) and nothing is installed."""
    home = PatHome(home)
    state, session, tbs_certificate, pat = _anchored_session(home)
    try:
        identity = LocalIdentity.from_batch_pat(pat, session.source)
        http = session.client(TrustStore([_tbs_entry(state, tbs_certificate)]), identity=identity,
                              min_confirmations=min_confirmations)
        response = _send(http, "GET", "/pat/instructions", params={"since": state.installed_version},
                            extensions={"sni_hostname": tbs_certificate.name})
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise _refused("instructions update", response, session, tbs_certificate, pat)
        return _install(session, tbs_certificate, pat, response.content, min_confirmations=min_confirmations)
    except httpx.HTTPError as exc:
        if refused_as_revoked(exc):
            raise _refused_in_handshake(f"the TBS at {state.tbs}", exc, session, tbs_certificate, pat) from None
        raise PatError(f"the TBS at {state.tbs}: {type(exc).__name__}: {exc}") from None
    finally:
        session.close()


def install_instructions(home, blob: bytes) -> InstructionSet:
    """Install a sealed instruction set that reached the PAT some other way (a file, a relay):
    the same checks as update (tag, the TBS's signature, a version above the installed one,
    every entry against our headers), and nothing is changed when one fails."""
    home = PatHome(home)
    state, session, tbs_certificate, pat = _anchored_session(home)
    try:
        return _install(session, tbs_certificate, pat, blob)
    finally:
        session.close()


def connect(home, url: str, *, name: str | None = None, method: str = "GET", content: bytes | None = None,
            min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS, timeout: float = 60.0) -> httpx.Response:
    """One request to ``url`` over milagro-tls with the PAT's anchored identity; the server must
    be pinned in the PAT's trust store as ``name`` (default: the URL's host name)."""
    home = PatHome(home)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise PatError(f"connect takes an https:// URL, not {url!r}")
    state, session, tbs_certificate, pat = _anchored_session(home)
    try:
        identity = LocalIdentity.from_batch_pat(pat, session.source)
        context = Context(identity=identity, trust=home.trust(), chain=session.source, headers=session.headers,
                          min_confirmations=min_confirmations)
        session.contexts.append(context)
        with httpx.Client(verify=context, timeout=timeout, follow_redirects=False) as http:
            response = _send(http, method, url, content=content,
                                    extensions={"sni_hostname": name or parts.hostname})
            response.read()
            return response
    except httpx.HTTPError as exc:
        if refused_as_revoked(exc):
            raise _refused_in_handshake(url, exc, session, tbs_certificate, pat) from None
        raise PatError(f"{url}: {type(exc).__name__}: {exc}") from None
    finally:
        session.close()
