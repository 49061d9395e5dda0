"""Key files and the two keys a party holds.

* The **identity key** signs only (a) its own anchor transactions, built by this
  package, and (b) off-chain statements of this project's own types, each hashed
  with a BIP340-style tagged hash whose tag names the type. It never signs a digest
  a caller supplies: one such signature could spend its seal. Its nonce k (the
  key-agreement key) is as secret as the key itself.
* The **fee key** pays fees. The identity key only ever holds the one UTXO that
  its anchor spends and the seal output.
* The **chain key** (optional, named by the certificate's ``root_chains``) locks the
  anchor-chain outputs and signs only input 0 of root transactions this package built
  (identity.rootchain): whoever holds it can anchor roots in the party's name.

Key files hold 32 raw bytes as hex, created with mode 0600 and never overwritten.
"""
from __future__ import annotations

import enum
import os
import stat
from pathlib import Path

import coincurve

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


def write_key_file(path: Path, secret: bytes) -> None:
    """Create a key file with mode 0600; refuse to overwrite an existing one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret.hex() + "\n")


def read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise IdentityError(f"key file {path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise IdentityError(f"key file {path} is not hex") from None
    if len(secret) != 32:
        raise IdentityError(f"key file {path} does not hold a 32-byte key")
    return secret


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
