"""The server's side of the handshake (a mixin of Connection)."""
from __future__ import annotations

import hmac
import logging
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
from .peer import parse_unverified_locator, reauthenticate, verify_peer
from .state import State
from .records import TLS_1_2

log = logging.getLogger(__name__)

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
        try:
            suite = self._select_suite(hello, extensions)
        except NoCommonSuite as exc:
            if not self._may_fall_back():
                raise
            log.info("no Bitcoin suite with this client (%s): serving standard suites", exc)
            self._delegate_to_standard()
            return None
        self.client_random = bytes(hello.random)
        self.server_random = os.urandom(32)
        client_locator = extension_data(extensions[LOCATOR_EXTENSION])
        resumable = self._resumable_session(bytes(hello.session_id), client_locator)
        self._offered_suites = None          # needed only here; a kept connection should not hold it
        self.suite = resumable.suite if resumable else suite
        self.session_id = resumable.id if resumable else os.urandom(32)
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
        self._transcript.start_hash(self.suite.prf_hash)
        self._client_locator = client_locator
        server_hello = ServerHello().create(TLS_1_2, bytearray(self.server_random), bytearray(self.session_id),
                                            self.suite.code, extensions=reply_extensions)
        if resumable is not None:
            return self._resume_as_server(resumable, server_hello)
        self._key_exchange = KEY_EXCHANGES[suite.key_exchange](
            suite, self.client_random, self.server_random, self.config.identity)
        self._send_handshake(server_hello, self._key_exchange.server_key_exchange(), ServerHelloDone().create())
        return None

    def _may_fall_back(self) -> bool:
        return (self.config.fallback_context is not None and self._raw_hello is not None
                and not self.config.require_client_identity)

    def _resumable_session(self, session_id: bytes, client_locator: bytes):
        """The cached session this ClientHello may resume, if any (no chain lookups)."""
        cache = self.config.session_cache
        if not session_id or cache is None:
            return None
        session = cache.get(session_id)
        if session is None or session.suite not in self.config.suites:
            return None
        # RFC 5246 §7.4.1.2: the resumed suite must be one the client offers again; and the
        # client must claim the same identity it proved when the session was made.
        if session.suite.code not in self._offered_suites or session.client_locator != client_locator:
            return None
        if session.server_locator != self.config.identity.locator.encode():
            return None
        return session

    def _resume_as_server(self, session, server_hello) -> State:
        self.peer = reauthenticate(session.peer, self.config, allowed_roles=self.config.allowed_client_roles,
                                   client=True)
        self.master_secret = session.master_secret
        self.session = session
        self.session_reused = True
        self._pending_read, server_write = record_protections(
            self.suite, self.master_secret, self.client_random, self.server_random)
        self._send_handshake(server_hello)
        self._send_change_cipher_spec(server_write)
        verify_data = finished_verify_data(self.suite, self.master_secret, client=False,
                                           transcript_hash=self._transcript.digest())
        self._send_handshake(Finished(TLS_1_2).create(bytearray(verify_data)))
        return State.WAIT_CHANGE_CIPHER_SPEC

    def _select_suite(self, hello, extensions) -> SuiteSpec:
        """Our first preference that the client offered, if the client can do it at all."""
        offered = self._offered_suites = set(hello.cipher_suites)
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
                                 allowed_roles=self.config.allowed_client_roles, client=True)
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
        if self.session_reused:
            self._complete()
            return
        if self.config.session_cache is not None:
            self.session = self._new_session(client_locator=self._client_locator,
                                             server_locator=self.config.identity.locator.encode())
            self.config.session_cache.put(self.session)
        self._send_change_cipher_spec(self._pending_write)
        verify_data = finished_verify_data(self.suite, self.master_secret, client=False,
                                           transcript_hash=self._transcript.digest())
        self._send_handshake(Finished(TLS_1_2).create(bytearray(verify_data)))
        self._complete()
