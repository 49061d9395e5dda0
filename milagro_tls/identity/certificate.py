"""The Birth Certificate: a versioned JSON document in RFC 8785 (JCS) canonical form.

Its SHA256 over the canonical bytes is what the type-0x01 marker commits to.
A name in a certificate proves nothing by itself: trust comes from pinning its
locator (see the handshake's trust store), never from what the document says.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import coincurve
import rfc8785

from ..chain.network import Network
from ..errors import MalformedInput
from .marker import MarkerType

VERSION = 1
_NETWORKS = {network.label for network in Network}
ROLES = ("dta", "idp", "tbs", "pat", "service")
#: Certificates travel inside handshakes, so they are bounded like any handshake field.
MAX_CERTIFICATE_SIZE = 8192
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$")
_REQUIRED = {"version", "role", "name", "urls", "created", "network", "pubkey"}
_OPTIONAL = {"role_data", "previous", "batch_key", "root_chains"}
#: Marker types a root chain may carry (the birth certificate's own type 0x01 is not one).
ROOT_CHAIN_TYPES = frozenset({MarkerType.BATCH_ROOT, MarkerType.ACTIVITY_LOG_ROOT,
                              MarkerType.REVOCATION_LIST_ROOT})
_ROOT_CHAIN_FIELDS = {"type", "key"}


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RootChainEntry:
    """One anchor chain the certificate announces: roots of ``type`` are valid only in
    transactions that spend the previous link's output locked to ``key`` (chain.rootchain)."""
    type: MarkerType
    key: bytes                             # compressed secp256k1 chain key, 33 bytes

    def __post_init__(self) -> None:
        # type() rather than isinstance: JSON true is an int in Python.
        if type(self.type) not in (int, MarkerType) or self.type not in ROOT_CHAIN_TYPES:
            raise MalformedInput(f"root chain type {self.type!r} is not one of 2, 3, 4")
        object.__setattr__(self, "type", MarkerType(self.type))
        if not isinstance(self.key, bytes) or len(self.key) != 33 or self.key[0] not in (2, 3):
            raise MalformedInput("root chain key must be a compressed (33-byte) secp256k1 key")
        try:
            coincurve.PublicKey(self.key)
        except Exception:
            raise MalformedInput("root chain key is not a valid secp256k1 point") from None

    def to_json(self) -> dict[str, Any]:
        return {"type": int(self.type), "key": self.key.hex()}

    @classmethod
    def from_json(cls, doc: Any) -> "RootChainEntry":
        if not isinstance(doc, dict):
            raise MalformedInput("a root chain entry is a JSON object")
        if set(doc) != _ROOT_CHAIN_FIELDS:
            raise MalformedInput(f"a root chain entry has exactly the fields {sorted(_ROOT_CHAIN_FIELDS)}, "
                                 f"not {sorted(doc)}")
        if not isinstance(doc["key"], str):
            raise MalformedInput("root chain key must be a hex string")
        try:
            key = bytes.fromhex(doc["key"])
        except ValueError:
            raise MalformedInput("root chain key is not hex") from None
        return cls(doc["type"], key)


@dataclass(frozen=True, slots=True, kw_only=True)
class BirthCertificate:
    role: str
    name: str
    pubkey: bytes                          # compressed secp256k1 identity key, 33 bytes
    network: str                           # Network.label
    urls: tuple[str, ...] = ()
    created: str = field(default_factory=_utc_now)   # RFC 3339, UTC, seconds
    role_data: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None           # JSON form of the locator this one rotates from
    batch_key: bytes | None = None                   # x-only TBS batching key (batch-anchored PATs)
    #: Anchor chains, in birth-anchor order: chain i starts at the anchor's output 2 + i.
    #: Empty means the field is absent, so certificates without chains keep their bytes.
    root_chains: tuple[RootChainEntry, ...] = ()
    version: int = VERSION
    # Canonicalisation costs ~0.1 ms and handshakes need the digest several times.
    _canonical: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # type() rather than ==: JSON true equals 1 in Python and would pass as version 1.
        if type(self.version) is not int or self.version != VERSION:
            raise MalformedInput(f"unsupported birth certificate version {self.version!r}")
        if self.network not in _NETWORKS:
            raise MalformedInput(f"unknown network {self.network!r}")
        for name, value in (("role_data", self.role_data), ("previous", self.previous)):
            if value is not None and not isinstance(value, dict):
                raise MalformedInput(f"{name} must be a JSON object")
        if not isinstance(self.urls, tuple):
            raise MalformedInput("urls must be a list of strings")
        if self.role not in ROLES:
            raise MalformedInput(f"unknown role {self.role!r}")
        if not _NAME.match(self.name):
            raise MalformedInput(f"name {self.name!r} is not a valid identity name")
        try:
            coincurve.PublicKey(self.pubkey)
        except Exception:
            raise MalformedInput("pubkey is not a valid secp256k1 point") from None
        if len(self.pubkey) != 33:
            raise MalformedInput("pubkey must be compressed (33 bytes)")
        if self.batch_key is not None and len(self.batch_key) != 32:
            raise MalformedInput("batch_key must be a 32-byte x-only key")
        self._check_root_chains()
        if not all(isinstance(u, str) for u in self.urls):
            raise MalformedInput("urls must be strings")
        try:
            _dt.datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            raise MalformedInput("created must be an RFC 3339 timestamp") from None

    def _check_root_chains(self) -> None:
        if not isinstance(self.root_chains, tuple) or not all(
                isinstance(entry, RootChainEntry) for entry in self.root_chains):
            raise MalformedInput("root_chains must be a list of root chain entries")
        types = [entry.type for entry in self.root_chains]
        if len(set(types)) != len(types):
            raise MalformedInput("root_chains names a type twice: one chain per type")
        # The verifier finds the seal as the output paying the identity key: a chain output
        # to the same key would make that ambiguous (and tie the chain to the seal).
        if any(entry.key == self.pubkey for entry in self.root_chains):
            raise MalformedInput("a root chain key must differ from the identity key")

    def root_chain(self, root_type: int) -> tuple[int, RootChainEntry] | None:
        """(position, entry) of the chain carrying ``root_type``, or None."""
        for index, entry in enumerate(self.root_chains):
            if entry.type == root_type:
                return index, entry
        return None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": self.version,
            "role": self.role,
            "name": self.name,
            "urls": list(self.urls),
            "created": self.created,
            "network": self.network,
            "pubkey": self.pubkey.hex(),
        }
        if self.role_data is not None:
            doc["role_data"] = self.role_data
        if self.previous is not None:
            doc["previous"] = self.previous
        if self.batch_key is not None:
            doc["batch_key"] = self.batch_key.hex()
        if self.root_chains:
            doc["root_chains"] = [entry.to_json() for entry in self.root_chains]
        return doc

    def canonical_bytes(self) -> bytes:
        if self._canonical is None:
            object.__setattr__(self, "_canonical", rfc8785.dumps(self.to_json()))
        return self._canonical

    def digest(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()

    @classmethod
    def from_json(cls, doc: Any) -> "BirthCertificate":
        if not isinstance(doc, dict):
            raise MalformedInput("a birth certificate is a JSON object")
        keys = set(doc)
        if not _REQUIRED <= keys:
            raise MalformedInput(f"birth certificate lacks {sorted(_REQUIRED - keys)}")
        if keys - _REQUIRED - _OPTIONAL:
            raise MalformedInput(f"unknown birth certificate fields {sorted(keys - _REQUIRED - _OPTIONAL)}")
        try:
            return cls(
                version=doc["version"],
                role=doc["role"],
                name=doc["name"],
                urls=tuple(doc["urls"]) if isinstance(doc["urls"], list) else doc["urls"],
                created=doc["created"],
                network=doc["network"],
                pubkey=bytes.fromhex(doc["pubkey"]),
                role_data=doc.get("role_data"),
                previous=doc.get("previous"),
                batch_key=bytes.fromhex(doc["batch_key"]) if "batch_key" in doc else None,
                root_chains=cls._root_chains_from_json(doc),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MalformedInput):
                raise
            raise MalformedInput(f"birth certificate field has the wrong type: {exc}") from None

    @staticmethod
    def _root_chains_from_json(doc: dict[str, Any]) -> tuple[RootChainEntry, ...]:
        if "root_chains" not in doc:
            return ()
        chains = doc["root_chains"]
        # An empty list would be a second encoding of "no chains": one form only.
        if not isinstance(chains, list) or not chains:
            raise MalformedInput("root_chains must be a non-empty list")
        return tuple(RootChainEntry.from_json(entry) for entry in chains)

    @classmethod
    def parse(cls, raw: bytes) -> "BirthCertificate":
        """Parse bytes that must already be canonical: the digest is over exactly these bytes."""
        if len(raw) > MAX_CERTIFICATE_SIZE:
            raise MalformedInput(f"birth certificate exceeds {MAX_CERTIFICATE_SIZE} bytes")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: 8 KiB of "[" nests deeper than json's recursion limit.
            raise MalformedInput("birth certificate is not JSON") from None
        cert = cls.from_json(doc)
        if cert.canonical_bytes() != raw:
            raise MalformedInput("birth certificate is not in RFC 8785 canonical form")
        return cert
