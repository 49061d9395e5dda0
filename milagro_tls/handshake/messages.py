"""Wire formats of our key-exchange messages and the locator extension.

Presentation language of RFC 5246 §4 (the draft in rfc/ gives the same structures):

    opaque Locator<0..2^16-1>;          /* identity.locator binary form; empty = anonymous */
    struct {
        opaque certificate<1..2^16-1>;  /* canonical (RFC 8785) birth certificate */
        opaque proof<1..2^16-1>;        /* chain.proof.AnchorProof binary form */
    } Staple;                           /* certificate + proof <= max_staple_size (16 KiB) */
    struct {
        opaque commitment<1..2^8-1>;    /* V, compressed SEC1 (33 bytes) */
        opaque response[32];            /* r, big-endian, 0 < r < n */
    } SchnorrProof;                     /* RFC 8235 */

    ECDH-BTC  ServerKeyExchange  { opaque nonce_point<1..2^8-1>; Staple staple; }
              ClientKeyExchange  { opaque nonce_point<1..2^8-1>; Staple staple; }    full
                                 { opaque ephemeral<1..2^8-1>; }                     server-only
    YAK-BTC   ServerKeyExchange  { opaque ephemeral<1..2^8-1>; SchnorrProof proof; Staple staple; }
              ClientKeyExchange  { opaque ephemeral<1..2^8-1>; SchnorrProof proof; Staple staple; }
                                 { opaque ephemeral<1..2^8-1>; SchnorrProof proof; } server-only

Each message starts with its point, so a dissector (and Wireshark's ECDH parser, for the
demo copy) finds the point where an ECDHE message has it. Whether a ClientKeyExchange
carries a staple follows from the client's locator extension, which both sides saw.
"""
from __future__ import annotations

from dataclasses import dataclass

from tlslite.constants import CipherSuite
from tlslite.messages import ClientKeyExchange, ServerKeyExchange
from tlslite.utils.codec import Parser, Writer

from ..ciphersuites.nizk import SchnorrProof
from ..ciphersuites.registry import SUITES, KeyExchangeKind, SuiteSpec
from .errors import MalformedMessage
from .records import TLS_1_2

#: Private-use extension type (RFC 8446 §4.2 range 65280–65535). Not 65281 (0xFF01): that is
#: renegotiation_info (RFC 5746), and a locator sent as 0xFF01 makes servers abort.
LOCATOR_EXTENSION = 0xFFB7
#: Default bound of a staple. A single anchor's proof is ~1–3 KB; a batch staple carries
#: the whole batch transaction, about 13 KB for 128 PATs (batch-anchoring.md).
DEFAULT_MAX_STAPLE_SIZE = 16 * 1024
_POINT_SIZE = 33
_SCALAR_SIZE = 32


def register_with_tlslite() -> None:
    """Name our suites in tlslite-ng's table: its message reprs index ``ietfNames``
    (messages.py:1449), and tlslite-based tools print names instead of KeyErrors."""
    for suite in SUITES.values():
        CipherSuite.ietfNames.setdefault(suite.code, suite.name)


register_with_tlslite()


@dataclass(frozen=True, slots=True)
class Staple:
    certificate: bytes
    proof: bytes

    def write(self, writer: Writer) -> None:
        writer.add_var_bytes(self.certificate, 2)
        writer.add_var_bytes(self.proof, 2)

    @classmethod
    def parse(cls, parser: Parser, max_size: int) -> "Staple":
        certificate = bytes(parser.getVarBytes(2))
        proof = bytes(parser.getVarBytes(2))
        if not certificate or not proof:
            raise MalformedMessage("staple with an empty certificate or proof")
        if len(certificate) + len(proof) > max_size:
            raise MalformedMessage(f"staple of {len(certificate) + len(proof)} bytes exceeds {max_size}")
        return cls(certificate, proof)


def _write_proof(writer: Writer, proof: SchnorrProof) -> None:
    writer.add_var_bytes(proof.commitment, 1)
    writer.bytes += proof.response


def _parse_proof(parser: Parser) -> SchnorrProof:
    return SchnorrProof(bytes(parser.getVarBytes(1)), bytes(parser.getFixBytes(_SCALAR_SIZE)))


class _BitcoinKeyExchangeMessage:
    """Shared body of both key-exchange messages: point, optional NIZK, optional staple."""
    point: bytes
    proof: SchnorrProof | None
    staple: Staple | None

    def _init_fields(self, suite: SuiteSpec) -> None:
        self.suite = suite
        self.point = b""
        self.proof = None
        self.staple = None

    def create(self, point: bytes, proof: SchnorrProof | None, staple: Staple | None):
        self.point, self.proof, self.staple = point, proof, staple
        return self

    def _parse_body(self, parser: Parser, *, with_staple: bool, max_staple_size: int):
        parser.startLengthCheck(3)
        self.point = bytes(parser.getVarBytes(1))
        if self.suite.key_exchange is KeyExchangeKind.YAK_BTC:
            self.proof = _parse_proof(parser)
        if with_staple:
            self.staple = Staple.parse(parser, max_staple_size)
        parser.stopLengthCheck()
        return self

    def _write_body(self) -> bytes:
        writer = Writer()
        writer.add_var_bytes(self.point, 1)
        if self.suite.key_exchange is KeyExchangeKind.YAK_BTC:
            _write_proof(writer, self.proof)
        if self.staple is not None:
            self.staple.write(writer)
        return self.postWrite(writer)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(suite={self.suite.name}, point={self.point.hex()}, "
                f"proof={'yes' if self.proof else 'no'}, "
                f"staple={len(self.staple.certificate) + len(self.staple.proof) if self.staple else 0} bytes)")


class BitcoinServerKeyExchange(_BitcoinKeyExchangeMessage, ServerKeyExchange):
    def __init__(self, suite: SuiteSpec) -> None:
        ServerKeyExchange.__init__(self, suite.code, TLS_1_2)
        self._init_fields(suite)

    def parse(self, parser: Parser, *, max_staple_size: int = DEFAULT_MAX_STAPLE_SIZE):
        return self._parse_body(parser, with_staple=True, max_staple_size=max_staple_size)

    def write(self) -> bytes:
        return self._write_body()


class BitcoinClientKeyExchange(_BitcoinKeyExchangeMessage, ClientKeyExchange):
    def __init__(self, suite: SuiteSpec) -> None:
        ClientKeyExchange.__init__(self, suite.code, TLS_1_2)
        self._init_fields(suite)

    def parse(self, parser: Parser, *, with_staple: bool, max_staple_size: int = DEFAULT_MAX_STAPLE_SIZE):
        return self._parse_body(parser, with_staple=with_staple, max_staple_size=max_staple_size)

    def write(self) -> bytes:
        return self._write_body()
