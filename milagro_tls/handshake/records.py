"""The TLS 1.2 record layer (RFC 5246 §6.2), on ``cryptography``'s AEADs; owns no socket.

Why our own and not tlslite-ng's: its record layer reads from a socket and, even with
``cryptography``'s AEAD plugged in, measured 0.27 × Python ``ssl``'s throughput; a minimal
layer like this one measured 0.76–0.84 × (../shared/reference/tlslite-integration.md §2.3).
Protection is the standard AEAD construction, so records are byte-identical to those of
the ECDHE suite with the same cipher:

    AES-GCM (RFC 5288)            nonce = fixed_iv(4) ‖ explicit(8); explicit = sequence number
    ChaCha20-Poly1305 (RFC 7905)  nonce = fixed_iv(12) XOR (0(4) ‖ sequence number(8))
    additional data               seq_num(8) ‖ type(1) ‖ version(2) ‖ plaintext length(2)
"""
from __future__ import annotations

import enum
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..ciphersuites.registry import BulkCipher
from .errors import BadRecordMac, MalformedMessage, RecordOverflow, UnexpectedMessage, UnsupportedVersion


class ContentType(enum.IntEnum):
    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23


TLS_1_2 = (3, 3)
_VERSION_BYTES = bytes(TLS_1_2)
#: RFC 5246 §6.2.1: a plaintext fragment is at most 2^14 bytes.
MAX_PLAINTEXT = 1 << 14
#: RFC 5246 §6.2.3: protection may add at most 2048 bytes.
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048
_HEADER = struct.Struct("!B2sH")
_AAD = struct.Struct("!QB2sH")
_TAG_LENGTH = 16
_MAX_SEQUENCE = (1 << 64) - 1


class RecordProtection:
    """One direction's AEAD state: key, IV and the implicit sequence number."""

    __slots__ = ("_aead", "_cipher", "_fixed_iv", "_iv_int", "sequence")

    def __init__(self, cipher: BulkCipher, key: bytes, fixed_iv: bytes) -> None:
        if len(key) != cipher.key_length or len(fixed_iv) != cipher.fixed_iv_length:
            raise ValueError("key or IV length does not fit the cipher")
        self._cipher = cipher
        self._aead = ChaCha20Poly1305(key) if cipher is BulkCipher.CHACHA20_POLY1305 else AESGCM(key)
        self._fixed_iv = fixed_iv
        self._iv_int = int.from_bytes(fixed_iv, "big")
        self.sequence = 0

    def _next_sequence(self) -> int:
        sequence = self.sequence
        if sequence >= _MAX_SEQUENCE:
            # §6.1: a sequence number must never wrap; we refuse renegotiation, so the
            # connection ends here.
            raise UnexpectedMessage("record sequence number exhausted")
        self.sequence = sequence + 1
        return sequence

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        sequence = self._next_sequence()
        aad = _AAD.pack(sequence, content_type, _VERSION_BYTES, len(plaintext))
        if self._cipher.record_iv_length:
            explicit = sequence.to_bytes(8, "big")
            return explicit + self._aead.encrypt(self._fixed_iv + explicit, plaintext, aad)
        nonce = (self._iv_int ^ sequence).to_bytes(12, "big")
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(self, content_type: int, fragment: memoryview) -> bytes:
        sequence = self._next_sequence()
        explicit_length = self._cipher.record_iv_length
        plaintext_length = len(fragment) - explicit_length - _TAG_LENGTH
        if plaintext_length < 0:
            raise BadRecordMac("record shorter than its nonce and tag")
        if plaintext_length > MAX_PLAINTEXT:
            raise RecordOverflow("decrypted record would exceed 2^14 bytes")
        aad = _AAD.pack(sequence, content_type, _VERSION_BYTES, plaintext_length)
        if explicit_length:
            nonce = self._fixed_iv + bytes(fragment[:explicit_length])
            body = fragment[explicit_length:]
        else:
            nonce = (self._iv_int ^ sequence).to_bytes(12, "big")
            body = fragment
        try:
            return self._aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise BadRecordMac("record failed authentication") from None


class RecordLayer:
    """Frames outgoing data into records and splits incoming bytes into records."""

    def __init__(self) -> None:
        self._incoming = bytearray()
        self._position = 0
        self.read_protection: RecordProtection | None = None
        self.write_protection: RecordProtection | None = None
        self.negotiated = False      # record versions are exact once ServerHello fixed them

    # --- incoming -----------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self._position and self._position * 2 >= len(self._incoming):
            del self._incoming[:self._position]   # compact rarely: a slice delete is O(n)
            self._position = 0
        self._incoming += data

    @property
    def buffered(self) -> int:
        return len(self._incoming) - self._position

    def mid_record(self) -> bool:
        """True when some bytes of an incomplete record are waiting."""
        return self.buffered > 0

    def next_record(self) -> tuple[int, bytes] | None:
        """The next record's (content type, plaintext), or None until a whole one arrived."""
        if self.buffered < _HEADER.size:
            return None
        content_type, version, length = _HEADER.unpack_from(self._incoming, self._position)
        if content_type not in _CONTENT_TYPES:
            raise UnexpectedMessage(f"record of unknown content type {content_type}")
        if version[0] != 3 or (self.negotiated and version != _VERSION_BYTES):
            raise UnsupportedVersion(f"record version {version[0]}.{version[1]}")
        limit = MAX_CIPHERTEXT if self.read_protection else MAX_PLAINTEXT
        if length > limit:
            raise RecordOverflow(f"record of {length} bytes exceeds {limit}")
        end = self._position + _HEADER.size + length
        if len(self._incoming) < end:
            return None
        fragment = memoryview(self._incoming)[self._position + _HEADER.size:end]
        try:
            if self.read_protection is not None:
                plaintext = self.read_protection.open(content_type, fragment)
            else:
                plaintext = bytes(fragment)
        finally:
            fragment.release()
        self._position = end
        if not plaintext and content_type != ContentType.application_data:
            # §6.2.1: zero-length fragments of these types MUST NOT be sent.
            raise MalformedMessage(f"empty {ContentType(content_type).name} record")
        return content_type, plaintext

    # --- outgoing -----------------------------------------------------------------------
    def encode(self, content_type: int, data: bytes) -> bytes:
        """``data`` as one or more records of at most 2^14 plaintext bytes each."""
        out = bytearray()
        view = memoryview(data)
        for start in range(0, max(len(data), 1), MAX_PLAINTEXT):
            chunk = bytes(view[start:start + MAX_PLAINTEXT])
            if self.write_protection is not None:
                chunk = self.write_protection.seal(content_type, chunk)
            out += _HEADER.pack(content_type, _VERSION_BYTES, len(chunk))
            out += chunk
        return bytes(out)


_CONTENT_TYPES = frozenset(int(t) for t in ContentType)
