"""The IdP's ID-token signing keys (joserfc): RS256 by default (the OpenID Connect default
every client supports) and ES256 for clients that register it; never ``none``.

Layout under the role's home (``keys/``, mode 0700):

    keys.json        public bookkeeping: kid, alg, created_at, retired_at per key
    <kid>.key        the private key, DER as hex, written 0600 by identity.keys.write_key_file

Rotation retires the current key and makes a new one; a retired key stays in the JWKS until
every ID token it signed has expired (``retired_at + token_lifetime + CLOCK_SKEW``), then its
file is deleted. Several gunicorn workers share the directory: changes happen under an
exclusive ``fcntl`` lock, and every reader reloads when keys.json changes.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from joserfc.jwk import ECKey, RSAKey

from ...errors import MilagroError
from ...identity.files import write_atomically
from ...identity.keys import read_key_file, write_key_file

#: Algorithms we sign ID tokens with, the first being the default.
SIGNING_ALGORITHMS = ("RS256", "ES256")
#: RSA modulus size: 2048 bits, NIST SP 800-57's floor through 2030, what RS256 deployments use.
RSA_BITS = 2048
#: Leeway for verifiers' clocks when deciding that a retired key's tokens have all expired.
CLOCK_SKEW = 300


class SigningKeyError(MilagroError):
    """The key directory is unreadable or a key file is exposed."""


@dataclass(frozen=True)
class KeyRecord:
    kid: str
    alg: str
    created_at: int
    retired_at: int | None = None

    def to_json(self) -> dict:
        return {"kid": self.kid, "alg": self.alg, "created_at": self.created_at, "retired_at": self.retired_at}


def _generate(alg: str):
    if alg == "RS256":
        key = RSAKey.generate_key(RSA_BITS, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    return key


def _import(alg: str, der: bytes, kid: str):
    cls = RSAKey if alg == "RS256" else ECKey
    return cls.import_key(der, parameters={"kid": kid, "alg": alg, "use": "sig"})


class KeyRing:
    def __init__(self, directory: Path, *, token_lifetime: int) -> None:
        self.directory = Path(directory)
        self.token_lifetime = token_lifetime
        self._records: list[KeyRecord] = []
        self._keys: dict[str, object] = {}
        self._stamp: int | None = None
        self._lock = threading.Lock()

    # --- files ------------------------------------------------------------------------
    @property
    def _index(self) -> Path:
        return self.directory / "keys.json"

    @contextlib.contextmanager
    def _exclusive(self):
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_index(self) -> list[KeyRecord]:
        if not self._index.exists():
            return []
        return [KeyRecord(**entry) for entry in json.loads(self._index.read_text())]

    def _write_index(self, records: list[KeyRecord]) -> None:
        write_atomically(self._index, json.dumps([r.to_json() for r in records], indent=2) + "\n")

    def _load_private(self, record: KeyRecord):
        path = self.directory / f"{record.kid}.key"
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SigningKeyError(f"key file {path} is readable by others (mode {mode:o}); chmod 600 it")
        return _import(record.alg, read_key_file(path, length=None), record.kid)   # plain or encrypted

    def _new_key(self, alg: str, now: int) -> KeyRecord:
        key = _generate(alg)
        kid = key.thumbprint()                 # RFC 7638: stable, derived from the public key
        write_key_file(self.directory / f"{kid}.key", key.as_der(private=True))
        return KeyRecord(kid, alg, now)

    def _refresh(self) -> None:
        """Reload keys.json (and new key files) if another process changed it."""
        try:
            stamp = self._index.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and self._records:
            return
        with self._lock:
            records = self._read_index()
            keys = {r.kid: self._keys.get(r.kid) or self._load_private(r) for r in records}
            self._records, self._keys, self._stamp = records, keys, stamp

    # --- operations ---------------------------------------------------------------------
    def ensure(self, now: float | None = None) -> "KeyRing":
        """Create the directory and one current key per algorithm if missing (first start)."""
        now = int(now if now is not None else time.time())
        with self._exclusive():
            records = self._read_index()
            missing = [alg for alg in SIGNING_ALGORITHMS
                       if not any(r.alg == alg and r.retired_at is None for r in records)]
            if missing:
                self._write_index(records + [self._new_key(alg, now) for alg in missing])
        self._stamp = None
        self._refresh()
        return self

    def rotate(self, now: float | None = None) -> list[str]:
        """Retire the current keys, make new ones and drop keys whose tokens have all expired.
        Returns the new kids."""
        now = int(now if now is not None else time.time())
        with self._exclusive():
            kept = []
            for record in self._read_index():
                if record.retired_at is None:
                    record = KeyRecord(record.kid, record.alg, record.created_at, now)
                if self._served(record, now):
                    kept.append(record)
                else:
                    (self.directory / f"{record.kid}.key").unlink(missing_ok=True)
            fresh = [self._new_key(alg, now) for alg in SIGNING_ALGORITHMS]
            self._write_index(kept + fresh)
        self._stamp = None
        self._refresh()
        return [r.kid for r in fresh]

    def _served(self, record: KeyRecord, now: int) -> bool:
        return record.retired_at is None or now < record.retired_at + self.token_lifetime + CLOCK_SKEW

    def signing_key(self, alg: str = "RS256"):
        """The current private key for ``alg`` (a joserfc key with kid and alg set)."""
        self._refresh()
        for record in reversed(self._records):
            if record.alg == alg and record.retired_at is None:
                return self._keys[record.kid]
        raise SigningKeyError(f"no current {alg} signing key in {self.directory}")

    def public_jwks(self, now: float | None = None) -> dict:
        """The JWKS document: current keys and retired ones whose tokens may still be live."""
        self._refresh()
        now = int(now if now is not None else time.time())
        return {"keys": [{**self._keys[r.kid].as_dict(private=False), "kid": r.kid, "alg": r.alg, "use": "sig"}
                         for r in self._records if self._served(r, now)]}

    @property
    def records(self) -> list[KeyRecord]:
        self._refresh()
        return list(self._records)
