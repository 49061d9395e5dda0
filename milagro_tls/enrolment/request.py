"""The enrolment request a PAT sends its TBS, sealed with ECIES to the TBS's enrolment key.

Plaintext (RFC 8785 canonical JSON, UTF-8):

    {"version": 1, "certificate": the PAT's canonical birth certificate as a string,
     "aes_key": hex16 (the PAT's AES-128 key for its instructions), "nonce": hex16}

The blob is eciespy's secp256k1 ECIES (ephemeral uncompressed key ‖ AES-256-GCM with a 16-byte
nonce, the key from HKDF-SHA256 over the ECDH secret), to the key the TBS's anchored birth
certificate names in ``role_data.enrolment_key``: only the TBS reads the PAT's AES key, even when
the TLS connection it rides in is only server-authenticated. The PAT's private key is never in it.
``nonce`` makes two enrolments of one certificate distinct plaintexts (the TBS keeps the first).

Also here, because both sides compute it: the poll MAC, HMAC-SHA256(aes_key, "poll" ‖ id), with
which a PAT that has no anchored identity yet shows the TBS that it owns an enrolment id.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Any

import coincurve
import ecies
import rfc8785
from ecies.config import Config

from ..errors import MalformedInput
from ..identity.certificate import BirthCertificate
from ._json import exact_fields, hex_bytes, integer, loads_strict
from .errors import MalformedEnrolment

VERSION = 1
AES_KEY_SIZE = 16
NONCE_SIZE = 16
#: Bound on a sealed request: a certificate is at most 8 KiB, and JSON and ECIES add little.
MAX_ENROLMENT_SIZE = 16 * 1024
#: The ECIES parameters, spelt out rather than taken from eciespy's mutable global default:
#: the format must not change if some other code edits ``ecies.ECIES_CONFIG``.
ECIES = Config(elliptic_curve="secp256k1", is_ephemeral_key_compressed=False, is_hkdf_key_compressed=False,
               symmetric_algorithm="aes-256-gcm", symmetric_nonce_length=16)
_FIELDS = {"version", "certificate", "aes_key", "nonce"}


@dataclass(frozen=True, slots=True)
class EnrolmentRequest:
    certificate: BirthCertificate
    aes_key: bytes = field(repr=False)      # a secret: never in repr or logs
    nonce: bytes

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "certificate": self.certificate.canonical_bytes().decode(),
                "aes_key": self.aes_key.hex(), "nonce": self.nonce.hex()}


def enrolment_key_of(tbs_certificate: BirthCertificate) -> bytes:
    """The compressed secp256k1 key a TBS's certificate names in ``role_data.enrolment_key``."""
    data = tbs_certificate.role_data or {}
    value = data.get("enrolment_key")
    try:
        key = hex_bytes(value, MalformedInput, "role_data.enrolment_key", length=33)
        coincurve.PublicKey(key)
    except MalformedInput:
        raise
    except ValueError:
        raise MalformedInput("role_data.enrolment_key is not a secp256k1 point") from None
    if key[0] not in (2, 3):
        raise MalformedInput("role_data.enrolment_key must be a compressed key")
    return key


def seal_enrolment(tbs_key: bytes, certificate: BirthCertificate, aes_key: bytes, *,
                   nonce: bytes | None = None) -> bytes:
    """ECIES-encrypt the request to the TBS's enrolment key (33 or 65 bytes)."""
    if not isinstance(aes_key, bytes) or len(aes_key) != AES_KEY_SIZE:
        raise ValueError("the instructions key is 16 bytes (AES-128)")
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    if len(nonce) != NONCE_SIZE:
        raise ValueError("the enrolment nonce is 16 bytes")
    plaintext = rfc8785.dumps(EnrolmentRequest(certificate, aes_key, nonce).to_json())
    try:
        blob = ecies.encrypt(bytes(tbs_key), plaintext, ECIES)
    except ValueError as exc:
        raise ValueError(f"the TBS enrolment key is unusable: {exc}") from None
    if len(blob) > MAX_ENROLMENT_SIZE:
        raise ValueError(f"sealed enrolment of {len(blob)} bytes exceeds {MAX_ENROLMENT_SIZE}")
    return blob


def open_enrolment(private_key: bytes | coincurve.PrivateKey, blob: bytes, *,
                   batch_key: bytes | None = None) -> EnrolmentRequest:
    """Decrypt and parse a sealed request (the TBS's side); MalformedEnrolment for anything
    else. With ``batch_key`` (the TBS's x-only batching key) the certificate must name it."""
    if not isinstance(blob, (bytes, bytearray)):
        raise MalformedEnrolment("an enrolment is bytes")
    if len(blob) > MAX_ENROLMENT_SIZE:
        raise MalformedEnrolment(f"enrolment of {len(blob)} bytes exceeds {MAX_ENROLMENT_SIZE}")
    secret = private_key.secret if isinstance(private_key, coincurve.PrivateKey) else private_key
    try:
        plaintext = ecies.decrypt(bytes(secret), bytes(blob), ECIES)
    except ValueError:
        # One message for a bad ephemeral key, a short blob or a failed tag: nothing to learn.
        raise MalformedEnrolment("enrolment does not decrypt under this TBS's enrolment key") from None
    doc = loads_strict(plaintext, MalformedEnrolment, "enrolment request")
    exact_fields(doc, _FIELDS, MalformedEnrolment, "enrolment request")
    if integer(doc["version"], MalformedEnrolment, "enrolment version") != VERSION:
        raise MalformedEnrolment(f"unsupported enrolment version {doc['version']}")
    if not isinstance(doc["certificate"], str):
        raise MalformedEnrolment("enrolment certificate must be a string")
    try:
        certificate = BirthCertificate.parse(doc["certificate"].encode("utf-8"))
    except MalformedInput as exc:
        raise MalformedEnrolment(f"enrolment certificate: {exc}") from None
    except UnicodeEncodeError:
        raise MalformedEnrolment("enrolment certificate is not UTF-8") from None
    aes_key = hex_bytes(doc["aes_key"], MalformedEnrolment, "enrolment aes_key", length=AES_KEY_SIZE)
    nonce = hex_bytes(doc["nonce"], MalformedEnrolment, "enrolment nonce", length=NONCE_SIZE)
    if certificate.role != "pat":
        raise MalformedEnrolment(f"an enrolment is for a PAT, not a {certificate.role!r}")
    if certificate.batch_key is None:
        raise MalformedEnrolment("the enrolling certificate names no batch key")
    if batch_key is not None and not hmac.compare_digest(certificate.batch_key, batch_key):
        raise MalformedEnrolment("the enrolling certificate names another batch key than this TBS's")
    return EnrolmentRequest(certificate, aes_key, nonce)


def poll_mac(aes_key: bytes, enrolment_id: str) -> str:
    """HMAC-SHA256(aes_key, "poll" ‖ id) as hex: the PAT's proof that it owns ``enrolment_id``."""
    return hmac.new(aes_key, b"poll" + enrolment_id.encode("utf-8"), hashlib.sha256).hexdigest()


def check_poll_mac(aes_key: bytes, enrolment_id: str, mac: str) -> bool:
    """Constant-time check of a poll MAC a client sent (any non-hex or wrong length is False)."""
    if not isinstance(mac, str):
        return False
    return hmac.compare_digest(poll_mac(aes_key, enrolment_id).encode(), mac.encode("utf-8", "replace"))
