"""The client's opt-in fallback to standard ECDHE suites, authenticated by X.509 (sans-IO pieces).

Only toward a peer that the trust store does not pin, and only when the Context opts in, the
ClientHello also offers ``STANDARD_SUITES`` with ``fallback_client_hello_extensions()``. When
the server picks one, the handshake is plain TLS 1.2 ECDHE (RFC 5246, RFC 8422):

    Client                                          Server
    ClientHello (+ standard suites, groups,
                 point formats, sig algs) -------->
                                                    ServerHello (an ECDHE suite)
                                                    Certificate        process_certificate()
                                                    ServerKeyExchange  process_server_key_exchange()
                                          <-------- ServerHelloDone
    ClientKeyExchange                               client_key_exchange()
    [ChangeCipherSpec] Finished           -------->  ... as for our suites (keyschedule, records)

``X509ServerAuthenticator`` does the part our suites do not have: the chain is verified by
``cryptography.x509.verification`` (the WebPKI profile) against the caller's trust anchors and
the name the caller dialled; the ServerKeyExchange signature by the leaf's key. Records and the
key schedule are the ones our suites use: the bulk ciphers are the same AEAD constructions.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError
from tlslite.constants import CertificateType, ECCurveType, ECPointFormat, GroupName, SignatureScheme
from tlslite.extensions import ECPointFormatsExtension, SignatureAlgorithmsExtension, SupportedGroupsExtension
from tlslite.messages import Certificate, ClientKeyExchange, ServerKeyExchange
from tlslite.utils.codec import Parser

from ..ciphersuites.registry import BulkCipher
from .errors import IllegalParameter, MalformedMessage, PeerNotAuthenticated, ProofFailed
from .hello import parse_message
from .records import TLS_1_2

ECDSA, RSA = "ECDSA", "RSA"


@dataclass(frozen=True, slots=True, kw_only=True)
class StandardSuite:
    """An IANA ECDHE suite; duck-types SuiteSpec for the record layer and the key schedule."""
    code: int
    name: str                   # IANA, e.g. TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    short_name: str             # OpenSSL, what ssl.SSLSocket.cipher() reports
    cipher: BulkCipher
    prf_hash: str               # hashlib name of the PRF and transcript hash
    authentication: str         # the leaf's key type, and so the ServerKeyExchange signature

    def __post_init__(self) -> None:
        if self.authentication not in (ECDSA, RSA):
            raise ValueError(f"{self.name}: authentication must be {ECDSA!r} or {RSA!r}")
        if 0xFF00 <= self.code <= 0xFFFF:
            raise ValueError(f"{self.name}: 0x{self.code:04x} is in the private-use range of our own suites")


# Client preference order: ECDSA first (smaller, faster signatures), AES-128-GCM first within
# each, as our own suites order their ciphers. Codes: RFC 5289 §3.2 and RFC 7905 §2.
STANDARD_SUITES: dict[int, StandardSuite] = {s.code: s for s in (
    StandardSuite(code=0xC02B, name="TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                  short_name="ECDHE-ECDSA-AES128-GCM-SHA256", cipher=BulkCipher.AES_128_GCM,
                  prf_hash="sha256", authentication=ECDSA),
    StandardSuite(code=0xC02C, name="TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                  short_name="ECDHE-ECDSA-AES256-GCM-SHA384", cipher=BulkCipher.AES_256_GCM,
                  prf_hash="sha384", authentication=ECDSA),
    StandardSuite(code=0xCCA9, name="TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                  short_name="ECDHE-ECDSA-CHACHA20-POLY1305", cipher=BulkCipher.CHACHA20_POLY1305,
                  prf_hash="sha256", authentication=ECDSA),
    StandardSuite(code=0xC02F, name="TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                  short_name="ECDHE-RSA-AES128-GCM-SHA256", cipher=BulkCipher.AES_128_GCM,
                  prf_hash="sha256", authentication=RSA),
    StandardSuite(code=0xC030, name="TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                  short_name="ECDHE-RSA-AES256-GCM-SHA384", cipher=BulkCipher.AES_256_GCM,
                  prf_hash="sha384", authentication=RSA),
    StandardSuite(code=0xCCA8, name="TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                  short_name="ECDHE-RSA-CHACHA20-POLY1305", cipher=BulkCipher.CHACHA20_POLY1305,
                  prf_hash="sha256", authentication=RSA),
)}

#: The groups we offer, in preference order, with the curve of each (None: X25519, RFC 7748).
_GROUPS: dict[int, ec.EllipticCurve | None] = {
    GroupName.x25519: None,
    GroupName.secp256r1: ec.SECP256R1(),
    GroupName.secp384r1: ec.SECP384R1(),
}
_X25519_POINT_LENGTH = 32


@dataclass(frozen=True, slots=True)
class _SignatureScheme:
    """How a TLS 1.2 SignatureAndHashAlgorithm verifies. In TLS 1.2 the ECDSA codes mean
    "this hash with ECDSA" on any curve (RFC 8422 §5.1.3); only TLS 1.3 binds the curve."""
    authentication: str
    hash: hashes.HashAlgorithm
    pss: bool = False

    def verify(self, key, signature: bytes, data: bytes) -> None:
        if self.authentication == ECDSA:
            key.verify(signature, data, ec.ECDSA(self.hash))
        elif self.pss:
            # rsa_pss_rsae_*: MGF1 with the same hash, salt as long as the hash (RFC 8446 §4.2.3,
            # which RFC 8446 §1.3 applies to TLS 1.2).
            key.verify(signature, data, padding.PSS(padding.MGF1(self.hash), padding.PSS.DIGEST_LENGTH), self.hash)
        else:
            key.verify(signature, data, padding.PKCS1v15(), self.hash)


#: The schemes we offer, in preference order. No SHA-1 and no rsa_pss_pss_* (RSASSA-PSS keys
#: in certificates): the WebPKI profile does not issue them.
_SIGNATURE_SCHEMES: dict[tuple[int, int], _SignatureScheme] = {
    SignatureScheme.ecdsa_secp256r1_sha256: _SignatureScheme(ECDSA, hashes.SHA256()),
    SignatureScheme.ecdsa_secp384r1_sha384: _SignatureScheme(ECDSA, hashes.SHA384()),
    SignatureScheme.rsa_pss_rsae_sha256: _SignatureScheme(RSA, hashes.SHA256(), pss=True),
    SignatureScheme.rsa_pss_rsae_sha384: _SignatureScheme(RSA, hashes.SHA384(), pss=True),
    SignatureScheme.rsa_pss_rsae_sha512: _SignatureScheme(RSA, hashes.SHA512(), pss=True),
    SignatureScheme.rsa_pkcs1_sha256: _SignatureScheme(RSA, hashes.SHA256()),
    SignatureScheme.rsa_pkcs1_sha384: _SignatureScheme(RSA, hashes.SHA384()),
    SignatureScheme.rsa_pkcs1_sha512: _SignatureScheme(RSA, hashes.SHA512()),
}


def fallback_client_hello_extensions() -> list:
    """The ClientHello extensions the standard suites need (fresh objects on every call).

    RFC 8422 §5.1: supported_groups names the curves of the ECDHE key, ec_point_formats
    (only "uncompressed" remains, §5.1.2); RFC 5246 §7.4.1.4.1: without signature_algorithms
    the server would have to sign with SHA-1."""
    return [
        SupportedGroupsExtension().create(list(_GROUPS)),
        ECPointFormatsExtension().create([ECPointFormat.uncompressed]),
        SignatureAlgorithmsExtension().create(list(_SIGNATURE_SCHEMES)),
    ]


class EcdheServerKeyExchange(ServerKeyExchange):
    """RFC 8422 §5.4 ServerKeyExchange in TLS 1.2 (RFC 5246 §7.4.3):

        struct { ECCurveType curve_type; NamedCurve namedcurve; } ECParameters;   /* named_curve */
        struct { ECParameters curve_params; opaque point <1..2^8-1>; } ServerECDHParams;
        struct { ServerECDHParams params; digitally-signed struct {...} signed_params; }

    tlslite's own parse checks curve_type with ``assert`` (gone under ``python -O``, and
    a decode_error where an unsupported curve type is an illegal_parameter); ``params`` keeps
    the bytes as received, which is what the signature covers."""

    def __init__(self, suite: StandardSuite) -> None:
        super().__init__(suite.code, TLS_1_2)
        self.params = b""

    def parse(self, parser: Parser):
        parser.startLengthCheck(3)
        start = parser.index
        self.curve_type = parser.get(1)
        if self.curve_type != ECCurveType.named_curve:
            # explicit_prime and explicit_char2 are deprecated (RFC 8422 §5.4); we offered neither.
            raise IllegalParameter(f"ServerKeyExchange curve_type {self.curve_type}, not named_curve")
        self.named_curve = parser.get(2)
        self.ecdh_Ys = parser.getVarBytes(1)
        if not self.ecdh_Ys:
            raise MalformedMessage("ServerKeyExchange with an empty point (RFC 8422: <1..2^8-1>)")
        self.params = bytes(parser.bytes[start:parser.index])
        self.hashAlg = parser.get(1)
        self.signAlg = parser.get(1)
        self.signature = parser.getVarBytes(2)
        parser.stopLengthCheck()
        return self


class X509ServerAuthenticator:
    """One handshake's X.509 server authentication and ECDHE, for the client. No IO, no clock
    unless ``now`` is None; call the methods in handshake order."""

    def __init__(self, *, suite: StandardSuite, trust_anchors: Iterable[bytes], server_hostname: str | None,
                 client_random: bytes, server_random: bytes, now: datetime | None = None) -> None:
        self.suite = suite
        # The caller's own configuration: a bad anchor is a ValueError here, not the peer's fault.
        self._anchors = [x509.load_der_x509_certificate(bytes(der)) for der in trust_anchors]
        self.server_hostname = server_hostname
        self.client_random = bytes(client_random)
        self.server_random = bytes(server_random)
        self.now = now
        self._chain: list[x509.Certificate] | None = None
        self._server_point: bytes | None = None
        self._group: int | None = None

    @property
    def peer_certificate(self) -> x509.Certificate:
        """The server's leaf, once its chain verified."""
        return self.peer_chain[0]

    @property
    def peer_chain(self) -> list[x509.Certificate]:
        """The verified chain, leaf first and the trust anchor last."""
        if self._chain is None:
            raise RuntimeError("no verified certificate yet: process_certificate() first")
        return list(self._chain)

    def process_certificate(self, raw: bytes) -> None:
        """The server's Certificate message (RFC 5246 §7.4.2), header included.

        :raises MalformedMessage: it does not decode.
        :raises IllegalParameter: the leaf's key does not fit the suite (RFC 8422 §5.3).
        :raises PeerNotAuthenticated: empty, or the chain does not verify for our name."""
        message = parse_message(Certificate(CertificateType.x509, TLS_1_2), raw)
        chain = message.cert_chain
        if chain is None or not chain.x509List:
            raise PeerNotAuthenticated("server sent an empty certificate list")
        try:
            received = [x509.load_der_x509_certificate(bytes(entry.bytes)) for entry in chain.x509List]
        except ValueError as exc:
            raise MalformedMessage(f"a certificate in the chain does not decode: {exc}") from None
        leaf, intermediates = received[0], received[1:]
        key = leaf.public_key()
        expected_key = ec.EllipticCurvePublicKey if self.suite.authentication == ECDSA else rsa.RSAPublicKey
        if not isinstance(key, expected_key):
            raise IllegalParameter(f"{self.suite.name} needs an {self.suite.authentication} certificate; "
                                   f"the leaf's key is {type(key).__name__}")
        self._chain = self._verify_chain(leaf, intermediates)

    def _verify_chain(self, leaf: x509.Certificate,
                      intermediates: list[x509.Certificate]) -> list[x509.Certificate]:
        subject = self._subject()
        if not self._anchors:
            raise PeerNotAuthenticated("no X.509 trust anchors to verify the server's chain against")
        verifier = (PolicyBuilder().store(Store(self._anchors))
                    .time(self.now or datetime.now(timezone.utc))
                    .build_server_verifier(subject))
        try:
            return verifier.verify(leaf, intermediates)
        except (VerificationError, UnsupportedAlgorithm, ValueError) as exc:
            raise PeerNotAuthenticated(f"server certificate for {self.server_hostname!r} does not verify: "
                                       f"{exc}") from None

    def _subject(self):
        """The name the certificate must carry: the one the caller dialled (RFC 6125)."""
        if not self.server_hostname:
            raise PeerNotAuthenticated("X.509 authentication needs a server_hostname to match the certificate")
        name = self.server_hostname.strip("[]")
        try:
            return IPAddress(ipaddress.ip_address(name))
        except ValueError:
            pass
        try:
            return DNSName(name.encode("idna").decode("ascii"))
        except (UnicodeError, ValueError) as exc:
            raise PeerNotAuthenticated(f"{self.server_hostname!r} is not a name a certificate can carry: "
                                       f"{exc}") from None

    def process_server_key_exchange(self, raw: bytes) -> None:
        """The server's ECDHE parameters and its signature over them, header included.

        :raises MalformedMessage: it does not decode.
        :raises IllegalParameter: a group, point or signature scheme we did not offer.
        :raises ProofFailed: the signature does not verify with the leaf's key (decrypt_error)."""
        key = self.peer_certificate.public_key()
        message = parse_message(EcdheServerKeyExchange(self.suite), raw)
        group, point = message.named_curve, bytes(message.ecdh_Ys)
        if group not in _GROUPS:
            raise IllegalParameter(f"server chose group {group}, which we did not offer")
        _check_point(group, point)
        scheme = _SIGNATURE_SCHEMES.get((message.hashAlg, message.signAlg))
        if scheme is None:
            raise IllegalParameter(f"server signed with ({message.hashAlg}, {message.signAlg}), "
                                   "which we did not offer")
        if scheme.authentication != self.suite.authentication:
            raise IllegalParameter(f"{scheme.authentication} signature in an {self.suite.authentication} suite")
        # RFC 8422 §5.4: the signature covers ClientHello.random + ServerHello.random +
        # ServerECDHParams, which binds the key share to this handshake.
        signed = self.client_random + self.server_random + message.params
        try:
            scheme.verify(key, bytes(message.signature), signed)
        except (InvalidSignature, ValueError):
            raise ProofFailed("ServerKeyExchange signature does not verify with the server's certificate") from None
        self._group, self._server_point = group, point

    def client_key_exchange(self) -> tuple[bytes, bytes]:
        """(the whole ClientKeyExchange message, the premaster secret) on the server's group.

        :raises IllegalParameter: the server's X25519 point gives the all-zero secret (RFC 8422 §5.11)."""
        if self._server_point is None:
            raise RuntimeError("no verified ServerKeyExchange: process_server_key_exchange() first")
        curve = _GROUPS[self._group]
        try:
            if curve is None:
                private = x25519.X25519PrivateKey.generate()
                premaster = private.exchange(x25519.X25519PublicKey.from_public_bytes(self._server_point))
                own_point = private.public_key().public_bytes_raw()
            else:
                private = ec.generate_private_key(curve)
                peer = ec.EllipticCurvePublicKey.from_encoded_point(curve, self._server_point)
                # RFC 8422 §5.10: the premaster is the x-coordinate, as exchange(ECDH()) returns it.
                premaster = private.exchange(ec.ECDH(), peer)
                own_point = private.public_key().public_bytes(serialization.Encoding.X962,
                                                              serialization.PublicFormat.UncompressedPoint)
        except ValueError as exc:
            # OpenSSL refuses X25519 low-order points, whose shared secret is all zeros.
            raise IllegalParameter(f"ECDH with the server's point failed: {exc}") from None
        message = ClientKeyExchange(self.suite.code, TLS_1_2).createECDH(bytearray(own_point))
        return bytes(message.write()), premaster


def _check_point(group: int, point: bytes) -> None:
    """RFC 8422 §5.4: X25519 points are 32 bytes; NIST points uncompressed (the only format
    we offered), and on the curve (a point off it leaks the private key, the invalid-curve attack)."""
    curve = _GROUPS[group]
    if curve is None:
        if len(point) != _X25519_POINT_LENGTH:
            raise IllegalParameter(f"X25519 point of {len(point)} bytes, not {_X25519_POINT_LENGTH}")
        return
    coordinate_length = (curve.key_size + 7) // 8
    if len(point) != 1 + 2 * coordinate_length or point[0] != 4:
        raise IllegalParameter(f"{curve.name} point is not in uncompressed form")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise IllegalParameter(f"point is not on {curve.name}") from None
