"""The client's side of the handshake (a mixin of Connection)."""
from __future__ import annotations

import hmac
import os

from tlslite.constants import AlertDescription, CipherSuite, ExtensionType
from tlslite.extensions import ALPNExtension, SNIExtension, TLSExtension
from tlslite.constants import CertificateType
from tlslite.messages import Certificate, ClientHello, Finished, ServerHello, ServerHelloDone
from tlslite.x509certchain import X509CertChain

from .errors import (HandshakeError, IllegalParameter, NoCommonSuite, ProofFailed, UnexpectedMessage,
                     UnsupportedVersion)
from .hello import (EMPTY_RENEGOTIATION_INFO, EXTENDED_MASTER_SECRET, RENEGOTIATION_INFO,
                    extension_data, extensions_by_type, parse_message, sni_hostname)
from .keyexchange import KEY_EXCHANGES
from .keyschedule import extended_master_secret, finished_verify_data, record_protections
from .messages import LOCATOR_EXTENSION, BitcoinServerKeyExchange
from .peer import parse_unverified_locator, reauthenticate, verify_peer
from .records import TLS_1_2
from .state import State
from .x509_fallback import STANDARD_SUITES, StandardSuite, X509ServerAuthenticator, fallback_client_hello_extensions


class UnsupportedExtension(HandshakeError):
    alert = AlertDescription.unsupported_extension


class ClientHandshake:
    def _send_client_hello(self) -> bool:
        config = self.config
        self.client_random = os.urandom(32)
        own_locator = config.identity.locator.encode() if config.identity else b""
        extensions = [TLSExtension(extType=EXTENDED_MASTER_SECRET).create(bytearray()),
                      # Always sent, empty when anonymous: the server's locator in its
                      # ServerHello is then never unsolicited (RFC 5246 §7.4.1.4).
                      TLSExtension(extType=LOCATOR_EXTENSION).create(bytearray(own_locator))]
        hostname = sni_hostname(self.server_hostname)
        if hostname:
            extensions.insert(0, SNIExtension().create(bytearray(hostname.encode("idna"))))
        if config.alpn_protocols:
            extensions.append(ALPNExtension().create([bytearray(p.encode()) for p in config.alpn_protocols]))
        suites = [s.code for s in config.suites]
        if config.fallback_trust_anchors is not None:
            suites += list(STANDARD_SUITES)
            extensions += fallback_client_hello_extensions()
        suites.append(CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV)
        self._sent_extensions = {e.extType for e in extensions} | {RENEGOTIATION_INFO}
        self._x509 = None
        offered = self.session
        if offered is not None and (offered.expired(config.session_lifetime) or offered.suite not in config.suites):
            offered = None
        self._offered_session = offered
        self.session = None
        hello = ClientHello().create(TLS_1_2, bytearray(self.client_random),
                                     bytearray(offered.id if offered else b""), suites, extensions=extensions)
        self._send_handshake(hello)
        return True

    def _on_server_hello(self, raw: bytes) -> None:
        hello = parse_message(ServerHello(), raw)
        if tuple(hello.server_version) != TLS_1_2:
            raise UnsupportedVersion(f"server chose version {hello.server_version}")
        suite = next((s for s in self.config.suites if s.code == hello.cipher_suite), None)
        if suite is None and self.config.fallback_trust_anchors is not None:
            suite = STANDARD_SUITES.get(hello.cipher_suite)
        if suite is None:
            raise IllegalParameter(f"server chose suite 0x{hello.cipher_suite:04x}, which we did not offer")
        if hello.compression_method != 0:
            raise IllegalParameter("server chose a compression method")
        extensions = extensions_by_type(hello)
        unsolicited = set(extensions) - self._sent_extensions
        if unsolicited:
            raise UnsupportedExtension(f"server sent extensions we did not offer: {sorted(unsolicited)}")
        if EXTENDED_MASTER_SECRET not in extensions:
            raise NoCommonSuite("server did not negotiate the extended master secret (RFC 7627)")
        if RENEGOTIATION_INFO in extensions and \
                extension_data(extensions[RENEGOTIATION_INFO]) != EMPTY_RENEGOTIATION_INFO:
            raise NoCommonSuite("non-empty renegotiation_info in an initial handshake (RFC 5746 §3.4)")
        locator = extension_data(extensions[LOCATOR_EXTENSION]) if LOCATOR_EXTENSION in extensions else b""
        standard = isinstance(suite, StandardSuite)
        if standard and locator:
            raise IllegalParameter("server chose a standard suite but named a locator")
        if not standard and not locator:
            raise IllegalParameter("server chose a Bitcoin suite without naming its locator")
        self._peer_locator = None if standard else parse_unverified_locator(locator)
        if ExtensionType.alpn in extensions:
            names = extensions[ExtensionType.alpn].protocol_names or []
            offered = set(self.config.alpn_protocols)
            if len(names) != 1 or bytes(names[0]).decode("latin-1") not in offered:
                raise IllegalParameter("server selected an ALPN protocol we did not offer")
            self.alpn_protocol = bytes(names[0]).decode("latin-1")
        self.suite = suite
        self.server_random = bytes(hello.random)
        self.session_id = bytes(hello.session_id)
        self._records.negotiated = True
        self._transcript.add(raw)
        self._transcript.start_hash(suite.prf_hash)
        if standard:
            self._x509 = X509ServerAuthenticator(
                suite=suite, trust_anchors=self.config.fallback_trust_anchors,
                server_hostname=self.server_hostname, client_random=self.client_random,
                server_random=self.server_random)
            return State.WAIT_CERTIFICATE
        offered = self._offered_session
        if offered is not None and self.session_id == offered.id:
            return self._resume_as_client(offered, locator)
        self._key_exchange = KEY_EXCHANGES[suite.key_exchange](
            suite, self.client_random, self.server_random, self.config.identity)
        return None

    def _resume_as_client(self, session, server_locator: bytes) -> State:
        """The server took our session: no key exchange and no chain, the session's secret."""
        if session.suite is not self.suite:
            raise IllegalParameter("server resumed our session with another suite (RFC 5246 §7.4.1.3)")
        if server_locator != session.peer.identity.locator.encode():
            raise IllegalParameter("server resumed a session that another anchor made")
        self.peer = reauthenticate(session.peer, self.config, expected_name=self.server_hostname)
        self.master_secret = session.master_secret
        self.session = session
        self.session_reused = True
        self._pending_write, self._pending_read = record_protections(
            self.suite, self.master_secret, self.client_random, self.server_random)
        return State.WAIT_CHANGE_CIPHER_SPEC

    def _on_certificate(self, raw: bytes) -> None:
        if self._x509 is None:
            raise UnexpectedMessage("Certificate: our suites have no X.509 certificates")
        self._x509.process_certificate(raw)
        self._transcript.add(raw)
        self.peer_x509 = self._x509.peer_certificate

    def _on_certificate_request(self, raw: bytes) -> None:
        if self._x509 is None:
            raise UnexpectedMessage("CertificateRequest: our suites have no X.509 certificates")
        # We have no client certificate: RFC 5246 §7.4.6 lets the client answer with an empty list.
        self._transcript.add(raw)
        self._certificate_requested = True

    def _on_server_key_exchange(self, raw: bytes) -> None:
        if self._x509 is not None:
            self._x509.process_server_key_exchange(raw)
            self._transcript.add(raw)
            return
        message = parse_message(BitcoinServerKeyExchange(self.suite), raw,
                                max_staple_size=self.config.max_staple_size)
        self._transcript.add(raw)
        peer = verify_peer(self._peer_locator, message.staple, self.config, expected_name=self.server_hostname)
        self._key_exchange.client_process_server(message, peer.identity)
        self.peer = peer

    def _on_server_hello_done(self, raw: bytes) -> None:
        parse_message(ServerHelloDone(), raw)
        self._transcript.add(raw)
        if self._x509 is not None:
            if getattr(self, "_certificate_requested", False):
                self._send_handshake(Certificate(CertificateType.x509).create(X509CertChain([])))
            client_key_exchange, premaster = self._x509.client_key_exchange()
            self._send_raw_handshake(client_key_exchange)
        else:
            client_key_exchange, premaster = self._key_exchange.client_key_exchange()
            self._send_handshake(client_key_exchange)
        self.master_secret = extended_master_secret(self.suite, premaster, self._transcript.digest())
        client_write, self._pending_read = record_protections(
            self.suite, self.master_secret, self.client_random, self.server_random)
        self._send_change_cipher_spec(client_write)
        verify_data = finished_verify_data(self.suite, self.master_secret, client=True,
                                           transcript_hash=self._transcript.digest())
        self._send_handshake(Finished(TLS_1_2).create(bytearray(verify_data)))

    def _on_server_finished(self, raw: bytes) -> None:
        expected = finished_verify_data(self.suite, self.master_secret, client=False,
                                        transcript_hash=self._transcript.digest())
        finished = parse_message(Finished(TLS_1_2), raw)
        if not hmac.compare_digest(bytes(finished.verify_data), expected):
            raise ProofFailed("server Finished does not verify")
        self._transcript.add(raw)
        if self.session_reused:
            self._send_change_cipher_spec(self._pending_write)
            verify_data = finished_verify_data(self.suite, self.master_secret, client=True,
                                               transcript_hash=self._transcript.digest())
            self._send_handshake(Finished(TLS_1_2).create(bytearray(verify_data)))
        elif self._x509 is None:
            own = self.config.identity.locator.encode() if self.config.identity else b""
            self.session = self._new_session(client_locator=own, server_locator=self._peer_locator.encode())
        self._complete()
