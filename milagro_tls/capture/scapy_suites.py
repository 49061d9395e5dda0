"""Teach scapy 2.8.0's TLS layer our six suites, their key exchanges and the locator extension.

Importing this module registers them; then scapy dissects a capture of our connections and,
given the NSS key log, decrypts the Finished messages and the application data of the true
capture (no relabelling, unlike interop/wireshark/demo_copy.py):

    from milagro_tls.capture import scapy_suites
    packets = scapy_suites.decrypt_capture("demo.pcap", "demo.keylog")

which is, in scapy's own terms (the TLS layer loaded, the key log named in ``conf``):

    conf.tls_session_enable, conf.tls_nss_filename = True, "demo.keylog"
    packets = sniff(offline="demo.pcap", session=TCPSession)   # TLSSession in older examples

How (tlslite-integration.md §5): scapy registers suites and key exchanges by class *name*
through metaclasses (``layers/tls/crypto/suites.py``, ``kx_algs.py``). A suite class named
``TLS_<KX>_WITH_<CIPHER>_<HASH>`` finds its cipher and PRF hash by name, so ours get
scapy's own AES-GCM and ChaCha20-Poly1305 record code, which is byte for byte what our
records are; a key exchange class ``KX_<KX>`` names the classes that parse its
ServerKeyExchange and ClientKeyExchange. scapy never needs our key agreement: passive
decryption takes the master secret from the key log (``use_nss_master_secret_if_present``,
called when the ClientKeyExchange is dissected).

Limits of scapy 2.8.0, not of these registrations: it looks the master secret up only when it
dissects a ClientKeyExchange, so an abbreviated (resumed) handshake is dissected but not
decrypted; and ``conf.tls_nss_keys`` caches the first key log it reads (``decrypt_capture``
resets it).
"""
from __future__ import annotations

from pathlib import Path

from scapy.config import conf
from scapy.fields import (ByteEnumField, ByteField, ConditionalField, FieldLenField, FieldListField, IntField,
                          ShortEnumField, ShortField, StrFixedLenField, StrLenField)
from scapy.layers.tls.crypto.kx_algs import _GenericKX, _GenericKXMetaclass
from scapy.layers.tls.crypto.suites import _GenericCipherSuite, _GenericCipherSuiteMetaclass
from scapy.layers.tls.extensions import TLS_Ext_Unknown, _tls_ext, _tls_ext_cls
from scapy.layers.tls.session import _GenericTLSSessionInheritance
from scapy.packet import Packet, Padding

from ..chain.network import Network
from ..ciphersuites.registry import SUITES, KeyExchangeKind
from ..handshake.messages import LOCATOR_EXTENSION
from ..identity.locator import LocatorKind

_NETWORKS = {network.value: network.name.lower() for network in Network}
_KINDS = {kind.value: kind.label for kind in LocatorKind}


# --- the key-exchange payloads (handshake/messages.py) -----------------------------------------
class BitcoinStaple(Packet):
    """The canonical birth certificate and the anchor's proof bundle."""
    name = "Milagro staple"
    fields_desc = [FieldLenField("certificate_len", None, fmt="!H", length_of="certificate"),
                   StrLenField("certificate", b"", length_from=lambda pkt: pkt.certificate_len),
                   FieldLenField("proof_len", None, fmt="!H", length_of="proof"),
                   StrLenField("proof", b"", length_from=lambda pkt: pkt.proof_len)]

    def guess_payload_class(self, payload):
        return Padding


class _PointFirst(_GenericTLSSessionInheritance):
    """Our ServerKeyExchange/ClientKeyExchange bodies. What follows the fields, when anything
    does, is the staple (always in a ServerKeyExchange; in a ClientKeyExchange only from an
    anchored client)."""

    def guess_payload_class(self, payload):
        return BitcoinStaple if payload else Padding


class EcdhBtcParams(_PointFirst):
    name = "ECDH over Bitcoin: nonce point R (or an anonymous client's ephemeral)"
    fields_desc = [FieldLenField("point_len", None, fmt="B", length_of="point"),
                   StrLenField("point", b"", length_from=lambda pkt: pkt.point_len)]


class YakBtcParams(_PointFirst):
    name = "YAK over Bitcoin: ephemeral X and its RFC 8235 Schnorr proof"
    fields_desc = [FieldLenField("point_len", None, fmt="B", length_of="point"),
                   StrLenField("point", b"", length_from=lambda pkt: pkt.point_len),
                   FieldLenField("commitment_len", None, fmt="B", length_of="commitment"),
                   StrLenField("commitment", b"", length_from=lambda pkt: pkt.commitment_len),
                   StrFixedLenField("response", b"", 32)]


_PARAMS = {KeyExchangeKind.ECDH_BTC: EcdhBtcParams, KeyExchangeKind.YAK_BTC: YakBtcParams}


def _key_exchange_class(kind: KeyExchangeKind, params: type[Packet]) -> type:
    """``KX_ECDH_BTC`` / ``KX_YAK_BTC``: scapy's key-exchange record of one family."""
    name = kind.name                                   # ECDH_BTC, YAK_BTC: as in our suite names
    key_exchange = _GenericKXMetaclass(f"KX_{name}", (_GenericKX,), {
        "descr": f"{name.replace('_', ' over ').replace('BTC', 'Bitcoin')} (private use)",
        "server_kx_msg_cls": lambda _, message: params,
        "client_kx_msg_cls": params,
    })
    # The metaclass derives these from the name: "no SKE" unless the name says DHE or anon,
    # and a signature to check unless anon. Ours always has an SKE, authenticated by the
    # staple rather than a signature.
    key_exchange.no_ske = False
    key_exchange.anonymous = True
    return key_exchange


# --- the locator extension (identity/locator.py) ---------------------------------------------
class MilagroBatchSlot(Packet):
    """The body of a taproot-batch locator (kind 2): the PAT's position among the leaf's keys and
    the inclusion proof of its certificate digest in the batch's type-0x02 root, as
    milagro_tls.merkle.InclusionProof.encode() writes it (u32 index, u32 size, u8 count, hashes)."""
    name = "Milagro taproot-batch slot"
    fields_desc = [ShortField("position", 0),
                   IntField("index", 0),
                   IntField("size", 1),
                   FieldLenField("count", None, fmt="B", count_of="path"),
                   FieldListField("path", [], StrFixedLenField("hash", b"\x00" * 32, 32),
                                  count_from=lambda pkt: pkt.count)]

    def guess_payload_class(self, payload):
        return Padding


def _locator_present(pkt) -> bool:
    # A dissected anonymous extension has len 0 and must rebuild as 4 bytes, not with the
    # defaults below (scapy's MayEnd only stops dissection); a new one (len None) gets them.
    return pkt.len != 0


class TLS_Ext_MilagroLocator(TLS_Ext_Unknown):
    """Empty from an anonymous client; otherwise the locator's binary form."""
    name = "TLS Extension - Milagro locator (private use)"
    fields_desc = [ShortEnumField("type", LOCATOR_EXTENSION, _tls_ext),
                   ShortField("len", None)] + [ConditionalField(field, _locator_present) for field in (
                       ByteField("version", 1),
                       ByteEnumField("network", Network.REGTEST.value, _NETWORKS),
                       ByteEnumField("kind", LocatorKind.P2WPKH.value, _KINDS),
                       StrFixedLenField("txid", b"\x00" * 32, 32),           # wire order
                       ShortField("input", 0),
                       StrFixedLenField("block_hash", b"\x00" * 32, 32),     # wire order
                       FieldLenField("body_len", None, fmt="!H", length_of="body"),
                       StrLenField("body", b"", length_from=lambda pkt: pkt.body_len))]

    @property
    def txid_hex(self) -> str:
        """The txid as explorers and ``milagro identity show`` print it (reversed)."""
        return bytes(self.txid)[::-1].hex()

    @property
    def batch_slot(self) -> MilagroBatchSlot | None:
        """The body of a taproot-batch locator, dissected; None for other kinds. The body stays
        one string field, so a dissected extension rebuilds byte for byte whatever it holds."""
        if self.len == 0 or self.kind != LocatorKind.TAPROOT_BATCH.value:
            return None
        return MilagroBatchSlot(bytes(self.body))


def _register() -> dict[int, type]:
    key_exchanges = {kind: _key_exchange_class(kind, params) for kind, params in _PARAMS.items()}
    suites = {}
    for suite in SUITES.values():
        # The metaclass parses the class name (TLS_YAK_BTC_WITH_AES_128_GCM_SHA256) into the
        # KX_YAK_BTC registered above, scapy's Cipher_AES_128_GCM and its SHA256 PRF hash.
        suites[suite.code] = _GenericCipherSuiteMetaclass(suite.name, (_GenericCipherSuite,), {"val": suite.code})
        if not suites[suite.code].usable or suites[suite.code].kx_alg is not key_exchanges[suite.key_exchange]:
            raise RuntimeError(f"scapy did not take {suite.name}: its TLS layer changed (this is for 2.8.0)")
    _tls_ext[LOCATOR_EXTENSION] = "milagro_locator"
    _tls_ext_cls[LOCATOR_EXTENSION] = TLS_Ext_MilagroLocator
    return suites


#: scapy's suite class for each of our code points.
SCAPY_SUITES = _register()


def decrypt_capture(capture: str | Path, keylog: str | Path | None, *, ports: tuple[int, ...] = ()):
    """Dissect ``capture`` with scapy's TLS sessions, decrypting with ``keylog`` (NSS format).
    scapy finds TLS on port 443 (and its other well-known TLS ports); name any other server
    port in ``ports``. Returns scapy's packets: records of our suites dissect as ``TLS`` with
    ``TLSFinished`` and ``TLSApplicationData`` once decrypted."""
    from scapy.layers.inet import TCP
    from scapy.layers.tls.record import TLS
    from scapy.packet import bind_layers
    from scapy.sendrecv import sniff
    from scapy.sessions import TCPSession

    for port in ports:
        bind_layers(TCP, TLS, sport=port)
        bind_layers(TCP, TLS, dport=port)
    previous = conf.tls_session_enable, conf.tls_nss_filename, conf.tls_nss_keys, conf.tls_sessions
    conf.tls_session_enable = True
    conf.tls_nss_filename = str(keylog) if keylog is not None else None
    conf.tls_nss_keys = None          # scapy caches the first file it loaded: read this one
    conf.tls_sessions = type(conf.tls_sessions)()      # no session state from an earlier capture
    try:
        return sniff(offline=str(capture), session=TCPSession, quiet=True)
    finally:
        conf.tls_session_enable, conf.tls_nss_filename, conf.tls_nss_keys, conf.tls_sessions = previous
