"""The one suite registry: every other view of the suites is derived from ``SUITES``.

Code points are in TLS's private-use range (RFC 5246 §A.5: 0xFF00–0xFFFF "Reserved for
Private Use"), so they never collide with an IANA suite; rfc/ says what a registration
would request. Record protection is the standard AEAD construction of each named cipher
(RFC 5288 for AES-GCM, RFC 7905 for ChaCha20-Poly1305), byte for byte, which is what lets
Wireshark decrypt a relabelled demo copy.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class KeyExchangeKind(enum.Enum):
    #: McCorry et al. 2015: premaster = x(k_C·R_S) = x(k_S·R_C). No forward secrecy.
    ECDH_BTC = "ecdh"
    #: YAK (Hao 2010) over the same long-term keys, with ephemerals and RFC 8235 proofs.
    YAK_BTC = "yak"


class BulkCipher(enum.Enum):
    #            key  fixed IV  explicit nonce
    AES_128_GCM = (16, 4, 8)
    AES_256_GCM = (32, 4, 8)
    CHACHA20_POLY1305 = (32, 12, 0)

    @property
    def key_length(self) -> int:
        return self.value[0]

    @property
    def fixed_iv_length(self) -> int:
        return self.value[1]

    @property
    def record_iv_length(self) -> int:
        return self.value[2]

    @property
    def bits(self) -> int:
        return self.key_length * 8


@dataclass(frozen=True, slots=True, kw_only=True)
class SuiteSpec:
    code: int
    name: str                   # IANA style, e.g. TLS_YAK_BTC_WITH_AES_128_GCM_SHA256
    short_name: str             # OpenSSL style, what ssl.SSLSocket.cipher() reports
    key_exchange: KeyExchangeKind
    cipher: BulkCipher
    prf_hash: str               # hashlib name of the PRF and transcript hash

    def __post_init__(self) -> None:
        if not 0xFF00 <= self.code <= 0xFFFF:
            raise ValueError(f"{self.name}: 0x{self.code:04x} is outside the private-use range")


def _suite(code: int, kind: KeyExchangeKind, cipher: BulkCipher, prf_hash: str) -> SuiteSpec:
    label = {BulkCipher.AES_128_GCM: ("AES_128_GCM", "AES128-GCM"),
             BulkCipher.AES_256_GCM: ("AES_256_GCM", "AES256-GCM"),
             BulkCipher.CHACHA20_POLY1305: ("CHACHA20_POLY1305", "CHACHA20-POLY1305")}[cipher]
    exchange = {KeyExchangeKind.ECDH_BTC: "ECDH_BTC", KeyExchangeKind.YAK_BTC: "YAK_BTC"}[kind]
    return SuiteSpec(code=code, name=f"TLS_{exchange}_WITH_{label[0]}_{prf_hash.upper()}",
                     short_name=f"{exchange.replace('_', '-')}-{label[1]}-{prf_hash.upper()}",
                     key_exchange=kind, cipher=cipher, prf_hash=prf_hash)


# Server preference order: YAK first (forward secrecy, KCI resistance), AES-128-GCM first
# within a family (fastest with AES-NI; ChaCha20 stays available for hosts without it).
SUITES: dict[int, SuiteSpec] = {s.code: s for s in (
    _suite(0xFF20, KeyExchangeKind.YAK_BTC, BulkCipher.AES_128_GCM, "sha256"),
    _suite(0xFF21, KeyExchangeKind.YAK_BTC, BulkCipher.AES_256_GCM, "sha384"),
    _suite(0xFF22, KeyExchangeKind.YAK_BTC, BulkCipher.CHACHA20_POLY1305, "sha256"),
    _suite(0xFF10, KeyExchangeKind.ECDH_BTC, BulkCipher.AES_128_GCM, "sha256"),
    _suite(0xFF11, KeyExchangeKind.ECDH_BTC, BulkCipher.AES_256_GCM, "sha384"),
    _suite(0xFF12, KeyExchangeKind.ECDH_BTC, BulkCipher.CHACHA20_POLY1305, "sha256"),
)}

DEFAULT_SUITES: tuple[SuiteSpec, ...] = tuple(SUITES.values())


def suite_by_name(name: str) -> SuiteSpec:
    """A suite by its IANA-style or OpenSSL-style name."""
    for suite in SUITES.values():
        if name in (suite.name, suite.short_name):
            return suite
    raise KeyError(f"no milagro suite named {name!r}")


def select_suites(spec: str | KeyExchangeKind | None = None) -> tuple[SuiteSpec, ...]:
    """The suites for a key-exchange family ("ecdh", "yak") or a suite name; all for None."""
    if spec is None:
        return DEFAULT_SUITES
    if isinstance(spec, str):
        try:
            spec = KeyExchangeKind(spec.lower())
        except ValueError:
            return (suite_by_name(spec),)
    return tuple(s for s in DEFAULT_SUITES if s.key_exchange is spec)
