"""Trust entries for a device group, checked against the chain before the TBS hands them out.

An entry, as stored with its group and sent in instruction sets, is
``{"name", "locator", "roles", "certificate": canonical text, "proof": hex AnchorProof}``.
It comes in two ways:

* pasted JSON (one entry or a list): the certificate is required (the chain holds only its
  digest); the proof is optional and fetched from the TBS's chain source when absent. Either
  way it is verified with ``chain.verify`` against the TBS's own header chain.
* fetched from a role's normative URL: ``/.well-known/milagro/birth-certificate`` and
  ``/metadata`` give the certificate and the locator; the anchor is resolved and verified,
  then ``roles.wellknown.check_role`` compares the live role with its anchor. Any difference
  refuses the entry; canary problems come back as warnings for the admin to read.

The certificate's name is the anchoring party's own claim: the admin sees the verified name,
role and anchor txid, and may pin the expected locator so a wrong server cannot slip in.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ....chain.proof import AnchorProof
from ....chain.verify import PeerIdentity, resolve_anchor, verify_anchor
from ....errors import MilagroError
from ....identity.certificate import BirthCertificate
from ....identity.locator import Locator
from ....trust import TrustEntry
from ...wellknown import BIRTH_CERTIFICATE_PATH, METADATA_PATH, check_role

#: A pasted document larger than this is refused before parsing.
MAX_PASTE = 256 * 1024
MAX_ENTRIES = 64
#: Largest certificate or metadata document accepted from a role.
MAX_FETCH = 64 * 1024
ENTRY_FIELDS = {"name", "locator", "roles", "certificate", "proof"}


class TrustCheckError(MilagroError):
    """An entry is malformed or does not verify; the message is meant for the admin."""


class ChainAccess:
    """The TBS's chain source and header chain. One HeaderChain per process is shared by the
    worker's request threads, so syncing and verifying happen under one lock."""

    def __init__(self, source, headers) -> None:
        self.source = source
        self.headers = headers
        self.lock = threading.Lock()

    def resolve(self, locator: Locator, certificate: BirthCertificate) -> tuple[PeerIdentity, AnchorProof]:
        with self.lock:
            return resolve_anchor(locator, certificate, self.source, self.headers)

    def verify(self, locator: Locator, certificate: BirthCertificate, proof: AnchorProof) -> PeerIdentity:
        with self.lock:
            self.headers.sync_from(self.source)
            return verify_anchor(locator, certificate, proof, self.headers)


@dataclass
class VerifiedTrust:
    entry: dict
    identity: PeerIdentity
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        """What the admin reads: the verified name, role, anchor and depth."""
        return {"name": self.entry["name"], "roles": self.entry["roles"],
                "certificate_name": self.identity.certificate.name, "role": self.identity.certificate.role,
                "txid": self.identity.locator.txid_hex, "height": self.identity.height,
                "confirmations": self.identity.confirmations, "warnings": list(self.warnings)}


def _roles(value, default: str) -> list[str]:
    if value is None:
        return [default]
    if not isinstance(value, list) or not value or not all(isinstance(r, str) and r.strip() for r in value):
        raise TrustCheckError("roles must be a non-empty list of role names")
    return sorted({r.strip() for r in value})


def entry_document(name: str, roles: list[str], identity: PeerIdentity, proof: AnchorProof) -> dict:
    # TrustEntry checks the name and roles the way every trust store will.
    TrustEntry(name, identity.locator, frozenset(roles))
    return {"name": name, "locator": identity.locator.to_json(), "roles": roles,
            "certificate": identity.certificate.canonical_bytes().decode(), "proof": proof.encode().hex()}


def _parse_certificate(value) -> BirthCertificate:
    if isinstance(value, str):
        return BirthCertificate.parse(value.encode())
    if isinstance(value, dict):
        return BirthCertificate.from_json(value)
    raise TrustCheckError("certificate must be the canonical certificate text or its JSON object")


def _verify_one(doc, chain: ChainAccess, where: str) -> VerifiedTrust:
    if not isinstance(doc, dict):
        raise TrustCheckError(f"{where}: a trust entry is a JSON object")
    if unknown := set(doc) - ENTRY_FIELDS:
        raise TrustCheckError(f"{where}: unknown fields {sorted(unknown)}")
    if missing := {"locator", "certificate"} - set(doc):
        raise TrustCheckError(f"{where}: missing {sorted(missing)} (the chain holds only the certificate's "
                              "digest, so the certificate itself is needed)")
    try:
        certificate = _parse_certificate(doc["certificate"])
        locator = Locator.from_json(doc["locator"])
        if doc.get("proof") is not None:
            proof = AnchorProof.decode(bytes.fromhex(doc["proof"]))
            identity = chain.verify(locator, certificate, proof)
        else:
            identity, proof = chain.resolve(locator, certificate)
        name = doc.get("name", certificate.name)
        if not isinstance(name, str) or not name.strip():
            raise TrustCheckError("name must be a non-empty string")
        entry = entry_document(name.strip(), _roles(doc.get("roles"), certificate.role), identity, proof)
    except TrustCheckError as error:
        raise TrustCheckError(f"{where}: {error}") from None
    except (MilagroError, ValueError, TypeError) as error:
        raise TrustCheckError(f"{where}: {type(error).__name__}: {error}") from None
    return VerifiedTrust(entry, identity, list(identity.warnings))


def verify_pasted(text: str, chain: ChainAccess) -> list[VerifiedTrust]:
    """Every entry in pasted JSON (an object or a list), each verified against the chain."""
    if len(text.encode()) > MAX_PASTE:
        raise TrustCheckError(f"pasted trust entries exceed {MAX_PASTE} bytes")
    try:
        doc = json.loads(text)
    except ValueError as error:
        raise TrustCheckError(f"not JSON: {error}") from None
    docs = doc if isinstance(doc, list) else [doc]
    if not docs or len(docs) > MAX_ENTRIES:
        raise TrustCheckError(f"paste 1 to {MAX_ENTRIES} trust entries")
    verified = [_verify_one(item, chain, f"entry {i + 1}") for i, item in enumerate(docs)]
    names = [v.entry["name"] for v in verified]
    if len(set(names)) != len(names):
        raise TrustCheckError("two pasted entries have the same name")
    return verified


def check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise TrustCheckError("a role's URL is https://host[:port][/path] without query, fragment or user")
    return base_url.strip().rstrip("/")


def _get_json(http: httpx.Client, url: str, what: str) -> tuple[bytes, object]:
    try:
        response = http.get(url)
    except httpx.HTTPError as error:
        raise TrustCheckError(f"{what}: cannot be fetched from {url} ({type(error).__name__}: {error})") from None
    if response.status_code != 200:
        raise TrustCheckError(f"{what}: HTTP {response.status_code} from {url}")
    if len(response.content) > MAX_FETCH:
        raise TrustCheckError(f"{what}: larger than {MAX_FETCH} bytes")
    try:
        return response.content, json.loads(response.content)
    except ValueError:
        raise TrustCheckError(f"{what}: not JSON") from None


def fetch_from_role(base_url: str, http: httpx.Client, chain: ChainAccess, *, name: str | None = None,
                    roles: list[str] | None = None, expected_locator: dict | None = None) -> VerifiedTrust:
    """The role at ``base_url`` as a verified entry: its anchor resolved on the TBS's chain and
    its live certificate and metadata compared with the anchor (check_role)."""
    base = check_base_url(base_url)
    raw_certificate, _ = _get_json(http, base + BIRTH_CERTIFICATE_PATH, "birth certificate")
    _, meta = _get_json(http, base + METADATA_PATH, "metadata")
    if not isinstance(meta, dict) or "locator" not in meta:
        raise TrustCheckError("metadata: no locator")
    try:
        certificate = BirthCertificate.parse(raw_certificate)
        locator = Locator.from_json(meta["locator"])
        if expected_locator is not None and Locator.from_json(expected_locator) != locator:
            raise TrustCheckError(f"the role at {base} serves the anchor {locator.txid_hex}, "
                                  "not the expected locator")
        identity, proof = chain.resolve(locator, certificate)
        with chain.lock:
            check = check_role(base, identity, proof.tx, http, chain.source, chain.headers)
        if check.differences:
            raise TrustCheckError(f"the role at {base} contradicts its anchor: " + "; ".join(check.differences))
        entry = entry_document((name or certificate.name).strip(), _roles(roles, certificate.role), identity, proof)
    except TrustCheckError:
        raise
    except (MilagroError, ValueError, TypeError) as error:
        raise TrustCheckError(f"{base}: {type(error).__name__}: {error}") from None
    return VerifiedTrust(entry, identity, [*identity.warnings, *check.warnings])


def public_entry(entry: dict) -> dict:
    """An entry without its bulky certificate and proof, for listings."""
    locator = Locator.from_json(entry["locator"])
    return {"name": entry["name"], "roles": list(entry["roles"]), "locator": entry["locator"],
            "txid": locator.txid_hex}
