"""Each suite family's key exchange, for both roles: the seam between the handshake and
the pure maths in milagro_tls.ciphersuites.

The peer's long-term point R always comes from the verifier (``PeerIdentity.nonce_point``),
never from the wire: the point a message carries is only compared with it.
"""
from __future__ import annotations

import hmac
from contextlib import contextmanager

from ..chain.verify import PeerIdentity
from ..ciphersuites import ecdh_btc, nizk, yak_btc
from ..ciphersuites.errors import InvalidProof, KeyAgreementError
from ..ciphersuites.points import generate_scalar, parse_point
from ..ciphersuites.registry import KeyExchangeKind, SuiteSpec
from ..identity.local import LocalIdentity
from .errors import IllegalParameter, InternalError, ProofFailed
from .messages import BitcoinClientKeyExchange, BitcoinServerKeyExchange, Staple


@contextmanager
def _peer_values():
    """Map the maths' refusals to alerts: a bad proof is a failed cryptographic check
    (decrypt_error, RFC 5246 §7.2.2), a bad point or scalar an illegal_parameter."""
    try:
        yield
    except InvalidProof as exc:
        raise ProofFailed(str(exc)) from None
    except KeyAgreementError as exc:
        raise IllegalParameter(str(exc)) from None


def _staple(identity: LocalIdentity | None) -> Staple | None:
    return None if identity is None else Staple(identity.certificate_bytes, identity.proof_bytes)


def _same_point(received: bytes, expected: bytes) -> None:
    if not hmac.compare_digest(received, expected):
        raise IllegalParameter("key-exchange point is not the nonce point of the stapled anchor")


class BitcoinKeyExchange:
    def __init__(self, suite: SuiteSpec, client_random: bytes, server_random: bytes,
                 local: LocalIdentity | None) -> None:
        self.suite = suite
        self.client_random = client_random
        self.server_random = server_random
        self.local = local

    def _require_local(self) -> LocalIdentity:
        if self.local is None:
            raise InternalError("a server needs an anchored identity")
        return self.local


class EcdhBitcoinKeyExchange(BitcoinKeyExchange):
    """premaster = x(k_C·R_S) = x(k_S·R_C); server-only: x(e·R_S) = x(k_S·E)."""

    def server_key_exchange(self) -> BitcoinServerKeyExchange:
        local = self._require_local()
        return BitcoinServerKeyExchange(self.suite).create(local.nonce_point, None, _staple(local))

    def client_process_server(self, ske: BitcoinServerKeyExchange, server: PeerIdentity) -> None:
        with _peer_values():
            parse_point(ske.point)
        _same_point(ske.point, server.nonce_point)
        self._server_point = server.nonce_point

    def client_key_exchange(self) -> tuple[BitcoinClientKeyExchange, bytes]:
        secret = self.local.nonce_key if self.local else generate_scalar()
        premaster = ecdh_btc.premaster(secret, self._server_point)
        cke = BitcoinClientKeyExchange(self.suite).create(secret.public_key.format(), None, _staple(self.local))
        return cke, premaster

    def server_premaster(self, cke: BitcoinClientKeyExchange, client: PeerIdentity | None) -> bytes:
        local = self._require_local()
        with _peer_values():
            parse_point(cke.point)
            if client is not None:
                _same_point(cke.point, client.nonce_point)
            return ecdh_btc.premaster(local.nonce_key, cke.point)


class YakBitcoinKeyExchange(BitcoinKeyExchange):
    """K = (k_C + x_C)·(R_S + X_S) = (k_S + x_S)·(R_C + X_C); server-only drops k_C, R_C.
    Each ephemeral carries an RFC 8235 proof bound to its sender's identity and both randoms."""

    def _prove(self, ephemeral) -> nizk.SchnorrProof:
        digest = self.local.certificate.digest() if self.local else None
        return nizk.prove(ephemeral, yak_btc.user_id(digest),
                          yak_btc.other_info(self.client_random, self.server_random))

    def _check(self, point: bytes, proof: nizk.SchnorrProof, peer: PeerIdentity | None) -> None:
        digest = peer.certificate.digest() if peer else None
        with _peer_values():
            nizk.verify(point, proof, yak_btc.user_id(digest),
                        yak_btc.other_info(self.client_random, self.server_random))

    def server_key_exchange(self) -> BitcoinServerKeyExchange:
        local = self._require_local()
        self._ephemeral = generate_scalar()
        point = self._ephemeral.public_key.format()
        return BitcoinServerKeyExchange(self.suite).create(point, self._prove(self._ephemeral), _staple(local))

    def client_process_server(self, ske: BitcoinServerKeyExchange, server: PeerIdentity) -> None:
        self._check(ske.point, ske.proof, server)
        self._server_point, self._server_ephemeral = server.nonce_point, ske.point

    def client_key_exchange(self) -> tuple[BitcoinClientKeyExchange, bytes]:
        ephemeral = generate_scalar()
        with _peer_values():
            premaster = yak_btc.premaster(long_term=self.local.nonce_key if self.local else None,
                                          ephemeral=ephemeral, peer_nonce_point=self._server_point,
                                          peer_ephemeral=self._server_ephemeral)
        cke = BitcoinClientKeyExchange(self.suite).create(
            ephemeral.public_key.format(), self._prove(ephemeral), _staple(self.local))
        return cke, premaster

    def server_premaster(self, cke: BitcoinClientKeyExchange, client: PeerIdentity | None) -> bytes:
        local = self._require_local()
        self._check(cke.point, cke.proof, client)
        with _peer_values():
            return yak_btc.premaster(long_term=local.nonce_key, ephemeral=self._ephemeral,
                                     peer_nonce_point=client.nonce_point if client else None,
                                     peer_ephemeral=cke.point)


KEY_EXCHANGES: dict[KeyExchangeKind, type[BitcoinKeyExchange]] = {
    KeyExchangeKind.ECDH_BTC: EcdhBitcoinKeyExchange,
    KeyExchangeKind.YAK_BTC: YakBitcoinKeyExchange,
}
