"""The client's standard-suite fallback against a real server: Python ``ssl`` (OpenSSL) over
memory BIOs. The client side of the handshake is driven here, from RFC 5246, with the
package's record layer and key schedule and the X509ServerAuthenticator under test; each
run ends with the server's Finished verified and application data both ways."""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tlslite.constants import CertificateType, CipherSuite, ExtensionType, GroupName, HandshakeType
from tlslite.constants import SignatureScheme as S
from tlslite.extensions import SignatureAlgorithmsExtension, SNIExtension, SupportedGroupsExtension, TLSExtension
from tlslite.messages import Certificate, ClientHello, Finished, ServerHello, ServerKeyExchange
from tlslite.utils.codec import Parser

from milagro_tls.handshake.errors import IllegalParameter, MalformedMessage, PeerNotAuthenticated, ProofFailed
from milagro_tls.handshake.hello import extensions_by_type, parse_message
from milagro_tls.handshake.keyschedule import (Transcript, extended_master_secret, finished_verify_data,
                                               record_protections)
from milagro_tls.handshake.records import ContentType, RecordLayer
from milagro_tls.handshake.x509_fallback import (STANDARD_SUITES, StandardSuite, X509ServerAuthenticator,
                                                 fallback_client_hello_extensions)

from helpers.pki import DAY, NOW, Issued, ec_key, make_intermediate, make_leaf, make_root, rsa_key, write_chain
from helpers.tls_records import handshake, handshake_messages

HOST = "server.example"
ECDSA_SUITE, RSA_SUITE = STANDARD_SUITES[0xC02B], STANDARD_SUITES[0xC02F]


# --- the PKI and the server ---------------------------------------------------------------
@dataclass
class Pki:
    root: Issued
    intermediate: Issued
    leaves: dict[str, Issued]
    files: dict[str, tuple]
    other_root: Issued

    def chain(self, name: str) -> list:
        return [self.leaves[name].certificate, self.intermediate.certificate, self.root.certificate]


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("x509-fallback")
    root = make_root()
    intermediate = make_intermediate(root)
    leaves = {
        "ecdsa": make_leaf(intermediate, ec_key()),
        "ecdsa-p384": make_leaf(intermediate, ec_key(ec.SECP384R1())),
        "rsa": make_leaf(intermediate, rsa_key()),
        "ip": make_leaf(intermediate, ec_key(), dns_names=(), ip_addresses=("127.0.0.1",)),
        "expired": make_leaf(intermediate, ec_key(), not_before=NOW - 90 * DAY, not_after=NOW - DAY),
        "self-signed": make_leaf(None, ec_key()),
    }
    files = {name: write_chain(directory, name, leaf, *(() if name == "self-signed" else (intermediate,)))
             for name, leaf in leaves.items()}
    return Pki(root, intermediate, leaves, files, make_root("Some Other Root CA"))


class PythonSslServer:
    """Python ``ssl`` as a TLS 1.2 server, limited to one suite, over memory BIOs."""

    def __init__(self, files: tuple, suite: StandardSuite) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*files)
        context.set_ciphers(suite.short_name)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def exchange(self, data: bytes) -> bytes:
        self.incoming.write(data)
        try:
            self.ssl.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()


# --- the client side, driven by hand ------------------------------------------------------
@dataclass
class ServerFlight:
    suite: StandardSuite
    client_random: bytes
    server_random: bytes
    certificate: bytes
    server_key_exchange: bytes


class FallbackClient:
    """One fallback handshake from the client's side: ClientHello, then the authenticator
    for Certificate/ServerKeyExchange, then CKE, CCS, Finished with the package's key schedule."""

    def __init__(self, server: PythonSslServer, *, groups=None, signature_schemes=None) -> None:
        self.server = server
        self.records = RecordLayer()
        self.transcript = Transcript()
        self.client_random = os.urandom(32)
        self.groups, self.signature_schemes = groups, signature_schemes

    def hello(self) -> ServerFlight:
        extensions = [SNIExtension().create(bytearray(HOST.encode())), *fallback_client_hello_extensions(),
                      TLSExtension(extType=ExtensionType.extended_master_secret).create(bytearray())]
        for extension in extensions:   # narrowing the offer steers OpenSSL's choice
            if isinstance(extension, SupportedGroupsExtension) and self.groups:
                extension.groups = list(self.groups)
            if isinstance(extension, SignatureAlgorithmsExtension) and self.signature_schemes:
                extension.sigalgs = list(self.signature_schemes)
        suites = list(STANDARD_SUITES) + [CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV]
        hello = bytes(ClientHello().create((3, 3), bytearray(self.client_random), bytearray(), suites,
                                           extensions=extensions).write())
        self.transcript.add(hello)
        self.records.feed(self.server.exchange(self.records.encode(ContentType.handshake, hello)))
        messages = self._handshake_messages()
        assert [m[0] for m in messages] == [HandshakeType.server_hello, HandshakeType.certificate,
                                           HandshakeType.server_key_exchange, HandshakeType.server_hello_done]
        server_hello = parse_message(ServerHello(), messages[0])
        assert ExtensionType.extended_master_secret in extensions_by_type(server_hello)
        self.suite = STANDARD_SUITES[server_hello.cipher_suite]
        self.server_random = bytes(server_hello.random)
        self.records.negotiated = True
        self.transcript.start_hash(self.suite.prf_hash)
        for message in messages:
            self.transcript.add(message)
        return ServerFlight(self.suite, self.client_random, self.server_random, messages[1], messages[2])

    def authenticator(self, flight: ServerFlight, anchors: list[bytes], **options) -> X509ServerAuthenticator:
        options.setdefault("server_hostname", HOST)
        return X509ServerAuthenticator(suite=flight.suite, trust_anchors=anchors,
                                       client_random=flight.client_random, server_random=flight.server_random,
                                       **options)

    def finish(self, authenticator: X509ServerAuthenticator) -> None:
        client_key_exchange, premaster = authenticator.client_key_exchange()
        self.transcript.add(client_key_exchange)
        master_secret = extended_master_secret(self.suite, premaster, self.transcript.digest())
        client_write, server_write = record_protections(self.suite, master_secret, self.client_random,
                                                        self.server_random)
        flight = self.records.encode(ContentType.handshake, client_key_exchange)
        flight += self.records.encode(ContentType.change_cipher_spec, b"\x01")
        self.records.write_protection = client_write
        verify_data = finished_verify_data(self.suite, master_secret, client=True,
                                           transcript_hash=self.transcript.digest())
        finished = bytes(Finished((3, 3)).create(bytearray(verify_data)).write())
        self.transcript.add(finished)
        flight += self.records.encode(ContentType.handshake, finished)
        self.records.feed(self.server.exchange(flight))
        assert self.records.next_record() == (ContentType.change_cipher_spec, b"\x01")
        self.records.read_protection = server_write
        [server_finished] = self._handshake_messages()
        expected = finished_verify_data(self.suite, master_secret, client=False,
                                        transcript_hash=self.transcript.digest())
        assert bytes(parse_message(Finished((3, 3)), server_finished).verify_data) == expected

    def send(self, data: bytes) -> None:
        self.server.incoming.write(self.records.encode(ContentType.application_data, data))

    def receive(self) -> bytes:
        self.records.feed(self.server.outgoing.read())
        received = b""
        while (record := self.records.next_record()) is not None:
            assert record[0] == ContentType.application_data
            received += record[1]
        return received

    def _handshake_messages(self) -> list[bytes]:
        payload = b""
        while (record := self.records.next_record()) is not None:
            assert record[0] == ContentType.handshake, record
            payload += record[1]
        return handshake_messages(payload)


def _connect(pki: Pki, leaf: str, suite: StandardSuite, **client_options):
    client = FallbackClient(PythonSslServer(pki.files[leaf], suite), **client_options)
    return client, client.hello()


def _complete(pki: Pki, leaf: str, suite: StandardSuite, **client_options):
    client, flight = _connect(pki, leaf, suite, **client_options)
    authenticator = client.authenticator(flight, [pki.root.der])
    authenticator.process_certificate(flight.certificate)
    authenticator.process_server_key_exchange(flight.server_key_exchange)
    client.finish(authenticator)
    return client, flight, authenticator


def _round_trip(client: FallbackClient) -> None:
    client.send(b"ping from the fallback client")
    assert client.server.ssl.read(1024) == b"ping from the fallback client"
    reply = os.urandom(40000)     # three records: 2^14 plaintext bytes at most each
    client.server.ssl.write(reply)
    assert client.receive() == reply


# --- completing handshakes ----------------------------------------------------------------
@pytest.mark.parametrize("suite", STANDARD_SUITES.values(), ids=lambda s: s.short_name)
def test_each_standard_suite_completes_against_python_ssl_and_application_data_round_trips(pki, suite):
    leaf = "ecdsa" if suite.authentication == "ECDSA" else "rsa"
    client, _, authenticator = _complete(pki, leaf, suite)
    assert client.server.ssl.cipher()[:2] == (suite.short_name, "TLSv1.2")
    assert authenticator.peer_certificate == pki.leaves[leaf].certificate
    assert authenticator.peer_chain == pki.chain(leaf)
    _round_trip(client)


@pytest.mark.parametrize("group", [GroupName.x25519, GroupName.secp256r1, GroupName.secp384r1],
                         ids=GroupName.toRepr)
def test_each_offered_group_completes(pki, group):
    # An RSA leaf: in TLS 1.2 supported_groups also limits the curve of an ECDSA leaf's key
    # (RFC 8422 §5.1), so OpenSSL refuses a P-256 leaf to a client offering only X25519.
    client, flight, _ = _complete(pki, "rsa", RSA_SUITE, groups=[group])
    assert _parse_ske(flight).named_curve == group
    _round_trip(client)


@pytest.mark.parametrize("leaf, scheme", [
    ("ecdsa", S.ecdsa_secp256r1_sha256), ("ecdsa-p384", S.ecdsa_secp384r1_sha384),
    ("rsa", S.rsa_pss_rsae_sha256), ("rsa", S.rsa_pss_rsae_sha384), ("rsa", S.rsa_pss_rsae_sha512),
    ("rsa", S.rsa_pkcs1_sha256), ("rsa", S.rsa_pkcs1_sha384), ("rsa", S.rsa_pkcs1_sha512),
], ids=lambda value: value if isinstance(value, str) else S.toRepr(value))
def test_each_offered_signature_scheme_verifies(pki, leaf, scheme):
    suite = ECDSA_SUITE if leaf.startswith("ecdsa") else RSA_SUITE
    client, flight, _ = _complete(pki, leaf, suite, signature_schemes=[scheme])
    ske = _parse_ske(flight)
    assert (ske.hashAlg, ske.signAlg) == scheme
    _round_trip(client)


def test_an_ip_address_is_matched_against_the_ip_address_san(pki):
    client, flight = _connect(pki, "ip", ECDSA_SUITE)
    authenticator = client.authenticator(flight, [pki.root.der], server_hostname="127.0.0.1")
    authenticator.process_certificate(flight.certificate)
    assert authenticator.peer_certificate == pki.leaves["ip"].certificate
    with pytest.raises(PeerNotAuthenticated):
        client.authenticator(flight, [pki.root.der], server_hostname="127.0.0.2").process_certificate(
            flight.certificate)


def test_the_chain_verifies_when_the_store_holds_other_anchors_too(pki):
    client, flight = _connect(pki, "ecdsa", ECDSA_SUITE)
    authenticator = client.authenticator(flight, [pki.other_root.der, pki.root.der])
    authenticator.process_certificate(flight.certificate)
    assert authenticator.peer_chain[-1] == pki.root.certificate


# --- the chain: PeerNotAuthenticated (bad_certificate) ----------------------------------------
@pytest.mark.parametrize("leaf, anchors, options", [
    pytest.param("ecdsa", "root", {"server_hostname": "other.example"}, id="wrong hostname"),
    pytest.param("expired", "root", {}, id="expired leaf"),
    pytest.param("ecdsa", "other_root", {}, id="unknown CA"),
    pytest.param("self-signed", "root", {}, id="self-signed leaf not in the store"),
    pytest.param("ecdsa", "root", {"server_hostname": None}, id="no server_hostname"),
    pytest.param("ecdsa", "root", {"now": NOW + 100 * DAY}, id="verified after the leaf expired"),
    pytest.param("ecdsa", "root", {"now": NOW - 2 * DAY}, id="verified before the leaf is valid"),
    pytest.param("ecdsa", None, {}, id="no trust anchors"),
])
def test_server_is_not_authenticated_when_its_chain_does_not_verify(pki, leaf, anchors, options):
    client, flight = _connect(pki, leaf, ECDSA_SUITE)
    store = [] if anchors is None else [getattr(pki, anchors).der]
    authenticator = client.authenticator(flight, store, **options)
    with pytest.raises(PeerNotAuthenticated) as refused:
        authenticator.process_certificate(flight.certificate)
    assert refused.value.alert == 42          # bad_certificate
    with pytest.raises(RuntimeError):
        authenticator.peer_certificate


def test_server_is_not_authenticated_by_an_empty_certificate_list(pki):
    client, flight = _connect(pki, "ecdsa", ECDSA_SUITE)
    empty = bytes(Certificate(CertificateType.x509, (3, 3)).create(None).write())
    with pytest.raises(PeerNotAuthenticated):
        client.authenticator(flight, [pki.root.der]).process_certificate(empty)


@pytest.mark.parametrize("leaf, suite", [("rsa", ECDSA_SUITE), ("ecdsa", RSA_SUITE)],
                         ids=["RSA leaf, ECDSA suite", "ECDSA leaf, RSA suite"])
def test_a_leaf_whose_key_does_not_fit_the_suite_is_an_illegal_parameter(pki, leaf, suite):
    served_under = RSA_SUITE if leaf == "rsa" else ECDSA_SUITE
    client, flight = _connect(pki, leaf, served_under)
    authenticator = X509ServerAuthenticator(suite=suite, trust_anchors=[pki.root.der], server_hostname=HOST,
                                            client_random=flight.client_random, server_random=flight.server_random)
    with pytest.raises(IllegalParameter):
        authenticator.process_certificate(flight.certificate)


# --- the ServerKeyExchange ----------------------------------------------------------------
def _parse_ske(flight: ServerFlight) -> ServerKeyExchange:
    return ServerKeyExchange(flight.suite.code, (3, 3)).parse(Parser(bytearray(flight.server_key_exchange[1:])))


def _authenticated(pki: Pki, leaf: str = "ecdsa", suite: StandardSuite = ECDSA_SUITE, **client_options):
    client, flight = _connect(pki, leaf, suite, **client_options)
    authenticator = client.authenticator(flight, [pki.root.der])
    authenticator.process_certificate(flight.certificate)
    return client, flight, authenticator


def _rewritten(flight: ServerFlight, **changes) -> bytes:
    """The server's ServerKeyExchange with fields replaced, its signature left as it was."""
    message = _parse_ske(flight)
    for name, value in changes.items():
        setattr(message, name, value)
    return bytes(message.write())


def _signed_by(leaf: Issued, flight: ServerFlight, *, group: int, point: bytes) -> bytes:
    """A ServerKeyExchange for any point, correctly signed with the leaf's key (ECDSA, SHA-256)."""
    message = ServerKeyExchange(flight.suite.code, (3, 3)).createECDH(3, group, bytearray(point))
    message.hashAlg, message.signAlg = S.ecdsa_secp256r1_sha256
    signed = flight.client_random + flight.server_random + bytes(message.writeParams())
    message.signature = bytearray(leaf.key.sign(signed, ec.ECDSA(hashes.SHA256())))
    return bytes(message.write())


@pytest.mark.parametrize("leaf, suite", [("ecdsa", ECDSA_SUITE), ("rsa", RSA_SUITE)], ids=["ECDSA", "RSA"])
def test_a_tampered_server_key_exchange_signature_fails_the_proof(pki, leaf, suite):
    _, flight, authenticator = _authenticated(pki, leaf, suite)
    signature = bytearray(_parse_ske(flight).signature)
    signature[len(signature) // 2] ^= 0x01
    with pytest.raises(ProofFailed) as refused:
        authenticator.process_server_key_exchange(_rewritten(flight, signature=signature))
    assert refused.value.alert == 51          # decrypt_error
    with pytest.raises(RuntimeError):
        authenticator.client_key_exchange()


def test_a_server_key_exchange_replayed_into_another_handshake_fails_the_proof(pki):
    client, flight, _ = _authenticated(pki)
    other = X509ServerAuthenticator(suite=flight.suite, trust_anchors=[pki.root.der], server_hostname=HOST,
                                    client_random=os.urandom(32), server_random=flight.server_random)
    other.process_certificate(flight.certificate)
    with pytest.raises(ProofFailed):
        other.process_server_key_exchange(flight.server_key_exchange)


def _signature_scheme(scheme: tuple[int, int]) -> dict:
    return {"hashAlg": scheme[0], "signAlg": scheme[1]}


#: Rewrites of a P-256 ServerKeyExchange (the client offered only P-256), given its point.
SKE_REWRITES = {
    "group we did not offer": lambda point: {"named_curve": GroupName.secp521r1},
    "compressed point": lambda point: {"ecdh_Ys": bytearray(bytes([2 + point[-1] % 2]) + point[1:33])},
    "point off the curve": lambda point: {"ecdh_Ys": bytearray(point[:-1] + bytes([point[-1] ^ 1]))},
    "point of another curve's length": lambda point: {"ecdh_Ys": bytearray(point + bytes(32))},
    "X25519 point of 33 bytes": lambda point: {"named_curve": GroupName.x25519, "ecdh_Ys": bytearray(33)},
    "signature scheme we did not offer": lambda point: _signature_scheme(S.ecdsa_sha1),
    "RSA signature in an ECDSA suite": lambda point: _signature_scheme(S.rsa_pkcs1_sha256),
}


@pytest.mark.parametrize("case", SKE_REWRITES)
def test_server_key_exchange_values_we_did_not_offer_are_illegal_parameters(pki, case):
    _, flight, authenticator = _authenticated(pki, groups=[GroupName.secp256r1])
    point = bytes(_parse_ske(flight).ecdh_Ys)
    with pytest.raises(IllegalParameter) as refused:
        authenticator.process_server_key_exchange(_rewritten(flight, **SKE_REWRITES[case](point)))
    assert refused.value.alert == 47          # illegal_parameter


def test_an_explicit_curve_is_an_illegal_parameter(pki):
    _, flight, authenticator = _authenticated(pki)
    raw = bytearray(flight.server_key_exchange)
    raw[4] = 1                                 # curve_type explicit_prime (RFC 8422 §5.4)
    with pytest.raises(IllegalParameter):
        authenticator.process_server_key_exchange(bytes(raw))


def test_an_x25519_point_of_low_order_is_an_illegal_parameter_even_when_signed(pki):
    _, flight, authenticator = _authenticated(pki)
    authenticator.process_server_key_exchange(
        _signed_by(pki.leaves["ecdsa"], flight, group=GroupName.x25519, point=bytes(32)))
    with pytest.raises(IllegalParameter):
        authenticator.client_key_exchange()


def test_client_key_exchange_is_on_the_servers_group_and_agrees_with_its_key(pki):
    _, flight, authenticator = _authenticated(pki)
    server_key = ec_key(ec.SECP384R1())
    point = server_key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
    authenticator.process_server_key_exchange(_signed_by(pki.leaves["ecdsa"], flight, group=GroupName.secp384r1,
                                                         point=point))
    message, premaster = authenticator.client_key_exchange()
    assert message[0] == HandshakeType.client_key_exchange
    client_point = message[5:]
    assert message[4] == len(client_point) == 97              # uncompressed P-384, <1..2^8-1>
    client_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), client_point)
    assert premaster == server_key.exchange(ec.ECDH(), client_key)


# --- decoding: MalformedMessage (decode_error) -------------------------------------------------
def _certificate(body: bytes) -> bytes:
    return handshake(HandshakeType.certificate, body)


#: Rewrites of the server's Certificate message, given the whole message.
CERTIFICATE_REWRITES = {
    "truncated": lambda raw: raw[:len(raw) // 2],
    "truncated, lengths fixed": lambda raw: _certificate(raw[4:-100]),
    "a certificate cut short": lambda raw: _certificate((len(raw) - 4 - 3 - 100).to_bytes(3, "big")
                                                        + raw[7:-100]),
    "trailing bytes": lambda raw: _certificate(raw[4:] + b"\x00"),
    "a certificate that is not DER": lambda raw: _certificate((8).to_bytes(3, "big") + (5).to_bytes(3, "big")
                                                              + b"\x30\x03abc"),
    "an empty certificate": lambda raw: _certificate((3).to_bytes(3, "big") + bytes(3)),
}


@pytest.mark.parametrize("case", CERTIFICATE_REWRITES)
def test_a_certificate_message_that_does_not_decode_is_malformed(pki, case):
    client, flight = _connect(pki, "ecdsa", ECDSA_SUITE)
    authenticator = client.authenticator(flight, [pki.root.der])
    with pytest.raises(MalformedMessage) as refused:
        authenticator.process_certificate(CERTIFICATE_REWRITES[case](flight.certificate))
    assert refused.value.alert == 50          # decode_error


@pytest.mark.parametrize("cut", [1, 10, 40])
def test_a_truncated_server_key_exchange_is_malformed(pki, cut):
    _, flight, authenticator = _authenticated(pki)
    body = flight.server_key_exchange[4:-cut]
    with pytest.raises(MalformedMessage):
        authenticator.process_server_key_exchange(handshake(HandshakeType.server_key_exchange, body))


# --- the offer and the registry ---------------------------------------------------------------
def test_standard_suites_carry_the_names_tlslite_and_openssl_give_their_codes():
    for suite in STANDARD_SUITES.values():
        assert CipherSuite.ietfNames[suite.code] == suite.name
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.set_ciphers(suite.short_name)
        [openssl] = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert (openssl["name"], openssl["id"] & 0xFFFF) == (suite.short_name, suite.code)
        assert openssl["auth"] == f"auth-{suite.authentication.lower()}"
        assert openssl["digest"] in (None, f"{suite.prf_hash}")
        assert openssl["strength_bits"] == suite.cipher.bits


def test_fallback_extensions_are_fresh_objects_with_the_offer():
    first, second = fallback_client_hello_extensions(), fallback_client_hello_extensions()
    assert all(a is not b for a, b in zip(first, second))
    groups, formats, schemes = first
    assert groups.groups == [GroupName.x25519, GroupName.secp256r1, GroupName.secp384r1]
    assert formats.formats == [0]
    assert schemes.sigalgs == [S.ecdsa_secp256r1_sha256, S.ecdsa_secp384r1_sha384, S.rsa_pss_rsae_sha256,
                               S.rsa_pss_rsae_sha384, S.rsa_pss_rsae_sha512, S.rsa_pkcs1_sha256,
                               S.rsa_pkcs1_sha384, S.rsa_pkcs1_sha512]


def test_methods_out_of_order_are_our_bug_not_the_peers(pki):
    authenticator = X509ServerAuthenticator(suite=ECDSA_SUITE, trust_anchors=[pki.root.der], server_hostname=HOST,
                                            client_random=bytes(32), server_random=bytes(32))
    with pytest.raises(RuntimeError):
        authenticator.process_server_key_exchange(b"")
    with pytest.raises(RuntimeError):
        authenticator.client_key_exchange()
