"""The server's side of the handshake (a mixin of Connection)."""
from __future__ import annotations

import hmac
import os

from tlslite.constants import CipherSuite, ExtensionType
from tlslite.extensions import ALPNExtension, TLSExtension
from tlslite.messages import ClientHello, Finished, ServerHello, ServerHelloDone

from ..ciphersuites.registry import SuiteSpec
from .errors import HandshakeError, IllegalParameter, NoCommonSuite, ProofFailed, UnsupportedVersion
from .hello import (EMPTY_RENEGOTIATION_INFO, EXTENDED_MASTER_SECRET, RENEGOTIATION_INFO,
                    extension_data, extensions_by_type, parse_message)
from .keyexchange import KEY_EXCHANGES
from .keyschedule import extended_master_secret, finished_verify_data, record_protections
from .messages import LOCATOR_EXTENSION, BitcoinClientKeyExchange
from .peer import parse_unverified_locator, verify_peer
from .records import TLS_1_2


class ServerHandshake:
    def _on_client_hello(self, raw: bytes) -> None:
        hello = parse_message(ClientHello(), raw)
        if tuple(hello.client_version) < TLS_1_2:
            raise UnsupportedVersion(f"client offers at most {hello.client_version}; TLS 1.2 is required")
        if 0 not in hello.compression_methods:
            raise IllegalParameter("client did not offer the null compression method (RFC 5246 §7.4.1.2)")
        extensions = extensions_by_type(hello)
        renegotiation = extensions.get(RENEGOTIATION_INFO)
        if renegotiation is not None and extension_data(renegotiation) != EMPTY_RENEGOTIATION_INFO:
            raise HandshakeError("non-empty renegotiation_info in an initial ClientHello (RFC 5746 §3.6)")
        suite = self._select_suite(hello, extensions)
        self.client_random = bytes(hello.random)
        self.server_random = os.urandom(32)
        self.session_id = os.urandom(32)
        self.suite = suite
        if ExtensionType.server_name in extensions:
            names = extensions[ExtensionType.server_name].hostNames or ()
            self.server_name = bytes(names[0]).decode("ascii", "replace") if names else None
        reply_extensions = [TLSExtension(extType=EXTENDED_MASTER_SECRET).create(bytearray()),
                            TLSExtension(extType=LOCATOR_EXTENSION).create(
                                bytearray(self.config.identity.locator.encode()))]
        if renegotiation is not None or CipherSuite.TLS_EMPTY_RENEGOTIATION_INFO_SCSV in hello.cipher_suites:
            reply_extensions.append(TLSExtension(extType=RENEGOTIATION_INFO).create(
                bytearray(EMPTY_RENEGOTIATION_INFO)))
        protocol = self._select_alpn(extensions.get(ExtensionType.alpn))
        if protocol is not None:
            self.alpn_protocol = protocol
            reply_extensions.append(ALPNExtension().create([bytearray(protocol.encode())]))
        self._records.negotiated = True
        self._transcript.add(raw)
        self._transcript.start_hash(suite.prf_hash)
        self._key_exchange = KEY_EXCHANGES[suite.key_exchange](
            suite, self.client_random, self.server_random, self.config.identity)
        server_hello = ServerHello().create(TLS_1_2, bytearray(self.server_random), bytearray(self.session_id),
                                            suite.code, extensions=reply_extensions)
        self._send_handshake(server_hello, self._key_exchange.server_key_exchange(), ServerHelloDone().create())

    def _select_suite(self, hello, extensions) -> SuiteSpec:
        """Our first preference that the client offered, if the client can do it at all."""
        offered = set(hello.cipher_suites)
        candidates = [s for s in self.config.suites if s.code in offered]
        if not candidates:
            raise NoCommonSuite("client offered none of our suites")
        if EXTENDED_MASTER_SECRET not in extensions:
            raise NoCommonSuite("client did not offer the extended master secret (RFC 7627), "
                                "which our suites require")
        if LOCATOR_EXTENSION not in extensions:
            raise NoCommonSuite("client sent no locator extension")
        locator = extension_data(extensions[LOCATOR_EXTENSION])
        if not locator and self.config.require_client_identity:
            raise NoCommonSuite("this server requires an anchored client identity; the client is anonymous")
        self._peer_locator = parse_unverified_locator(locator) if locator else None
        return candidates[0]

    def _select_alpn(self, extension) -> str | None:
        """Our first protocol the client offered; none in common means no ALPN (as OpenSSL does)."""
        if extension is None or not self.config.alpn_protocols:
            return None
        offered = {bytes(name).decode("latin-1") for name in extension.protocol_names or ()}
        return next((p for p in self.config.alpn_protocols if p in offered), None)

    def _on_client_key_exchange(self, raw: bytes) -> None:
        message = parse_message(BitcoinClientKeyExchange(self.suite), raw,
                                with_staple=self._peer_locator is not None,
                                max_staple_size=self.config.max_staple_size)
        self._transcript.add(raw)
        client = None
        if self._peer_locator is not None:
            client = verify_peer(self._peer_locator, message.staple, self.config,
                                 allowed_roles=self.config.allowed_client_roles)
        premaster = self._key_exchange.server_premaster(message, client.identity if client else None)
        self.peer = client
        self.master_secret = extended_master_secret(self.suite, premaster, self._transcript.digest())
        self._pending_read, self._pending_write = record_protections(
            self.suite, self.master_secret, self.client_random, self.server_random)

    def _on_client_finished(self, raw: bytes) -> None:
        expected = finished_verify_data(self.suite, self.master_secret, client=True,
                                        transcript_hash=self._transcript.digest())
        finished = parse_message(Finished(TLS_1_2), raw)
        if not hmac.compare_digest(bytes(finished.verify_data), expected):
            raise ProofFailed("client Finished does not verify")
        self._transcript.add(raw)
        self._send_change_cipher_spec(self._pending_write)
        verify_data = finished_verify_data(self.suite, self.master_secret, client=False,
                                           transcript_hash=self._transcript.digest())
        self._send_handshake(Finished(TLS_1_2).create(bytearray(verify_data)))
        self._complete()
