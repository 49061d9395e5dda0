"""The normative birth-certificate URL every role serves, and the client's check of it.

    GET /.well-known/milagro/birth-certificate   the canonical certificate bytes (application/json)
    GET /.well-known/milagro/metadata            {"certificate_sha256", "pubkey", "locator",
                                                  "live_signature", "signed_at", "canary", "activity_log",
                                                  "revocation"}
    GET /.well-known/milagro/activity-log/inclusion?leaf=HEX
                                                 the activity log's inclusion document (200),
                                                 404 unknown leaf, 409 period not anchored yet

``live_signature`` is a BIP340 signature by the identity key over
TaggedHash("milagro/live-certificate", SHA256(certificate) ‖ u64be(signed_at)): the server
holds the anchored key now. ``check_role`` compares the live copy with the anchored one and
names every difference; canary problems are warnings.

``revocation`` is the status of the role's seal (the anchor output paying its identity key, as
chain.verify derives ``PeerIdentity.seal``; spending it revokes the identity):

    {"seal": {"txid": display hex, "vout": int} | null,    null: no seal (not single-anchored)
     "spent": bool | null,                                 null: the role's source did not answer
     "spender": display hex | null, "checked_height": int | null}

It is the role's chain source's word (chain.revocation: mempool included, not SPV), asked at
most every REVOCATION_CACHE_SECONDS; the whole field is null for a role given no source. A role
cannot be trusted to report its own revocation (a thief of its key would say "unspent"):
check_role asks the client's own source too when it has one, and names a spent seal as a
difference either way.
"""
from __future__ import annotations

import json
import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx
from flask import Blueprint, Response, jsonify, request

from ..chain.errors import ChainError
from ..chain.hashes import to_display_hex
from ..chain.revocation import seal_spender
from ..chain.sighash import p2wpkh_script
from ..chain.source import ChainSource
from ..chain.tx import parse_tx
from ..errors import MalformedInput, MilagroError
from ..identity.keys import IdentityKey, StatementType
from ..identity.locator import LocatorKind
from ..identity.party import Party
from .activitylog import ActivityLog, LeafNotAnchored, LeafNotFound, period_of, verify_log_inclusion
from .canary import CanaryKeeper, check_canary

BIRTH_CERTIFICATE_PATH = "/.well-known/milagro/birth-certificate"
METADATA_PATH = "/.well-known/milagro/metadata"
INCLUSION_PATH = "/.well-known/milagro/activity-log/inclusion"
#: A live signature older than this (or from the future by as much) earns a warning.
MAX_SIGNATURE_AGE = 300
#: How long the metadata reuses its seal's status before asking the source again.
REVOCATION_CACHE_SECONDS = 10

log = logging.getLogger(__name__)


def live_signature_payload(digest: bytes, signed_at: int) -> bytes:
    return digest + struct.pack(">Q", signed_at)


# --- revocation status ---------------------------------------------------------------------
def party_seal(party: Party) -> tuple[bytes, int] | None:
    """The seal of a single-anchored party: (anchor txid, the output paying its identity key),
    as chain.verify derives PeerIdentity.seal. None before the anchor is confirmed, for a
    batch-anchored identity, or for an anchor with no such output."""
    if party.locator is None or party.locator.kind != LocatorKind.P2WPKH:
        return None
    try:
        tx = parse_tx(party.anchor_tx)
    except MalformedInput:
        return None
    script = p2wpkh_script(party.certificate.pubkey)
    vout = next((i for i, out in enumerate(tx.vout) if out.script_pubkey.data == script), None)
    return None if vout is None else (party.anchor_txid, vout)


@dataclass(frozen=True)
class _Sealed:
    """What chain.revocation.seal_spender reads of a PeerIdentity: its name and seal."""
    name: str
    seal: tuple[bytes, int]


class RevocationStatus:
    """The metadata's ``revocation`` field: the party's seal and whether the role's chain source
    says it is spent, cached for ``ttl`` seconds (a failed ask too: a source that is down is not
    asked on every request)."""

    def __init__(self, source: ChainSource | Callable[[], ChainSource], *, ttl: float = REVOCATION_CACHE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._source = source if callable(source) and not isinstance(source, ChainSource) else (lambda: source)
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[tuple, float, dict] | None = None

    def current(self, party: Party) -> dict:
        seal = party_seal(party)
        if seal is None:
            return {"seal": None, "spent": None, "spender": None, "checked_height": None}
        now = self.clock()
        with self._lock:
            if self._cached is not None and self._cached[0] == seal and 0 <= now - self._cached[1] < self.ttl:
                return dict(self._cached[2])
            doc = {"seal": {"txid": to_display_hex(seal[0]), "vout": seal[1]}, "spent": None, "spender": None,
                   "checked_height": None}
            try:
                source = self._source()
                height = source.tip().height
                spender = seal_spender(_Sealed(party.name, seal), source)
            except (ChainError, OSError) as error:
                log.warning("revocation status of %s not known: %s: %s", party.name, type(error).__name__, error)
            else:
                doc.update(spent=spender is not None, spender=to_display_hex(spender) if spender else None,
                           checked_height=height)
            self._cached = (seal, now, doc)
            return dict(doc)


def metadata_document(party: Party, *, canary: dict | None, period_seconds: int | None, now: float,
                      revocation: dict | None = None) -> dict:
    """The metadata document (signed now). ``revocation``: RevocationStatus.current's answer
    (None: the role checks no seal status)."""
    if party.locator is None:
        raise MilagroError(f"identity {party.name} is not confirmed: nothing to serve yet")
    digest = party.certificate.digest()
    signed_at = int(now)
    signature = party.key.sign_statement(StatementType.LIVE_CERTIFICATE, live_signature_payload(digest, signed_at))
    return {"birth_certificate_uri": BIRTH_CERTIFICATE_PATH, "certificate_sha256": digest.hex(),
            "pubkey": party.key.public_key.hex(), "locator": party.locator.to_json(),
            "live_signature": signature.hex(), "signed_at": signed_at, "canary": canary,
            "activity_log": None if period_seconds is None else
            {"period_seconds": period_seconds, "inclusion_uri": INCLUSION_PATH}, "revocation": revocation}


def _error(status: int, error: str, description: str, **extra) -> tuple[Response, int]:
    return jsonify({"error": error, "error_description": description, **extra}), status


def wellknown_blueprint(party: Party | Callable[[], Party], *, canary: CanaryKeeper | None = None,
                        log: ActivityLog | None = None, clock: Callable[[], float] = time.time,
                        name: str = "milagro_wellknown",
                        source: ChainSource | Callable[[], ChainSource] | None = None) -> Blueprint:
    """A Flask blueprint with the routes above (register it without a url_prefix). With
    ``source`` (the role's chain source, or a callable giving it) the metadata carries the
    seal's revocation status."""
    get_party = party if callable(party) else (lambda: party)
    status = RevocationStatus(source, clock=clock) if source is not None else None
    blueprint = Blueprint(name, __name__)

    @blueprint.get(BIRTH_CERTIFICATE_PATH)
    def birth_certificate():
        return Response(get_party().certificate.canonical_bytes(), mimetype="application/json")

    @blueprint.get(METADATA_PATH)
    def metadata():
        now = clock()
        current = canary.current(now).to_json() if canary is not None else None
        party_now = get_party()
        doc = metadata_document(party_now, canary=current, period_seconds=log.period_seconds if log else None,
                                now=now, revocation=status.current(party_now) if status is not None else None)
        response = jsonify(doc)
        response.headers["Cache-Control"] = "no-store"
        return response

    @blueprint.get(INCLUSION_PATH)
    def inclusion():
        if log is None:
            return _error(404, "no_activity_log", "this role keeps no activity log")
        text = request.args.get("leaf", "")
        try:
            leaf = bytes.fromhex(text)
        except ValueError:
            leaf = b""
        if len(leaf) != 32:
            return _error(400, "invalid_leaf", "leaf must be 64 hex digits")
        try:
            return jsonify(log.inclusion(leaf))
        except LeafNotFound:
            return _error(404, "unknown_leaf", "no such leaf in this log")
        except LeafNotAnchored as pending:
            return _error(409, "not_anchored_yet", f"period {pending.period} is {pending.state}",
                          period=pending.period)

    return blueprint


# --- the client's side ---------------------------------------------------------------------
@dataclass
class RoleCheck:
    differences: list[str] = field(default_factory=list)      # the live role contradicts its anchor
    warnings: list[str] = field(default_factory=list)         # canary and freshness problems

    @property
    def ok(self) -> bool:
        return not self.differences


def _fetch(http: httpx.Client, url: str, what: str, check: RoleCheck) -> httpx.Response | None:
    try:
        response = http.get(url)
    except httpx.HTTPError as error:
        check.differences.append(f"{what}: cannot be fetched ({type(error).__name__}: {error})")
        return None
    if response.status_code != 200:
        check.differences.append(f"{what}: HTTP {response.status_code} from {url}")
        return None
    return response


def _compare_certificates(live: bytes, anchored: bytes, check: RoleCheck) -> None:
    if live == anchored:
        return
    try:
        live_doc = json.loads(live)
    except ValueError:
        check.differences.append("birth certificate: the live copy is not JSON")
        return
    anchored_doc = json.loads(anchored)
    if not isinstance(live_doc, dict):
        check.differences.append("birth certificate: the live copy is not a JSON object")
        return
    named = False
    for key in sorted(set(live_doc) | set(anchored_doc)):
        if live_doc.get(key, "<absent>") != anchored_doc.get(key, "<absent>"):
            named = True
            check.differences.append(f"birth certificate field {key!r}: live {live_doc.get(key, '<absent>')!r}, "
                                     f"anchored {anchored_doc.get(key, '<absent>')!r}")
    if not named:
        check.differences.append("birth certificate: the live copy has the anchored fields but is not its "
                                 "canonical (RFC 8785) bytes")


def check_role(base_url: str, identity, birth_tx: bytes, http: httpx.Client, source=None, headers=None, *,
               now: float | None = None) -> RoleCheck:
    """Compare what the role at ``base_url`` serves with its anchored identity (a verified
    PeerIdentity; ``birth_tx`` its anchor transaction, ``proof.tx`` of resolve_anchor). ``http``
    is the caller's client (its TLS settings are the caller's). With ``source`` and ``headers``
    the canary's log inclusion is checked against the chain."""
    now = time.time() if now is None else now
    base = base_url.rstrip("/")
    certificate = identity.certificate
    anchored = certificate.canonical_bytes()
    digest = certificate.digest()
    check = RoleCheck()

    response = _fetch(http, base + BIRTH_CERTIFICATE_PATH, "birth certificate", check)
    if response is not None:
        _compare_certificates(response.content, anchored, check)

    response = _fetch(http, base + METADATA_PATH, "metadata", check)
    if response is None:
        return check
    try:
        meta = response.json()
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        check.differences.append("metadata: not a JSON object")
        return check
    expected = {"certificate_sha256": digest.hex(), "pubkey": certificate.pubkey.hex(),
                "locator": identity.locator.to_json()}
    for key, value in expected.items():
        if meta.get(key) != value:
            check.differences.append(f"metadata {key}: live {meta.get(key)!r}, anchored {value!r}")
    _check_live_signature(meta, certificate.pubkey, digest, now, check)
    _check_revocation(meta, identity, source, check)

    warnings, leaf = check_canary(meta.get("canary"), certificate.pubkey, certificate.name, now)
    check.warnings.extend(warnings)
    if leaf is not None:
        _check_canary_logged(http, base, meta, leaf, identity, birth_tx, source, headers, now, check)
    return check


def _check_live_signature(meta: dict, pubkey: bytes, digest: bytes, now: float, check: RoleCheck) -> None:
    signed_at = meta.get("signed_at")
    if type(signed_at) is not int or not 0 <= signed_at < 2**64:
        check.differences.append("metadata signed_at: missing or not an integer")
        return
    try:
        signature = bytes.fromhex(meta.get("live_signature") or "")
        good = len(signature) == 64 and IdentityKey.verify_statement(
            pubkey, StatementType.LIVE_CERTIFICATE, live_signature_payload(digest, signed_at), signature)
    except (TypeError, ValueError):
        good = False
    if not good:
        check.differences.append("metadata live_signature: does not verify with the anchored key over the "
                                 "anchored certificate's digest")
    elif abs(now - signed_at) > MAX_SIGNATURE_AGE:
        age = int(now - signed_at)
        when = f"is {age} s old" if age > 0 else f"is dated {-age} s ahead"
        check.warnings.append(f"the live signature {when} (replayed, or a clock is wrong)")


def _check_revocation(meta: dict, identity, source, check: RoleCheck) -> None:
    """A spent seal is a difference naming "revoked": by the client's own source when it has
    one (a role cannot be trusted to report its own revocation), or by the role's metadata."""
    seal = getattr(identity, "seal", None)
    if seal is None:
        return                                  # batch-anchored: revoked by its TBS's list
    spender, whose = None, None
    if source is not None:
        try:
            found = seal_spender(identity, source)
        except (ChainError, OSError) as error:
            check.warnings.append(f"the seal's revocation status was not checked ({type(error).__name__}: {error})")
        else:
            if found is not None:
                spender, whose = to_display_hex(found), "the chain source's word"
    said = meta.get("revocation")
    if spender is None and isinstance(said, dict) and said.get("spent") is True:
        spender, whose = str(said.get("spender")), "the role's own metadata"
    if spender is not None:
        check.differences.append(f"revoked: the seal {to_display_hex(seal[0])}:{seal[1]} is spent by {spender} "
                                 f"({whose}, not SPV)")


def _check_canary_logged(http, base, meta, leaf, identity, birth_tx, source, headers, now, check) -> None:
    statement = meta["canary"]["statement"]
    period_seconds = (meta.get("activity_log") or {}).get("period_seconds")
    if source is None or headers is None:
        check.warnings.append("the canary's log inclusion was not checked (no chain source given)")
        return
    try:
        response = http.get(base + INCLUSION_PATH, params={"leaf": leaf.hex()})
    except httpx.HTTPError as error:
        check.warnings.append(f"the canary's log inclusion cannot be fetched ({type(error).__name__})")
        return
    if response.status_code == 409:
        # The current canary's period is still open: normal. One whose period ended a whole
        # period ago should have been anchored by now.
        overdue = type(period_seconds) is int and period_seconds > 0 and \
            period_of(now, period_seconds) > statement["period"] + 1
        if overdue:
            check.warnings.append(f"the canary's log period {statement['period']} is not anchored yet")
        return
    if response.status_code != 200:
        check.warnings.append(f"the canary is not in the activity log (HTTP {response.status_code})")
        return
    try:
        verified = verify_log_inclusion(response.json(), leaf, identity, birth_tx, source, headers)
    except (MilagroError, ValueError) as error:
        check.warnings.append(f"the canary is not in the anchored log: {type(error).__name__}: {error}")
        return
    if verified.period != statement["period"]:
        check.warnings.append(f"the canary says period {statement['period']} but is logged in {verified.period}")
