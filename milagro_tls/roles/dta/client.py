"""The D-TA's client side: what a PAT, a thing or a relying service runs to get M-Pin shares.

    with DtaClient("https://localhost:8443", context, "dta-a.example") as dta:   # context pins it
        login = dta.start_login("https://idp.example", method="code")
        ...the person opens login.browser_url (or types login.user_code at the IdP)...
        dta.wait_for_login(login.login_nonce)
        shares_a = dta.fetch_client_shares(login.login_nonce)       # every signature checked
    credential = combine_shares([shares_a, shares_b], pin="4321")  # token = CS - PIN·H(ID)
    credential.save(credential_path(home, "alice"))                # 0600
    mpin_authenticate(http, "https://service.example", credential, "4321")

Every request goes over milagro-tls with a Context whose trust store pins the D-TA under
``sni_hostname``: the handshake verifies the D-TA's anchor from the chain, and each response is
checked to have come from that anchor (its verified locator). A share is accepted only if its
BIP340 signature verifies under the D-TA's anchored key, it names that D-TA's locator, and it was
issued to this party's own locator; a stolen share, a share for someone else, or a tampered one
is refused with the mpin error that says why (ShareSignatureError, ShareMismatch).

``combine_shares`` wants shares from at least two distinct D-TAs (the point of the D-TA: no
single authority holds the key); ``min_dtas=1`` exists for tests that show why.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ...chain.verify import PeerIdentity
from ...errors import MalformedInput, MilagroError
from ...identity.certificate import BirthCertificate
from ...identity.locator import Locator
from ...mpin import (
    G1Point, MalformedShare, MpinClient, MpinError, ShareKind, ShareMismatch, SignedShare,
    combine_g1, decode_g1, encode_g1, extract_pin, hash_identity, verify_share,
)
from ...mpin.protocol import Challenge

__all__ = [
    "DtaError", "DtaRequestError", "DtaConnectError", "DtaPeerError", "LoginFailed", "LoginStart", "ClientShares",
    "DtaClient", "MpinCredential", "combine_shares", "credential_path", "ServiceRejected",
    "mpin_authenticate",
]

#: Poll interval while a person logs in at the browser (the D-TA itself paces device polls).
DEFAULT_POLL_INTERVAL = 1.0
#: Connection attempts, one second apart. A D-TA whose header chain has not seen the block of a
#: freshly anchored party's anchor refuses the handshake (certificate_unknown) and syncs at once;
#: the next attempt passes. Only a failure to connect is retried: the request never reached the
#: D-TA, so repeating it cannot issue anything twice.
CONNECT_ATTEMPTS = 5


class DtaError(MilagroError):
    """Root of the D-TA client's errors."""


class DtaRequestError(DtaError):
    """The D-TA (or a service) answered with an HTTP error; ``status`` and the JSON ``body``."""

    def __init__(self, status: int, body: Any, what: str) -> None:
        self.status, self.body = status, body
        reason = body.get("error") if isinstance(body, dict) else None
        detail = body.get("error_description") or body.get("message") if isinstance(body, dict) else None
        super().__init__(f"{what}: HTTP {status} {reason or ''} {detail or ''}".rstrip())

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


class DtaConnectError(DtaError):
    """No milagro-tls connection to the D-TA (refused, unreachable, or the handshake failed)."""


class DtaPeerError(DtaError):
    """The connection's peer is not the D-TA expected (not a Bitcoin suite, another anchor)."""


class LoginFailed(DtaError):
    """The login ended without success: denied at the IdP, or expired."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"the login ended as {status!r}")


@dataclass(frozen=True)
class LoginStart:
    """The D-TA's answer to /login/start. ``browser_url`` for the code flow; the device grant's
    user code and verification URIs (at the IdP) for a thing."""
    login_nonce: str
    expires_in: int
    method: str
    browser_url: str | None = None
    user_code: str | None = None
    verification_uri: str | None = None
    verification_uri_complete: str | None = None
    interval: int | None = None

    @classmethod
    def from_json(cls, doc: Any, method: str) -> "LoginStart":
        if not isinstance(doc, dict) or not isinstance(doc.get("login_nonce"), str):
            raise DtaError(f"/login/start answered without a login nonce: {doc!r}")
        return cls(login_nonce=doc["login_nonce"], expires_in=int(doc.get("expires_in", 0)), method=method,
                   browser_url=doc.get("browser_url"), user_code=doc.get("user_code"),
                   verification_uri=doc.get("verification_uri"),
                   verification_uri_complete=doc.get("verification_uri_complete"), interval=doc.get("interval"))


@dataclass(frozen=True, repr=False)
class ClientShares:
    """One D-TA's verified shares for one identity: CS_i, today's TP_i, and the log receipt."""
    client_secret: SignedShare
    time_permit: SignedShare
    receipt: dict
    dta_locator: Locator

    @property
    def identity(self) -> bytes:
        return self.client_secret.identity

    def __repr__(self) -> str:
        return f"<ClientShares from {self.client_secret.dta!r} date={self.time_permit.date} (points hidden)>"


def _own_locator(context) -> Locator:
    identity = getattr(context, "identity", None)
    locator = getattr(identity, "locator", None)
    if not isinstance(locator, Locator):
        raise DtaError("the D-TA releases shares only to an anchored party: the Context needs an identity")
    return locator


def _same_anchor(a: Locator, b: Locator) -> bool:
    # As the trust store compares anchors: the block hash is left out (a reorg may re-mine it).
    return (a.network, a.kind, a.txid, a.input_index, a.body) == (b.network, b.kind, b.txid, b.input_index, b.body)


class DtaClient:
    """One D-TA, reached over milagro-tls. ``context``: a milagro_tls Context with this party's
    identity and a trust store pinning the D-TA as ``sni_hostname``. ``dta_identity``: the
    D-TA's verified identity if the caller resolved it; otherwise it is taken from the first
    handshake (which verified the pinned anchor) and every later one must match it."""

    def __init__(self, base_url: str, context, sni_hostname: str, dta_identity: PeerIdentity | None = None, *,
                 timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.sni_hostname = sni_hostname
        self.locator = _own_locator(context)
        self._dta_locator = dta_identity.locator if dta_identity is not None else None
        self._dta_pubkey = dta_identity.certificate.pubkey if dta_identity is not None else None
        self._dta_name: str | None = dta_identity.certificate.name if dta_identity is not None else None
        self.http = httpx.Client(base_url=self.base_url, verify=context, timeout=timeout, follow_redirects=False)

    # --- transport ------------------------------------------------------------------------
    def _check_peer(self, peer: Any) -> None:
        if not isinstance(peer, dict) or not isinstance(peer.get("locator"), dict):
            raise DtaPeerError(f"{self.base_url} did not answer over a Bitcoin suite (no verified anchor)")
        try:
            locator = Locator.from_json(peer["locator"])
            certificate = BirthCertificate.from_json(peer["certificate"])
        except (MalformedInput, KeyError) as exc:
            raise DtaPeerError(f"{self.base_url}: unreadable peer identity: {exc}") from None
        if self._dta_locator is None:
            self._dta_locator, self._dta_pubkey, self._dta_name = locator, certificate.pubkey, certificate.name
        elif not _same_anchor(locator, self._dta_locator) or certificate.pubkey != self._dta_pubkey:
            raise DtaPeerError(f"{self.base_url} answered from another anchor than the D-TA's")
        if certificate.role != "dta":
            raise DtaPeerError(f"{self.base_url} is anchored as a {certificate.role!r}, not a 'dta'")

    def _request(self, method: str, path: str, what: str, **kwargs) -> tuple[int, Any]:
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                with self.http.stream(method, path, extensions={"sni_hostname": self.sni_hostname},
                                      **kwargs) as response:
                    sock = response.extensions["network_stream"].get_extra_info("socket")
                    self._check_peer(sock.getpeercert() if sock is not None else None)
                    response.read()
                break
            except httpx.ConnectError as exc:
                if attempt == CONNECT_ATTEMPTS:
                    raise DtaConnectError(f"{what}: cannot connect to {self.base_url}: {exc}") from None
                time.sleep(1.0)
            except httpx.HTTPError as exc:
                raise DtaConnectError(f"{what}: {self.base_url}: {type(exc).__name__}: {exc}") from None
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = {"error": "not-json", "error_description": response.text[:200]}
        if response.status_code >= 400:
            raise DtaRequestError(response.status_code, body, what)
        return response.status_code, body

    def _post(self, path: str, body: dict, what: str) -> Any:
        return self._request("POST", path, what, json=body)[1]

    @property
    def dta_locator(self) -> Locator:
        if self._dta_locator is None:
            self._request("GET", "/healthz", "health check")
        return self._dta_locator

    @property
    def dta_pubkey(self) -> bytes:
        self.dta_locator
        return self._dta_pubkey

    # --- logins -----------------------------------------------------------------------------
    def start_login(self, idp: str, method: str = "code") -> LoginStart:
        """Ask the D-TA to start a login at ``idp`` (an issuer URL it is a relying party of);
        the nonce it returns is bound to this party's locator."""
        if method not in ("code", "device"):
            raise ValueError("method is 'code' (a person's browser) or 'device' (the device grant)")
        return LoginStart.from_json(self._post("/login/start", {"idp": idp, "method": method}, "login start"), method)

    def poll(self, login_nonce: str) -> str:
        """The login's status: pending, done, denied or expired."""
        doc = self._post("/login/poll", {"login_nonce": login_nonce}, "login poll")
        status = doc.get("status") if isinstance(doc, dict) else None
        if status not in ("pending", "done", "denied", "expired"):
            raise DtaError(f"/login/poll answered an unknown status: {doc!r}")
        return status

    def wait_for_login(self, login_nonce: str, *, timeout: float = 300.0,
                       interval: float = DEFAULT_POLL_INTERVAL) -> None:
        """Poll until the login is done; LoginFailed if denied or expired, DtaError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.poll(login_nonce)
            if status == "done":
                return
            if status != "pending":
                raise LoginFailed(status)
            if time.monotonic() >= deadline:
                raise DtaError(f"the login was still pending after {timeout:.0f}s")
            time.sleep(interval)

    # --- shares -----------------------------------------------------------------------------
    def _verified(self, doc: Any, kind: ShareKind, **expect) -> SignedShare:
        share = SignedShare.from_json(doc)
        return verify_share(share, self.dta_pubkey, kind=kind, recipient=self.locator,
                            dta_locator=self.dta_locator, **expect)

    def fetch_client_shares(self, login_nonce: str) -> ClientShares:
        """CS_i and today's TP_i after a successful login, each verified (signature under the
        D-TA's anchored key, kind, recipient = our locator, the D-TA's own locator, one identity)."""
        doc = self._post("/shares/client", {"login_nonce": login_nonce}, "client shares")
        if not isinstance(doc, dict) or {"client_secret", "time_permit"} - set(doc):
            raise MalformedShare("the D-TA's answer lacks client_secret or time_permit")
        client_secret = self._verified(doc["client_secret"], ShareKind.CLIENT_SECRET)
        time_permit = self._verified(doc["time_permit"], ShareKind.TIME_PERMIT, identity=client_secret.identity)
        return ClientShares(client_secret, time_permit, doc.get("receipt") or {}, self.dta_locator)

    def fetch_server_share(self) -> SignedShare:
        """SS_i for a relying service registered at the D-TA (``milagro dta service add``)."""
        doc = self._post("/shares/server", {}, "server share")
        if not isinstance(doc, dict) or "server_secret" not in doc:
            raise MalformedShare("the D-TA's answer lacks server_secret")
        return self._verified(doc["server_secret"], ShareKind.SERVER_SECRET)

    def log_inclusion(self, leaf: bytes) -> dict | None:
        """The activity log's inclusion document for ``leaf`` (roles.activitylog), or None while
        its period is not anchored yet (HTTP 409). Verify it with verify_log_inclusion."""
        try:
            return self._request("GET", "/.well-known/milagro/activity-log/inclusion", "log inclusion",
                                 params={"leaf": leaf.hex()})[1]
        except DtaRequestError as exc:
            if exc.status == 409:
                return None
            raise

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "DtaClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the combined credential -------------------------------------------------------------
@dataclass(repr=False)
class MpinCredential:
    """What a client keeps: the token T = CS − PIN·H(ID) (not the key: the PIN is missing),
    the combined time permit TP for ``date``, the identity, and which D-TAs contributed."""
    identity: bytes
    token: G1Point
    time_permit: G1Point
    date: int
    dtas: tuple[dict, ...] = field(default_factory=tuple)     # the D-TAs' locators (JSON)

    def client(self) -> MpinClient:
        """A fresh M-Pin attempt (pass 1, then pass 2 with the PIN)."""
        return MpinClient(self.token, self.time_permit, self.identity, self.date)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "id": self.identity.hex(), "token": encode_g1(self.token).hex(),
                "time_permit": encode_g1(self.time_permit).hex(), "date": self.date, "dtas": list(self.dtas)}

    @classmethod
    def from_json(cls, doc: Any) -> "MpinCredential":
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise MalformedShare("not an M-Pin credential (version 1)")
        try:
            return cls(bytes.fromhex(doc["id"]), decode_g1(doc["token"]), decode_g1(doc["time_permit"]),
                       int(doc["date"]), tuple(doc.get("dtas", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedShare(f"M-Pin credential: {exc}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically with mode 0600 (the token is a secret: with the PIN it is the key)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)        # 0600
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.to_json(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MpinCredential":
        path = Path(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise DtaError(f"credential file {path} is readable by others (mode {mode:o}); chmod 600 it")
        return cls.from_json(json.loads(path.read_text()))

    def __repr__(self) -> str:
        return f"<MpinCredential id={self.identity.hex()} date={self.date} dtas={len(self.dtas)} (token hidden)>"

    __str__ = __repr__


def credential_path(home: str | os.PathLike, name: str) -> Path:
    """Where a party keeps its M-Pin credential: beside its identity, HOME/identities/NAME/."""
    return Path(home) / "identities" / name / "mpin-credential.json"


def combine_shares(shares: Sequence[ClientShares], pin: int | str, *, min_dtas: int = 2) -> MpinCredential:
    """CS = Σ CS_i and TP = Σ TP_i over distinct D-TAs for one identity and one date, then the
    PIN extracted: the credential holds T = CS − PIN·H(ID), never CS. The shares are the
    verified ones DtaClient.fetch_client_shares returns."""
    shares = list(shares)
    if len(shares) < min_dtas:
        raise ValueError(f"shares from at least {min_dtas} D-TAs are needed, got {len(shares)}")
    identity = shares[0].identity
    date = shares[0].time_permit.date
    seen: list[Locator] = []
    for item in shares:
        if item.client_secret.identity != identity or item.time_permit.identity != identity:
            raise ShareMismatch("the shares are for different identities")
        if item.time_permit.date != date:
            raise ShareMismatch(f"the time permits are for different days ({item.time_permit.date} and {date})")
        if item.client_secret.dta_locator != item.time_permit.dta_locator:
            raise ShareMismatch("a client secret and its time permit come from different D-TAs")
        if any(_same_anchor(item.dta_locator, other) for other in seen):
            raise ShareMismatch("two sets of shares from the same D-TA: each D-TA counts once")
        seen.append(item.dta_locator)
    client_secret = combine_g1(item.client_secret.point for item in shares)
    time_permit = combine_g1(item.time_permit.point for item in shares)
    token = extract_pin(client_secret, hash_identity(identity), pin)
    return MpinCredential(identity, token, time_permit, date, tuple(item.dta_locator.to_json() for item in shares))


# --- authenticating at a relying service ---------------------------------------------------
class ServiceRejected(DtaError):
    """The relying service refused the M-Pin authentication: ``status``, ``reason`` (the JSON
    body's ``error``, an MpinError reason such as authentication-failed or expired-permit)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body
        self.reason = body.get("error") if isinstance(body, dict) else None
        message = body.get("error_description") if isinstance(body, dict) else None
        super().__init__(f"the service refused: HTTP {status} {self.reason}: {message}")


def mpin_authenticate(http: httpx.Client, base_url: str, credential: MpinCredential, pin: int | str, *,
                      extensions: dict | None = None) -> dict:
    """The M-Pin 2-pass at a relying service (``milagro service serve``): POST /mpin/pass1 with
    (ID, date, U), get the challenge y and a session id, POST /mpin/pass2 with V. ``http`` is any
    httpx client (over a milagro-tls Context or plain HTTPS). Returns the service's 200 JSON;
    ServiceRejected with the service's reason otherwise."""
    base_url = base_url.rstrip("/")
    attempt = credential.client()
    kwargs = {"extensions": extensions} if extensions else {}
    first = _post(http, f"{base_url}/mpin/pass1", attempt.pass1().to_json(), kwargs)
    body = _json(first)
    if first.status_code != 200:
        raise ServiceRejected(first.status_code, body)
    try:
        challenge = Challenge.from_json({"y": body["y"]})
        session = body["session"]
    except (KeyError, TypeError, MpinError) as exc:
        raise DtaError(f"the service's pass-1 answer is malformed: {exc}") from None
    second = _post(http, f"{base_url}/mpin/pass2", {"session": session, **attempt.pass2(challenge, pin).to_json()},
                   kwargs)
    body = _json(second)
    if second.status_code != 200:
        raise ServiceRejected(second.status_code, body)
    return body


def _post(http: httpx.Client, url: str, body: dict, kwargs: dict) -> httpx.Response:
    """POST, retrying only a failure to connect (as DtaClient does: nothing was delivered)."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return http.post(url, json=body, **kwargs)
        except httpx.ConnectError as exc:
            if attempt == CONNECT_ATTEMPTS:
                raise DtaConnectError(f"cannot connect to {url}: {exc}") from None
            time.sleep(1.0)
        except httpx.HTTPError as exc:
            raise DtaConnectError(f"{url}: {type(exc).__name__}: {exc}") from None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return {"error": "not-json", "error_description": response.text[:200]}
