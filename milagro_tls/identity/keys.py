"""Key files and the two keys a party holds.

* The **identity key** signs only (a) its own anchor transactions and the spend of
  its seal that revokes it (identity.revoke), built by this package, and (b) off-chain statements of this project's own types, each hashed
  with a BIP340-style tagged hash whose tag names the type. It never signs a digest
  a caller supplies: one such signature could spend its seal. Its nonce k (the
  key-agreement key) is as secret as the key itself.
* The **fee key** pays fees. The identity key only ever holds the one UTXO that
  its anchor spends and the seal output.
* The **chain key** (optional, named by the certificate's ``root_chains``) locks the
  anchor-chain outputs and signs only input 0 of root transactions this package built
  (identity.rootchain): whoever holds it can anchor roots in the party's name.

Key files are created with mode 0600 and never overwritten; a file readable by group or
others is refused. A plain key file holds the secret as hex. When a passphrase is given (the
``passphrase`` argument, else the environment variable ``MILAGRO_KEY_PASSPHRASE``) new key files
are written encrypted: one JSON line naming the format, scrypt's parameters and salt, and the
AES-256-GCM nonce and ciphertext (cryptography); the header is the AEAD's associated data, so a
changed parameter fails like a wrong passphrase. Reading detects the format: an encrypted file
needs the passphrase (argument, environment, else a prompt when stdin is a terminal).
"""
from __future__ import annotations

import enum
import functools
import getpass
import json
import os
import stat
import sys
from pathlib import Path

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..chain.hashes import tagged_hash
from ..chain.sighash import p2wpkh_script
from ..ciphersuites.nonce import ecdsa_owner_nonce, schnorr_owner_nonce
from ..errors import IdentityError


class StatementType(enum.Enum):
    """Off-chain statements the identity key may sign; the value is the hash tag."""
    #: The live signature over the certificate digest at the normative URL.
    LIVE_CERTIFICATE = "milagro/live-certificate"
    #: A D-TA's key share.
    SHARE = "milagro/share"
    #: A TBS instruction set.
    INSTRUCTIONS = "milagro/instructions"
    #: A role's canary statement.
    CANARY = "milagro/canary"


#: The environment variable holding the key files' passphrase (unset or empty: plain files).
PASSPHRASE_ENV = "MILAGRO_KEY_PASSPHRASE"
ENCRYPTED_FORMAT = "milagro-encrypted-key/1"
#: scrypt cost for new files: 2^15 * 8 * 128 bytes = 32 MiB and ~0.1 s per file.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
# What a file may ask of us when read back: bounded so a planted file cannot exhaust memory.
_MAX_SCRYPT_N, _MAX_SCRYPT_R, _MAX_SCRYPT_P = 2 ** 20, 16, 4


def _passphrase(given: str | None, path: Path, *, prompt: bool) -> str | None:
    if given is not None:
        return given or None
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    if prompt and sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(f"passphrase for {path}: ") or None
    return None


@functools.lru_cache(maxsize=64)
def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The AES-256 key for one file. Cached: a role reads its key files again (workers,
    restarts of a component) and each derivation costs ~0.1 s of CPU."""
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _header_aad(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _encrypt(secret: bytes, passphrase: str) -> str:
    header = {"format": ENCRYPTED_FORMAT, "kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
              "salt": os.urandom(16).hex(), "nonce": os.urandom(12).hex()}
    key = _derive(passphrase, bytes.fromhex(header["salt"]), SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(bytes.fromhex(header["nonce"]), secret, _header_aad(header))
    return json.dumps({**header, "ciphertext": ciphertext.hex()}, separators=(",", ":"))


def _decrypt(text: str, path: Path, passphrase: str | None) -> bytes:
    try:
        doc = json.loads(text)
        header = {name: doc[name] for name in ("format", "kdf", "n", "r", "p", "salt", "nonce")}
        salt, nonce, ciphertext = (bytes.fromhex(doc[name]) for name in ("salt", "nonce", "ciphertext"))
        n, r, p = (int(header[name]) for name in ("n", "r", "p"))
    except (ValueError, KeyError, TypeError):
        raise IdentityError(f"key file {path} is not a readable encrypted key file") from None
    if header["format"] != ENCRYPTED_FORMAT or header["kdf"] != "scrypt":
        raise IdentityError(f"key file {path}: unknown format {header['format']!r} / kdf {header['kdf']!r}")
    if not (1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= _MAX_SCRYPT_R
            and 1 <= p <= _MAX_SCRYPT_P and len(salt) >= 16 and len(nonce) == 12):
        raise IdentityError(f"key file {path}: scrypt/AES-GCM parameters out of bounds")
    if passphrase is None:
        raise IdentityError(f"key file {path} is encrypted: set {PASSPHRASE_ENV} or run from a terminal")
    try:
        return AESGCM(_derive(passphrase, salt, n, r, p)).decrypt(nonce, ciphertext, _header_aad(header))
    except InvalidTag:
        raise IdentityError(f"key file {path}: wrong passphrase, or the file was altered") from None


def write_key_file(path: Path, secret: bytes, *, passphrase: str | None = None) -> None:
    """Create a key file with mode 0600; refuse to overwrite an existing one. Encrypted when a
    passphrase is given or set in MILAGRO_KEY_PASSPHRASE (never prompts: writers run unattended);
    ``passphrase=""`` writes a plain file whatever the environment says."""
    phrase = _passphrase(passphrase, Path(path), prompt=False)
    text = _encrypt(bytes(secret), phrase) if phrase else bytes(secret).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def read_key_file(path: Path, *, length: int | None = 32, passphrase: str | None = None) -> bytes:
    """The secret in a key file, plain or encrypted; ``length`` None accepts any length."""
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise IdentityError(f"key file {path} is readable by others (mode {mode:o}); chmod 600 it")
    text = path.read_text().strip()
    if text.startswith("{"):
        secret = _decrypt(text, path, _passphrase(passphrase, path, prompt=True))
    else:
        try:
            secret = bytes.fromhex(text)
        except ValueError:
            raise IdentityError(f"key file {path} is not hex") from None
    if length is not None and len(secret) != length:
        raise IdentityError(f"key file {path} does not hold a {length}-byte key")
    return secret


def is_encrypted_key_file(path: Path) -> bool:
    return Path(path).read_text().lstrip().startswith("{")


def encrypt_key_file(path: Path, passphrase: str) -> None:
    """Encrypt an existing plain key file in place (atomic rename, mode 0600 throughout)."""
    path = Path(path)
    if not passphrase:
        raise ValueError("an empty passphrase")
    if is_encrypted_key_file(path):
        raise IdentityError(f"key file {path} is already encrypted")
    secret = read_key_file(path, length=None, passphrase="")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    write_key_file(tmp, secret, passphrase=passphrase)
    os.replace(tmp, path)


class _Key:
    """A secp256k1 key whose secret never appears in repr, str or logs."""

    def __init__(self, private_key: coincurve.PrivateKey) -> None:
        self._private = private_key
        self.public_key: bytes = private_key.public_key.format(compressed=True)

    @classmethod
    def generate(cls) -> "_Key":
        return cls(coincurve.PrivateKey())

    @classmethod
    def load(cls, path: Path):
        return cls(coincurve.PrivateKey(read_key_file(path)))

    def save(self, path: Path) -> None:
        write_key_file(path, self._private.secret)

    @property
    def p2wpkh_script(self) -> bytes:
        return p2wpkh_script(self.public_key)

    def _sign_sighash(self, sighash: bytes) -> bytes:
        """DER signature (low-S, RFC 6979 nonce) of a sighash this package computed."""
        return self._private.sign(sighash, hasher=None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.public_key.hex()}>"

    __str__ = __repr__


class FeeKey(_Key):
    """Pays fees; may sign any transaction input this package builds."""

    def sign_input(self, sighash: bytes) -> bytes:
        return self._sign_sighash(sighash)


class IdentityKey(_Key):
    """The party's anchored key. See the module docstring for what it may sign."""

    def sign_statement(self, kind: StatementType, payload: bytes) -> bytes:
        """A BIP340 signature over TaggedHash(kind.value, payload)."""
        if not isinstance(kind, StatementType):
            raise TypeError("the identity key signs only StatementType statements")
        message = tagged_hash(kind.value, payload)
        return self._private.sign_schnorr(message, aux_randomness=os.urandom(32))

    @staticmethod
    def verify_statement(public_key: bytes, kind: StatementType, payload: bytes, signature: bytes) -> bool:
        xonly = coincurve.PublicKeyXOnly(public_key[1:])
        return xonly.verify(signature, tagged_hash(kind.value, payload))

    # The anchor builder (identity.anchor) is the only caller: it computes the sighash
    # of a transaction it built itself.
    def _sign_own_anchor_input(self, sighash: bytes) -> bytes:
        return self._sign_sighash(sighash)

    # The revocation builder (identity.revoke) is the only caller: it computes the sighash of
    # the seal input of a revocation transaction it built itself (the seal spend).
    def _sign_own_revocation_input(self, sighash: bytes) -> bytes:
        return self._sign_sighash(sighash)

    def nonce_key(self, r: int, s: int, sighash: bytes) -> coincurve.PrivateKey:
        """k from this key's published ECDSA signature (r, s) over ``sighash``."""
        return ecdsa_owner_nonce(self._private, r, s, sighash)

    # The batch-anchored PAT (identity.batchpat) is the only caller: it computes the script-path
    # sighash itself, of a batch it checked (its key at its position, its digest in the root).
    def _sign_own_batch_slot(self, sighash: bytes) -> bytes:
        """BIP340, SIGHASH_DEFAULT (64 bytes); explicit random aux: the nonce is recovered from
        the signature (batch_nonce_key), never re-derived."""
        return self._private.sign_schnorr(sighash, aux_randomness=os.urandom(32))

    def batch_nonce_key(self, signature: bytes, sighash: bytes) -> coincurve.PrivateKey:
        """k = s − e·d′ from this key's published BIP340 signature over ``sighash``."""
        return schnorr_owner_nonce(self._private, signature, sighash)


class ChainKey(_Key):
    """Locks a party's anchor-chain outputs. See the module docstring for what it may sign."""

    # The root-chain builder (identity.rootchain) is the only caller: it computes the sighash
    # of the chain input of a root transaction it built itself.
    def _sign_own_chain_input(self, sighash: bytes) -> bytes:
        return self._sign_sighash(sighash)
