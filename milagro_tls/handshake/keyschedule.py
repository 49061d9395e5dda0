"""The TLS 1.2 key schedule for our suites (RFC 5246 §5, §6.3, §7.4.9; RFC 7627).

The extended master secret is mandatory: with implicitly authenticated static keys the
plain master secret would allow unknown-key-share and triple-handshake attacks, because
it binds only the randoms and not who took part.
"""
from __future__ import annotations

import hashlib

from tlslite.mathtls import PRF_1_2, PRF_1_2_SHA384

from ..ciphersuites.registry import SuiteSpec
from .records import RecordProtection

_PRF = {"sha256": PRF_1_2, "sha384": PRF_1_2_SHA384}
MASTER_SECRET_LENGTH = 48
VERIFY_DATA_LENGTH = 12


def prf(suite: SuiteSpec, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    return bytes(_PRF[suite.prf_hash](bytearray(secret), bytearray(label), bytearray(seed), length))


def extended_master_secret(suite: SuiteSpec, premaster: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 §4: PRF(premaster, "extended master secret", session_hash)[0..47]."""
    return prf(suite, premaster, b"extended master secret", session_hash, MASTER_SECRET_LENGTH)


def finished_verify_data(suite: SuiteSpec, master_secret: bytes, *, client: bool, transcript_hash: bytes) -> bytes:
    label = b"client finished" if client else b"server finished"
    return prf(suite, master_secret, label, transcript_hash, VERIFY_DATA_LENGTH)


def record_protections(suite: SuiteSpec, master_secret: bytes, client_random: bytes,
                       server_random: bytes) -> tuple[RecordProtection, RecordProtection]:
    """(client write, server write) from the key block (§6.3); AEAD suites have no MAC keys."""
    key_length, iv_length = suite.cipher.key_length, suite.cipher.fixed_iv_length
    block = prf(suite, master_secret, b"key expansion", server_random + client_random,
                2 * (key_length + iv_length))
    client_key, server_key = block[:key_length], block[key_length:2 * key_length]
    ivs = block[2 * key_length:]
    return (RecordProtection(suite.cipher, client_key, ivs[:iv_length]),
            RecordProtection(suite.cipher, server_key, ivs[iv_length:]))


class Transcript:
    """The handshake messages, hashed once the suite (and so the hash) is known."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._hash = None

    def add(self, message: bytes) -> None:
        if self._hash is None:
            self._pending.append(message)
        else:
            self._hash.update(message)

    def start_hash(self, hash_name: str) -> None:
        self._hash = hashlib.new(hash_name)
        for message in self._pending:
            self._hash.update(message)
        self._pending.clear()

    def digest(self) -> bytes:
        if self._hash is None:
            raise RuntimeError("transcript hash used before the suite was chosen")
        return self._hash.copy().digest()
