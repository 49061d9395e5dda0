"""The trust store: which anchored identities this party accepts, and under which names.

Trust is pinned, never self-asserted. Anyone can anchor a certificate saying
``name = your-bank.example`` for the price of one transaction, so the name in a verified
certificate proves nothing. A peer is authenticated only when its verified anchor is
pinned in the caller's store, and then under the store's name and roles.

    TrustError                  the handshake maps every one of these to one alert
     ├── TrustStoreError        a trust file or web-PKI metadata document is unusable
     └── PeerNotTrusted         the verified anchor is not pinned, under that name or role
"""
from __future__ import annotations

import enum
import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit

import httpx

from .chain.verify import PeerIdentity
from .errors import MalformedInput, MilagroError
from .identity.files import write_atomically
from .identity.locator import Locator

log = logging.getLogger(__name__)

#: A locator's JSON is under 5 KiB even with the largest body (MAX_BODY, hex); 64 KiB leaves room
#: for name, roles and whatever else a metadata document carries, and bounds a hostile server.
MAX_METADATA_SIZE = 64 * 1024
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class TrustError(MilagroError):
    """Root of the trust store's errors; the handshake sends one alert for all of them."""


class TrustStoreError(TrustError):
    """A trust file, an entry or a web-PKI metadata document is unusable."""


class PeerNotTrusted(TrustError):
    """The peer's verified anchor is not pinned, is pinned under another name, or its
    entry's roles are not allowed. The message says which; it goes to the log, not the peer."""


class TrustOrigin(enum.Enum):
    """Where an entry came from, and so what vouches for it."""
    PINNED = "pinned"       # the operator, for example from Party.trust_entry()
    WEB_PKI = "web-pki"     # fetched once over HTTPS: a certificate authority vouched for the host
    TBS = "tbs"             # a trust bootstrap service


def _fold(name: str) -> str:
    """ASCII case folding, as for DNS names (RFC 4343); str.lower() would also fold non-ASCII."""
    return name.translate(_ASCII_LOWER)


def _anchor_of(locator: Locator) -> tuple:
    """What identifies an anchor. The block hash is left out: a reorg may re-mine the same
    transaction in another block, and the verifier has already checked the stapled block."""
    return locator.network, locator.kind, locator.txid, locator.input_index, locator.body


def _describe(locator: Locator) -> str:
    return f"{locator.network.label} {locator.kind.label} {locator.txid_hex}:{locator.input_index}"


@dataclass(frozen=True, slots=True)
class TrustEntry:
    """One pinned identity: the name and roles this store gives the anchor at ``locator``."""
    name: str
    locator: Locator
    roles: frozenset[str]
    origin: TrustOrigin = TrustOrigin.PINNED

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name and isinstance(self.locator, Locator)
                and isinstance(self.origin, TrustOrigin)):
            raise TrustStoreError("a trust entry has a non-empty name, a Locator and a TrustOrigin")
        if not isinstance(self.roles, (frozenset, set, list, tuple)) or not all(
                isinstance(role, str) and role for role in self.roles):
            raise TrustStoreError("a trust entry's roles are non-empty strings")
        object.__setattr__(self, "roles", frozenset(self.roles))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "locator": self.locator.to_json(),
                               "roles": sorted(self.roles)}
        if self.origin is not TrustOrigin.PINNED:
            doc["origin"] = self.origin.value
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> "TrustEntry":
        if not isinstance(doc, dict):
            raise TrustStoreError("a trust entry is a JSON object")
        if unknown := set(doc) - {"name", "locator", "roles", "origin"}:
            raise TrustStoreError(f"unknown trust entry fields {sorted(unknown)}")
        if missing := {"name", "locator", "roles"} - set(doc):
            raise TrustStoreError(f"trust entry lacks {sorted(missing)}")
        if not isinstance(doc["name"], str):
            raise TrustStoreError("trust entry name must be a string")
        if not isinstance(doc["roles"], list) or not all(isinstance(role, str) for role in doc["roles"]):
            raise TrustStoreError("trust entry roles must be a list of strings")
        try:
            locator = Locator.from_json(doc["locator"])
            origin = TrustOrigin(doc.get("origin", TrustOrigin.PINNED.value))
        except MalformedInput as exc:
            raise TrustStoreError(f"trust entry {doc['name']!r}: {exc}") from None
        except ValueError:
            raise TrustStoreError(f"unknown trust entry origin {doc['origin']!r}") from None
        return cls(doc["name"], locator, frozenset(doc["roles"]), origin)


class TrustStore:
    """Pinned entries in order. One name may be pinned to several anchors (a key rotation),
    and one anchor under several names; the same name and anchor twice is refused."""

    def __init__(self, entries: Iterable[TrustEntry] = ()) -> None:
        self._entries: list[TrustEntry] = []
        for entry in entries:
            self.add(entry)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrustStore":
        """Read a JSON list of entries, as ``Party.trust_entry()`` emits them."""
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise TrustStoreError(f"cannot read trust file {path}: {exc.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TrustStoreError(f"trust file {path} is not JSON: {exc}") from None
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: Any) -> "TrustStore":
        if not isinstance(doc, list):
            raise TrustStoreError("a trust store is a JSON list of entries")
        store = cls()
        for index, item in enumerate(doc):
            try:
                store.add(TrustEntry.from_json(item))
            except TrustStoreError as exc:
                raise TrustStoreError(f"entry {index}: {exc}") from None
        return store

    def to_json(self) -> list[dict[str, Any]]:
        return [entry.to_json() for entry in self._entries]

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically, mode 0644: the store holds no secrets, and services read it."""
        path = Path(path)
        write_atomically(path, json.dumps(self.to_json(), indent=2) + "\n")
        os.chmod(path, 0o644)

    def add(self, entry: TrustEntry) -> None:
        if any(_fold(e.name) == _fold(entry.name) and _anchor_of(e.locator) == _anchor_of(entry.locator)
               for e in self._entries):
            raise TrustStoreError(f"{entry.name!r} is already pinned to {_describe(entry.locator)}")
        self._entries.append(entry)

    def remove(self, name: str) -> None:
        """Remove every entry of this name (ASCII case-insensitive); TrustStoreError if none."""
        kept = [e for e in self._entries if _fold(e.name) != _fold(name)]
        if len(kept) == len(self._entries):
            raise TrustStoreError(f"no trust entry named {name!r}")
        self._entries = kept

    @property
    def entries(self) -> tuple[TrustEntry, ...]:
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[TrustEntry]:
        return iter(self.entries)       # a snapshot: remove() while iterating is safe

    def entries_for(self, locator: Locator) -> tuple[TrustEntry, ...]:
        """The entries pinned to this anchor, in store order (the block hash is not compared)."""
        return tuple(e for e in self._entries if _anchor_of(e.locator) == _anchor_of(locator))

    def trust_on_first_use_via_web_pki(self, url: str, *, name: str | None = None,
                                       roles: Iterable[str] | None = None,
                                       verify: ssl.SSLContext | str | os.PathLike | bool = True,
                                       timeout: float = 10.0) -> TrustEntry:
        """Fetch ``{"locator", "name"?, "roles"?}`` from ``url`` over HTTPS and pin it (unsaved).

        The web PKI becomes the root of trust for this entry: a certificate authority that
        ``verify`` trusts (an ssl.SSLContext, a CA bundle path, or True for the system store;
        never off) vouches for the host, and the host for the anchor. The name is ``name``, else
        the URL's host: the CA vouches for that host only, so a document naming another host
        (``https://evil.example/`` saying ``"name": "your-bank.example"``) is ignored, with a
        warning. A name already pinned to another anchor is never replaced: first use means first.
        """
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise TrustStoreError("trust metadata is fetched only over https:// URLs")
        # For messages and the log: without user:password@, query or fragment, which may hold secrets.
        where = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()
        if verify is False or (isinstance(verify, ssl.SSLContext)
                               and (verify.verify_mode != ssl.CERT_REQUIRED or not verify.check_hostname)):
            raise TrustStoreError("trust on first use needs certificate and host name verification")
        if isinstance(verify, (str, os.PathLike)):
            verify = ssl.create_default_context(cafile=os.fspath(verify))
        doc = _fetch_metadata(url, where, verify, timeout)
        if not isinstance(doc, dict) or "locator" not in doc:
            raise TrustStoreError(f"metadata at {where} is not a JSON object with a locator")
        claimed = doc.get("name")
        if name is None and isinstance(claimed, str) and _fold(claimed) != _fold(parts.hostname):
            log.warning("metadata at %s claims the name %r, but the web PKI vouches only for %r: "
                        "pinning it as %r", where, claimed, parts.hostname, parts.hostname)
        try:
            entry = TrustEntry.from_json({"name": name or parts.hostname,
                                          "locator": doc["locator"], "origin": TrustOrigin.WEB_PKI.value,
                                          "roles": list(roles) if roles is not None else doc.get("roles", [])})
        except TrustStoreError as exc:
            raise TrustStoreError(f"metadata at {where}: {exc}") from None
        same_name = [e for e in self._entries if _fold(e.name) == _fold(entry.name)]
        if same := [e for e in same_name if _anchor_of(e.locator) == _anchor_of(entry.locator)]:
            return same[0]
        if same_name:
            raise TrustStoreError(f"{entry.name!r} is already pinned to {_describe(same_name[0].locator)}; "
                                  f"{where} names another anchor, {_describe(entry.locator)}")
        self._entries.append(entry)
        log.warning("trust on first use: %r pinned to %s from %s; the web PKI (a certificate authority) "
                    "is now the root of trust for this entry", entry.name, _describe(entry.locator), where)
        return entry


def _fetch_metadata(url: str, where: str, verify: ssl.SSLContext | bool, timeout: float) -> Any:
    body = b""
    try:
        # No redirects: raise_for_status refuses a 3xx, so no hop can leave the verified host.
        with httpx.stream("GET", url, verify=verify, timeout=timeout, follow_redirects=False) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_METADATA_SIZE:
                    raise TrustStoreError(f"metadata at {where} exceeds {MAX_METADATA_SIZE} bytes")
    except httpx.HTTPStatusError as exc:
        raise TrustStoreError(f"fetching metadata from {where} failed: HTTP {exc.response.status_code}") from None
    except httpx.HTTPError as exc:
        raise TrustStoreError(f"fetching metadata from {where} failed: {type(exc).__name__}: {exc}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise TrustStoreError(f"metadata at {where} is not JSON") from None


@dataclass(frozen=True, slots=True)
class AuthenticatedPeer:
    """A verified peer and the pinned entry that authenticates it (None when accepted
    unauthenticated under ``accept_any_anchored_peer_unauthenticated``)."""
    identity: PeerIdentity
    entry: TrustEntry | None
    authenticated: bool

    def __post_init__(self) -> None:
        if self.authenticated != (self.entry is not None):
            raise ValueError("a peer is authenticated exactly when it has a trust entry")

    @property
    def name(self) -> str | None:
        """The trust store's name, never the certificate's self-asserted one."""
        return self.entry.name if self.entry is not None else None


def authenticate_peer(identity: PeerIdentity, store: TrustStore, *, expected_name: str | None = None,
                      allowed_roles: frozenset[str] | None = None,
                      accept_any_anchored_peer_unauthenticated: bool = False,
                      accept_unpinned_client: bool = False) -> AuthenticatedPeer:
    """Authenticate a verified peer against the store, or raise PeerNotTrusted (fail closed).

    An entry matches when it pins the peer's anchor (the block hash is not compared, see
    ``_anchor_of``). With ``expected_name`` (the client's server_hostname) a matching entry must
    carry that name, ASCII case-insensitive; without it the first match in store order is used.
    ``allowed_roles`` must meet the entry's roles, which are authoritative. The opt-in
    ``accept_any_anchored_peer_unauthenticated`` accepts a peer that matches no entry with
    ``authenticated=False`` and a warning each time; ``allowed_roles`` then checks the
    certificate's role, which is self-asserted. Pinning still wins: a match is checked as
    usual, and a peer other than the anchor ``expected_name`` is pinned to is refused.

    ``accept_unpinned_client`` is the server side's narrower form (``Context(
    accept_anchored_clients=True)``): an unpinned client is accepted the same way, with
    ``authenticated=False`` and no name, because the application identifies it by its verified
    locator (a D-TA binds a login to it). It is logged at INFO, not as a warning: nothing is
    claimed for a name, and such a server sees unpinned clients all day.
    """
    anchor = _describe(identity.locator)
    matches = store.entries_for(identity.locator)
    if expected_name is not None:
        named = [e for e in matches if _fold(e.name) == _fold(expected_name)]
        if matches and not named:
            raise PeerNotTrusted(f"peer anchor {anchor} is pinned as {matches[0].name!r}, not {expected_name!r}")
        if not matches and any(_fold(e.name) == _fold(expected_name) for e in store):
            raise PeerNotTrusted(f"{expected_name!r} is pinned to another anchor, not the peer's {anchor}")
        matches = named
    if not matches:
        if not (accept_any_anchored_peer_unauthenticated or accept_unpinned_client):
            wanted = f" (expected {expected_name!r})" if expected_name is not None else ""
            raise PeerNotTrusted(f"peer anchor {anchor} is not in the trust store{wanted}")
        if allowed_roles is not None and identity.certificate.role not in allowed_roles:
            raise PeerNotTrusted(f"unpinned peer's self-asserted role {identity.certificate.role!r} "
                                 f"is not among the allowed roles {sorted(allowed_roles)}")
        if accept_any_anchored_peer_unauthenticated:
            log.warning("accepting UNAUTHENTICATED peer: anchor %s is not pinned; its certificate's name %r "
                        "and role %r are self-asserted", anchor, identity.certificate.name, identity.certificate.role)
        else:
            log.info("unpinned client identified by its verified anchor %s (no name)", anchor)
        return AuthenticatedPeer(identity, None, False)
    entry = matches[0]
    if allowed_roles is not None and not entry.roles & allowed_roles:
        raise PeerNotTrusted(f"{entry.name!r} is pinned with roles {sorted(entry.roles)}, "
                             f"none of the allowed roles {sorted(allowed_roles)}")
    return AuthenticatedPeer(identity, entry, True)
