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
_SEQUENCE = struct.Struct("!Q")
_MAX_SEQUENCE = (1 << 64) - 1


class RecordProtection:
    """One direction's AEAD state: key, IV and the implicit sequence number."""

    __slots__ = ("_aead", "_cipher", "_fixed_iv", "_iv_int", "_explicit", "_overhead", "_encrypt_into",
                 "sequence")

    def __init__(self, cipher: BulkCipher, key: bytes, fixed_iv: bytes) -> None:
        if len(key) != cipher.key_length or len(fixed_iv) != cipher.fixed_iv_length:
            raise ValueError("key or IV length does not fit the cipher")
        self._cipher = cipher
        self._aead = ChaCha20Poly1305(key) if cipher is BulkCipher.CHACHA20_POLY1305 else AESGCM(key)
        self._fixed_iv = fixed_iv
        self._iv_int = int.from_bytes(fixed_iv, "big")
        # Read once here: an enum property costs two Python calls per record.
        self._explicit = cipher.record_iv_length
        self._overhead = _HEADER.size + self._explicit + _TAG_LENGTH
        # cryptography's encrypt_into (newer releases) writes the ciphertext in place.
        self._encrypt_into = getattr(self._aead, "encrypt_into", None)
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
        if self._explicit:
            explicit = sequence.to_bytes(8, "big")
            return explicit + self._aead.encrypt(self._fixed_iv + explicit, plaintext, aad)
        nonce = (self._iv_int ^ sequence).to_bytes(12, "big")
        return self._aead.encrypt(nonce, plaintext, aad)

    def seal_records(self, content_type: int, data) -> bytearray:
        """``data`` as whole records (headers included), encrypted into one buffer."""
        view = memoryview(data)
        length = len(view)
        count = max(1, -(-length // MAX_PLAINTEXT))
        out = bytearray(length + count * self._overhead)
        target = memoryview(out)
        explicit = self._explicit
        encrypt_into = self._encrypt_into
        position = 0
        for start in range(0, max(length, 1), MAX_PLAINTEXT):
            chunk = view[start:start + MAX_PLAINTEXT]
            size = len(chunk)
            sequence = self._next_sequence()
            aad = _AAD.pack(sequence, content_type, _VERSION_BYTES, size)
            _HEADER.pack_into(out, position, content_type, _VERSION_BYTES, explicit + size + _TAG_LENGTH)
            position += _HEADER.size
            if explicit:
                _SEQUENCE.pack_into(out, position, sequence)
                nonce = self._fixed_iv + out[position:position + explicit]
                position += explicit
            else:
                nonce = (self._iv_int ^ sequence).to_bytes(12, "big")
            end = position + size + _TAG_LENGTH
            if encrypt_into is not None:
                encrypt_into(nonce, chunk, aad, target[position:end])
            else:
                target[position:end] = self._aead.encrypt(nonce, chunk, aad)
            position = end
        target.release()
        return out

    def open(self, content_type: int, fragment: memoryview) -> bytes:
        sequence = self._next_sequence()
        explicit_length = self._explicit
        plaintext_length = len(fragment) - explicit_length - _TAG_LENGTH
        if plaintext_length < 0:
            raise BadRecordMac("record shorter than its nonce and tag")
        if plaintext_length > MAX_PLAINTEXT:
            raise RecordOverflow("decrypted record would exceed 2^14 bytes")
        aad = _AAD.pack(sequence, content_type, _VERSION_BYTES, plaintext_length)
        if explicit_length:
            nonce = self._fixed_iv + fragment[:explicit_length].tobytes()
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

    @property
    def held(self) -> int:
        """Bytes the incoming buffer holds, consumed ones not yet compacted included: what a
        peer makes us keep (Connection.buffered_bytes)."""
        return len(self._incoming)

    def mid_record(self) -> bool:
        """True when some bytes of an incomplete record are waiting."""
        return self.buffered > 0

    def next_record(self) -> tuple[int, bytes] | None:
        """The next record's (content type, plaintext), or None until a whole one arrived."""
        if self.buffered < _HEADER.size:
            self._compact()
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
            self._compact()
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

    def _compact(self) -> None:
        """Drop the records already consumed once we wait for more: what stays is at most one
        incomplete record, so a peer that sent a large read and then stalls does not keep it
        all (pre-authentication memory bound, Connection.buffered_bytes). Cheap: the rest is
        shorter than one record."""
        if self._position:
            del self._incoming[:self._position]
            self._position = 0

    def open_application_data(self, out: list) -> None:
        """Append to ``out`` the plaintext of each whole application_data record buffered now,
        stopping at anything else (left for ``next_record``). Errors raise as there."""
        protection = self.read_protection
        if protection is None:
            return
        incoming, position = self._incoming, self._position
        available = len(incoming)
        unpack_from, header_size, open_ = _HEADER.unpack_from, _HEADER.size, protection.open
        try:
            while available - position >= header_size and incoming[position] == _APPLICATION_DATA:
                _, version, length = unpack_from(incoming, position)
                end = position + header_size + length
                if version != _VERSION_BYTES or length > MAX_CIPHERTEXT or available < end:
                    break
                fragment = memoryview(incoming)[position + header_size:end]
                try:
                    plaintext = open_(_APPLICATION_DATA, fragment)
                finally:
                    fragment.release()
                position = end
                if plaintext:
                    out.append(plaintext)
        finally:
            self._position = position

    # --- outgoing -----------------------------------------------------------------------
    def encode(self, content_type: int, data: bytes) -> bytes | bytearray:
        """``data`` as one or more records of at most 2^14 plaintext bytes each (protected:
        a bytearray, encrypted in place)."""
        if self.write_protection is not None:
            return self.write_protection.seal_records(content_type, data)
        out = bytearray()
        view = memoryview(data)
        for start in range(0, max(len(data), 1), MAX_PLAINTEXT):
            chunk = view[start:start + MAX_PLAINTEXT]
            out += _HEADER.pack(content_type, _VERSION_BYTES, len(chunk))
            out += chunk
        return bytes(out)


_CONTENT_TYPES = frozenset(int(t) for t in ContentType)
_APPLICATION_DATA = int(ContentType.application_data)
