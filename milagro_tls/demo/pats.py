"""What each PAT does in the demo, with nothing but its own home directory and the network:

1. ``enrol_pat``: enrol through the TBS (milagro_tls.roles.pat.enrol: headers from the shipped
   checkpoint through tbs://, the TBS verified, ECIES enrolment, its batch slot signed, its
   anchor confirmed, the first instructions verified and installed).
2. ``login_and_authenticate``: with its batch-anchored identity over milagro-tls (YAK), ask each
   D-TA the instructions name for a device-grant login at the IdP, have the person approve the
   user codes, fetch and verify both D-TAs' shares, combine them with its PIN, and pass M-Pin at
   the relying service (pinned by the instructions too) over YAK-over-Bitcoin.

The PAT's chain access is the TBS's tbs:// endpoints checked against its own header chain:
like a device, it downloads no block and runs no node.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..chain.errors import SourceBehind
from ..chain.network import Network
from ..chain.tbs_source import TbsSource
from ..context import Context
from ..identity.batchpat import BatchPat
from ..identity.local import LocalIdentity
from ..roles.dta.client import DtaClient, DtaConnectError, combine_shares, credential_path, mpin_authenticate
from ..roles.pat import PatHome, enrol
from .processes import DemoError

#: The suite family the PATs offer: YAK over their Bitcoin keys (forward secrecy, KCI resistance).
SUITES = "yak"


@dataclass
class PatOutcome:
    """One PAT's facts for the summary (no secret in here: the PIN and keys stay in its home)."""
    index: int
    name: str
    home: Path
    locator: dict | None = None
    enrol_seconds: float | None = None
    login_seconds: float | None = None
    mpin_seconds: float | None = None
    dta_suites: dict[str, str] = field(default_factory=dict)
    service_suite: str | None = None
    identity_hex: str | None = None
    mpin: dict | None = None
    retries: int = 0                     # enrol calls repeated after a SourceBehind

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "home": str(self.home), "locator": self.locator,
                "enrol_seconds": self.enrol_seconds, "login_seconds": self.login_seconds,
                "mpin_seconds": self.mpin_seconds, "dta_suites": self.dta_suites,
                "service_suite": self.service_suite, "identity": self.identity_hex, "enrol_retries": self.retries,
                "mpin_authenticated": bool(self.mpin and self.mpin.get("authenticated")),
                "mpin_sub": self.mpin.get("sub") if self.mpin else None}


#: resolve_anchor refuses a source whose tip moved between its header sync and its tip check
#: (SourceBehind): with the miner on the clock and a busy TBS that happens. enrol resumes from
#: the PAT's home, so it is simply called again.
ENROL_ATTEMPTS = 10


def enrol_pat(outcome: PatOutcome, tbs_address: str, tbs_locator: dict, checkpoint: str, *,
              interval: float, timeout: float) -> PatOutcome:
    started = time.perf_counter()
    for attempt in range(1, ENROL_ATTEMPTS + 1):
        try:
            result = enrol(outcome.home, tbs_address, tbs_locator, checkpoint=checkpoint, name=outcome.name,
                           min_confirmations=1, interval=interval, timeout=timeout)
            break
        except SourceBehind:
            if attempt == ENROL_ATTEMPTS:
                raise
            outcome.retries += 1
            time.sleep(min(0.5 * attempt, 3.0))
    outcome.locator = result.locator.to_json()
    outcome.enrol_seconds = time.perf_counter() - started
    return outcome


#: A server whose header chain has not seen our batch's block yet refuses the handshake
#: (certificate_unknown) and syncs at once: a failed connect (nothing delivered) is retried.
CONNECT_ATTEMPTS = 8


def _cipher(http: httpx.Client, url: str, sni: str) -> str:
    """GET url over the client's (kept-alive) connection; the suite it was negotiated with."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            with http.stream("GET", url, extensions={"sni_hostname": sni}) as response:
                sock = response.extensions["network_stream"].get_extra_info("socket")
                response.read()
            break
        except httpx.ConnectError:
            if attempt == CONNECT_ATTEMPTS:
                raise
            time.sleep(1.0)
    if response.status_code != 200:
        raise DemoError(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    return sock.cipher()[0]


#: A poll sent on a kept-alive connection the server is closing at that moment (gunicorn's
#: keep-alive timeout) fails with "Server disconnected"; a poll changes nothing, so it is
#: sent again. (Fetching shares is not repeated: a second fetch would be a second issuance.)
POLL_ATTEMPTS = 3


def _wait_for_login(client: DtaClient, nonce: str, *, timeout: float, interval: float) -> None:
    for attempt in range(1, POLL_ATTEMPTS + 1):
        try:
            return client.wait_for_login(nonce, timeout=timeout, interval=interval)
        except DtaConnectError:
            if attempt == POLL_ATTEMPTS:
                raise
            time.sleep(interval)


def login_and_authenticate(outcome: PatOutcome, *, dtas: dict[str, str], service: tuple[str, str], issuer: str,
                           approve: Callable[[str], None], pin: str, keylog: Path | None,
                           poll_interval: float, login_timeout: float) -> PatOutcome:
    """``dtas``: {URL the instructions name: the name the PAT's trust store pins it under};
    ``service``: (URL, pinned name). ``approve(verification_uri_complete)``: the person."""
    home = PatHome(outcome.home)
    state = home.load()
    missing = set(dtas) - set(state.dta_urls)
    if missing:
        raise DemoError(f"{outcome.name}: its instructions do not name the D-TAs {sorted(missing)}")
    pat = BatchPat.load(outcome.home, state.name)
    host, _, port = state.tbs.rpartition(":")
    source = TbsSource(f"https://{host}:{port}", network=Network.from_label(state.network))
    headers = home.headers(Network.from_label(state.network))
    context = None
    try:
        headers.sync_from(source)
        identity = LocalIdentity.from_batch_pat(pat, source)
        context = Context(identity=identity, trust=home.trust(), chain=source, headers=headers, suites=SUITES,
                          keylog_filename=keylog)
        started = time.perf_counter()
        clients = {name: DtaClient(url, context, name) for url, name in dtas.items()}
        try:
            # Both logins are started before either is approved: the D-TAs poll the IdP at its
            # interval, so the waits overlap.
            logins = {name: client.start_login(issuer, "device") for name, client in clients.items()}
            for name, login in logins.items():
                if not login.verification_uri_complete:
                    raise DemoError(f"{name} gave {outcome.name} no verification URI for the device grant")
                approve(login.verification_uri_complete)
            shares = []
            for name, client in clients.items():
                _wait_for_login(client, logins[name].login_nonce, timeout=login_timeout, interval=poll_interval)
                shares.append(client.fetch_client_shares(logins[name].login_nonce))
                outcome.dta_suites[name] = _cipher(client.http, "/healthz", name)
        finally:
            for client in clients.values():
                client.close()
        credential = combine_shares(shares, pin)
        credential.save(credential_path(outcome.home, state.name))           # 0600: the token is a secret
        outcome.identity_hex = credential.identity.hex()
        outcome.login_seconds = time.perf_counter() - started

        started = time.perf_counter()
        service_url, service_name = service
        with httpx.Client(verify=context, timeout=60) as http:
            outcome.service_suite = _cipher(http, service_url + "/healthz", service_name)
            outcome.mpin = mpin_authenticate(http, service_url, credential, pin,
                                             extensions={"sni_hostname": service_name})
        outcome.mpin_seconds = time.perf_counter() - started
        if outcome.mpin.get("authenticated") is not True:
            raise DemoError(f"{outcome.name}: the service answered without authenticating: {outcome.mpin}")
        return outcome
    finally:
        if context is not None:
            context.close()
        headers.close()
        source.close()
