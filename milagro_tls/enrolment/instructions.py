"""Versioned instruction sets: what a TBS tells its PATs to trust, signed and sealed per PAT.

Body (RFC 8785 canonical JSON):

    {"version": int, strictly increasing per PAT,  "tbs": the TBS's name,  "issued": unix seconds,
     "pat_locator": the PAT's own locator JSON or null,  "pat_proof": hex AnchorProof or null,
     "dta_urls": [url, ...],  "group": name,
     "trust": [{"name", "locator", "roles": [...], "certificate": canonical text, "proof": hex}, ...],
     "revocation": {"pat": RevocationAnswer JSON for the PAT's own certificate digest,
                    "entries": {name: {"seal_spent": bool, "spender": display-hex txid | null}}}}

"revocation" (issue 18) is absent from sets of TBSes that predate it. ``pat`` is the TBS's
answer (chain.revocation_list) about this PAT: the PAT checks it against the TBS's 0x04 chain
(roles.pat). ``entries`` is the TBS's chain source's word on each trust entry's seal (one
with a seal: batch-anchored entries have none); an entry whose seal is spent is revoked, and
the TBS leaves it out of ``trust``.

Signed: ``IdentityKey.sign_statement(StatementType.INSTRUCTIONS, canonical body)`` by the TBS's
anchored identity key. Plaintext = canonical {"body": body, "signature": hex64}.

Sealed blob (AES-128-GCM with the PAT's key from its enrolment request):

    version u32be ‖ nonce 12 ‖ AESGCM(aes_key).encrypt(nonce, plaintext, AD)
    AD = b"milagro-tls instructions v1" ‖ u32be(version)

The version is in clear so that the PAT can refuse an old set before it installs anything, and it
is bound twice: by the tag (AD) and by the signed body, which must name the same version.
``open_instructions`` checks, in order: the tag, the shape, the signature, the version; every
trust entry is then checked against the caller's headers alone by ``verify_instruction_entries``.
"""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..chain.errors import VerificationError
from ..chain.hashes import from_display_hex, to_display_hex
from ..chain.proof import AnchorProof
from ..chain.revocation_list import RevocationAnswer
from ..chain.verify import PeerIdentity, verify_anchor
from ..errors import MalformedInput
from ..identity.certificate import BirthCertificate
from ..identity.keys import IdentityKey, StatementType
from ..identity.locator import Locator
from ..trust import TrustEntry, TrustOrigin, TrustStoreError
from ._json import exact_fields, hex_bytes, integer, loads_strict
from .errors import (InstructionEntryInvalid, InstructionsForged, InstructionsRollback, InstructionsTampered,
                     MalformedInstructions)
from .request import AES_KEY_SIZE

AD_PREFIX = b"milagro-tls instructions v1"
NONCE_SIZE = 12
_HEADER = struct.Struct(">I")
#: A set of 64 entries with certificates and proofs is about 2 MiB of hex; this bounds a hostile one.
MAX_INSTRUCTIONS_SIZE = 4 * 1024 * 1024
MAX_TRUST_ENTRIES = 256
MAX_DTA_URLS = 64
MAX_VERSION = 2**32 - 1
_BODY_FIELDS = {"version", "tbs", "issued", "pat_locator", "pat_proof", "dta_urls", "trust", "group"}
_REVOCATION_FIELD = "revocation"
_ENTRY_FIELDS = {"name", "locator", "roles", "certificate", "proof"}
#: Anchors in a set are checked with this many confirmations by default: a PAT's own batch is
#: sent as soon as it confirms, and the whole set is signed by the TBS besides.
DEFAULT_MIN_CONFIRMATIONS = 1


@dataclass(frozen=True, slots=True)
class InstructionTrust:
    """A trust entry as the TBS sends it: with the certificate and proof that let the PAT
    verify the anchor against its own headers."""
    name: str
    locator: Locator
    roles: tuple[str, ...]
    certificate: BirthCertificate
    proof: AnchorProof

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "locator": self.locator.to_json(), "roles": sorted(self.roles),
                "certificate": self.certificate.canonical_bytes().decode(), "proof": self.proof.encode().hex()}

    @classmethod
    def from_json(cls, doc: Any, where: str = "trust entry") -> "InstructionTrust":
        if not isinstance(doc, dict):
            raise MalformedInstructions(f"{where} is not a JSON object")
        exact_fields(doc, _ENTRY_FIELDS, MalformedInstructions, where)
        roles = doc["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise MalformedInstructions(f"{where}: roles must be a list of non-empty strings")
        if not isinstance(doc["name"], str) or not doc["name"] or not isinstance(doc["certificate"], str):
            raise MalformedInstructions(f"{where}: name and certificate must be strings")
        try:
            return cls(doc["name"], Locator.from_json(doc["locator"]), tuple(sorted(set(roles))),
                       BirthCertificate.parse(doc["certificate"].encode("utf-8")),
                       AnchorProof.decode(hex_bytes(doc["proof"], MalformedInstructions, f"{where} proof")))
        except MalformedInput as exc:
            raise MalformedInstructions(f"{where}: {exc}") from None
        except UnicodeEncodeError:
            raise MalformedInstructions(f"{where}: certificate is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class EntrySeal:
    """A trust entry's seal as the TBS's chain source sees it (its word, mempool included)."""
    name: str
    seal_spent: bool
    spender: bytes | None = None         # txid, wire order; set exactly when spent

    def __post_init__(self) -> None:
        if type(self.seal_spent) is not bool or (self.spender is not None) != self.seal_spent:
            raise ValueError("a spent seal names its spender, an unspent one none")
        if self.spender is not None and (not isinstance(self.spender, bytes) or len(self.spender) != 32):
            raise ValueError("a spender is a 32-byte txid")

    def to_json(self) -> dict[str, Any]:
        return {"seal_spent": self.seal_spent,
                "spender": to_display_hex(self.spender) if self.spender is not None else None}


@dataclass(frozen=True, slots=True)
class InstructionRevocation:
    """The revocation status a set carries: the TBS's answer for the PAT itself and the seals
    of the trust entries (sorted by name)."""
    pat: RevocationAnswer
    entries: tuple[EntrySeal, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.pat, RevocationAnswer):
            raise ValueError("pat is the TBS's RevocationAnswer")
        names = [entry.name for entry in self.entries]
        if len(set(names)) != len(names):
            raise ValueError("one seal status per entry name")
        object.__setattr__(self, "entries", tuple(sorted(self.entries, key=lambda entry: entry.name)))

    def entry(self, name: str) -> EntrySeal | None:
        return next((entry for entry in self.entries if entry.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"pat": self.pat.to_json(), "entries": {entry.name: entry.to_json() for entry in self.entries}}

    @classmethod
    def from_json(cls, doc: Any) -> "InstructionRevocation":
        if not isinstance(doc, dict):
            raise MalformedInstructions("revocation is not a JSON object")
        exact_fields(doc, {"pat", "entries"}, MalformedInstructions, "revocation")
        try:
            pat = RevocationAnswer.from_json(doc["pat"])
        except MalformedInput as exc:
            raise MalformedInstructions(f"revocation pat: {exc}") from None
        entries = doc["entries"]
        if not isinstance(entries, dict) or len(entries) > MAX_TRUST_ENTRIES:
            raise MalformedInstructions(f"revocation entries is an object of at most {MAX_TRUST_ENTRIES} names")
        seals = []
        for name, item in entries.items():
            where = f"revocation entry {name[:64]!r}"
            if not name or not isinstance(item, dict):
                raise MalformedInstructions(f"{where} is not a named JSON object")
            exact_fields(item, {"seal_spent", "spender"}, MalformedInstructions, where)
            spender = item["spender"]
            if spender is not None:
                if not isinstance(spender, str) or len(spender) != 64 or spender != spender.lower():
                    raise MalformedInstructions(f"{where}: spender is a 64-hex txid or null")
                try:
                    spender = from_display_hex(spender)
                except ValueError:
                    raise MalformedInstructions(f"{where}: spender is a 64-hex txid or null") from None
            try:
                seals.append(EntrySeal(name, item["seal_spent"], spender))
            except ValueError as exc:
                raise MalformedInstructions(f"{where}: {exc}") from None
        return cls(pat, tuple(seals))


@dataclass(frozen=True, slots=True, kw_only=True)
class InstructionSet:
    version: int
    tbs: str
    group: str
    dta_urls: tuple[str, ...] = ()
    trust: tuple[InstructionTrust, ...] = ()
    pat_locator: Locator | None = None
    pat_proof: AnchorProof | None = None
    issued: int = field(default_factory=lambda: int(time.time()))
    revocation: InstructionRevocation | None = None

    def __post_init__(self) -> None:
        integer(self.version, ValueError, "instruction version", low=1, high=MAX_VERSION)
        if (self.pat_locator is None) != (self.pat_proof is None):
            raise ValueError("pat_locator and pat_proof come together")

    def to_json(self) -> dict[str, Any]:
        doc = {"version": self.version, "tbs": self.tbs, "issued": self.issued, "group": self.group,
               "pat_locator": self.pat_locator.to_json() if self.pat_locator else None,
               "pat_proof": self.pat_proof.encode().hex() if self.pat_proof else None,
               "dta_urls": list(self.dta_urls), "trust": [entry.to_json() for entry in self.trust]}
        if self.revocation is not None:          # absent, not null: sets without it stay as they were
            doc[_REVOCATION_FIELD] = self.revocation.to_json()
        return doc

    def canonical_bytes(self) -> bytes:
        return rfc8785.dumps(self.to_json())

    @classmethod
    def from_json(cls, doc: Any) -> "InstructionSet":
        if not isinstance(doc, dict):
            raise MalformedInstructions("instruction body is not a JSON object")
        exact_fields(doc, _BODY_FIELDS | ({_REVOCATION_FIELD} & set(doc)), MalformedInstructions, "instruction body")
        version = integer(doc["version"], MalformedInstructions, "instruction version", low=1, high=MAX_VERSION)
        issued = integer(doc["issued"], MalformedInstructions, "instruction issued time")
        for name in ("tbs", "group"):
            if not isinstance(doc[name], str) or not doc[name]:
                raise MalformedInstructions(f"instruction {name} must be a non-empty string")
        urls, trust = doc["dta_urls"], doc["trust"]
        if not isinstance(urls, list) or len(urls) > MAX_DTA_URLS or not all(
                isinstance(u, str) and u.startswith(("https://", "http://")) for u in urls):
            raise MalformedInstructions(f"dta_urls must be a list of at most {MAX_DTA_URLS} http(s) URLs")
        if not isinstance(trust, list) or len(trust) > MAX_TRUST_ENTRIES:
            raise MalformedInstructions(f"trust must be a list of at most {MAX_TRUST_ENTRIES} entries")
        if (doc["pat_locator"] is None) != (doc["pat_proof"] is None):
            raise MalformedInstructions("pat_locator and pat_proof come together")
        try:
            pat_locator = Locator.from_json(doc["pat_locator"]) if doc["pat_locator"] is not None else None
            pat_proof = (AnchorProof.decode(hex_bytes(doc["pat_proof"], MalformedInstructions, "pat_proof"))
                         if doc["pat_proof"] is not None else None)
        except MalformedInput as exc:
            raise MalformedInstructions(f"the PAT's own anchor: {exc}") from None
        entries = tuple(InstructionTrust.from_json(item, f"trust entry {i}") for i, item in enumerate(trust))
        revocation = (InstructionRevocation.from_json(doc[_REVOCATION_FIELD]) if _REVOCATION_FIELD in doc
                      else None)
        return cls(version=version, tbs=doc["tbs"], group=doc["group"], dta_urls=tuple(urls), trust=entries,
                   pat_locator=pat_locator, pat_proof=pat_proof, issued=issued, revocation=revocation)


def _associated_data(version: int) -> bytes:
    return AD_PREFIX + _HEADER.pack(version)


def seal_instructions(instructions: InstructionSet, tbs_key: IdentityKey, aes_key: bytes) -> bytes:
    """Sign the canonical body with the TBS's identity key and seal it for one PAT."""
    if len(aes_key) != AES_KEY_SIZE:
        raise ValueError("the instructions key is 16 bytes (AES-128)")
    body = instructions.canonical_bytes()
    signature = tbs_key.sign_statement(StatementType.INSTRUCTIONS, body)
    plaintext = rfc8785.dumps({"body": instructions.to_json(), "signature": signature.hex()})
    nonce = os.urandom(NONCE_SIZE)
    sealed = (_HEADER.pack(instructions.version) + nonce
              + AESGCM(aes_key).encrypt(nonce, plaintext, _associated_data(instructions.version)))
    if len(sealed) > MAX_INSTRUCTIONS_SIZE:
        raise ValueError(f"sealed instruction set of {len(sealed)} bytes exceeds {MAX_INSTRUCTIONS_SIZE}")
    return sealed


def sealed_version(blob: bytes) -> int:
    """The version a sealed blob claims, unauthenticated (only for logs and quick refusals)."""
    if len(blob) < _HEADER.size + NONCE_SIZE + 16:
        raise MalformedInstructions("sealed instruction set truncated")
    return _HEADER.unpack_from(blob)[0]


def open_instructions(aes_key: bytes, blob: bytes, tbs_pubkey: bytes, *, installed_version: int = 0,
                      tbs_name: str | None = None) -> InstructionSet:
    """Authenticate, verify and parse a sealed set; raise an InstructionsRefused subclass.

    ``tbs_pubkey`` is the TBS's identity key from its *verified* anchored certificate;
    ``installed_version`` the PAT's current version (0: none yet). With ``tbs_name`` the set
    must name that TBS. Nothing in the blob is trusted before the tag and signature verify."""
    if not isinstance(blob, (bytes, bytearray)):
        raise MalformedInstructions("a sealed instruction set is bytes")
    if len(blob) > MAX_INSTRUCTIONS_SIZE:
        raise MalformedInstructions(f"sealed instruction set of {len(blob)} bytes exceeds {MAX_INSTRUCTIONS_SIZE}")
    version = sealed_version(blob)
    nonce = bytes(blob[_HEADER.size:_HEADER.size + NONCE_SIZE])
    try:
        plaintext = AESGCM(aes_key).decrypt(nonce, bytes(blob[_HEADER.size + NONCE_SIZE:]),
                                           _associated_data(version))
    except InvalidTag:
        raise InstructionsTampered("instruction set does not authenticate under this PAT's key "
                                   "(tag mismatch: altered, or sealed for another PAT)") from None
    doc = loads_strict(plaintext, MalformedInstructions, "instruction set")
    exact_fields(doc, {"body", "signature"}, MalformedInstructions, "instruction set")
    signature = hex_bytes(doc["signature"], MalformedInstructions, "instruction signature", length=64)
    if not isinstance(doc["body"], dict):
        raise MalformedInstructions("instruction body is not a JSON object")
    try:
        body = rfc8785.dumps(doc["body"])
    except Exception as exc:             # rfc8785 refuses floats out of range, lone surrogates, ...
        raise MalformedInstructions(f"instruction body cannot be canonicalised: {type(exc).__name__}") from None
    try:
        valid = IdentityKey.verify_statement(tbs_pubkey, StatementType.INSTRUCTIONS, body, signature)
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise InstructionsForged("instruction set is not signed by the TBS's anchored identity key")
    instructions = InstructionSet.from_json(doc["body"])
    if instructions.version != version:
        raise MalformedInstructions(f"sealed version {version} differs from the signed version {instructions.version}")
    if tbs_name is not None and instructions.tbs != tbs_name:
        raise MalformedInstructions(f"instruction set is for TBS {instructions.tbs!r}, not {tbs_name!r}")
    if instructions.version <= installed_version:
        raise InstructionsRollback(instructions.version, installed_version)
    return instructions


def verify_pat_anchor(instructions: InstructionSet, certificate: BirthCertificate, headers, *,
                      min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> PeerIdentity:
    """The PAT's own locator and proof from the set, verified with its own certificate."""
    if instructions.pat_locator is None or instructions.pat_proof is None:
        raise InstructionEntryInvalid("the instruction set carries no locator for this PAT")
    try:
        return verify_anchor(instructions.pat_locator, certificate, instructions.pat_proof, headers,
                             min_confirmations=min_confirmations)
    except VerificationError as exc:
        raise InstructionEntryInvalid(f"the PAT's own anchor: {type(exc).__name__}: {exc}") from None


def verify_instruction_entries(instructions: InstructionSet, headers, *,
                               pat_certificate: BirthCertificate | None = None,
                               min_confirmations: int = DEFAULT_MIN_CONFIRMATIONS) -> list[TrustEntry]:
    """Every trust entry's locator, certificate and proof verified against ``headers`` alone
    (chain.verify.verify_anchor, no network), as TrustEntry objects with origin TBS. With
    ``pat_certificate`` the PAT's own locator and proof must verify too. InstructionEntryInvalid
    names the first entry that does not."""
    if pat_certificate is not None:
        verify_pat_anchor(instructions, pat_certificate, headers, min_confirmations=min_confirmations)
    entries = []
    for index, item in enumerate(instructions.trust):
        try:
            verify_anchor(item.locator, item.certificate, item.proof, headers, min_confirmations=min_confirmations)
            entries.append(TrustEntry(item.name, item.locator, frozenset(item.roles), TrustOrigin.TBS))
        except VerificationError as exc:
            raise InstructionEntryInvalid(
                f"trust entry {index} ({item.name!r}): {type(exc).__name__}: {exc}") from None
        except TrustStoreError as exc:
            raise InstructionEntryInvalid(f"trust entry {index} ({item.name!r}): {exc}") from None
    return entries
