"""The locator: where on which chain an identity was anchored.

Binary form (it goes on the wire in the TLS locator extension), all integers big-endian:

    version   u8     = 1
    network   u8     Network value (mainnet 0, testnet3 1, testnet4 2, signet 3, regtest 4)
    kind      u8     1 = p2wpkh (single anchor); 2 = taproot-batch (batch-anchoring issue)
    txid      32     wire order (as in an outpoint), not the reversed display order
    input     u16    index of the signing input
    block     32     hash of the block that confirmed it, wire order (a node without
                     -txindex needs it to find the transaction)
    body_len  u16    length of the kind-specific body
    body      ...    empty for p2wpkh; for taproot-batch:

        position  u16    the PAT's place among the leaf's PAT keys (0-based); its signature
                         is witness item N-1-position of input ``input``
        path      ...    the certificate digest's inclusion proof in the batch root, as
                         milagro_tls.merkle.InclusionProof.encode() writes it:
                         u32 index ‖ u32 size ‖ u8 count ‖ count × 32-byte hashes

The JSON form uses display-order hex for txid and block hash, as explorers do (the body stays
one hex string, for every kind).
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

from ..chain.hashes import from_display_hex, to_display_hex
from ..chain.network import Network
from ..errors import MalformedInput
from ..merkle import InclusionProof, MerkleProofError

VERSION = 1
_FIXED = struct.Struct(">BBB32sH32sH")
#: Upper bound for any kind's body: a taproot-batch Merkle path of 32 levels is 1 KiB.
MAX_BODY = 2048


class LocatorKind(enum.IntEnum):
    #: A P2WPKH input signed with ECDSA by the identity key (the single anchor).
    P2WPKH = 1
    #: A slot in a taproot batch: a BIP340 signature in a script-path spend (chain.batchverify).
    TAPROOT_BATCH = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, label: str) -> "LocatorKind":
        try:
            return cls[label.upper().replace("-", "_")]
        except KeyError:
            raise MalformedInput(f"unknown locator kind {label!r}") from None


#: Kinds whose body this version of the code understands.
_SUPPORTED_KINDS = {LocatorKind.P2WPKH, LocatorKind.TAPROOT_BATCH}


@dataclass(frozen=True, slots=True)
class BatchSlotRef:
    """The body of a taproot-batch locator: the PAT's position in the leaf and the inclusion
    proof of its certificate digest in the batch's type-0x02 root."""
    position: int
    proof: InclusionProof

    def __post_init__(self) -> None:
        if type(self.position) is not int or not 0 <= self.position <= 0xFFFF:
            raise MalformedInput("batch position out of range")
        if not isinstance(self.proof, InclusionProof):
            raise MalformedInput("a batch slot needs an InclusionProof")

    def encode(self) -> bytes:
        return self.position.to_bytes(2, "big") + self.proof.encode()

    @classmethod
    def decode(cls, body: bytes) -> "BatchSlotRef":
        if len(body) < 2:
            raise MalformedInput("taproot-batch locator body truncated")
        try:
            proof = InclusionProof.decode(body[2:])
        except MerkleProofError as exc:
            raise MalformedInput(f"taproot-batch locator path: {exc}") from None
        return cls(int.from_bytes(body[:2], "big"), proof)


@dataclass(frozen=True, slots=True, kw_only=True)
class Locator:
    network: Network
    kind: LocatorKind
    txid: bytes            # wire order
    input_index: int
    block_hash: bytes      # wire order
    body: bytes = b""
    version: int = VERSION

    def __post_init__(self) -> None:
        if len(self.txid) != 32 or len(self.block_hash) != 32:
            raise MalformedInput("txid and block hash are 32 bytes")
        if not 0 <= self.input_index <= 0xFFFF:
            raise MalformedInput("input index out of range")
        if self.kind == LocatorKind.P2WPKH and self.body:
            raise MalformedInput("a p2wpkh locator has no body")
        if len(self.body) > MAX_BODY:
            raise MalformedInput("locator body too long")
        if self.kind == LocatorKind.TAPROOT_BATCH:
            BatchSlotRef.decode(self.body)         # refuse a body that is not exactly one slot

    @classmethod
    def taproot_batch(cls, *, network: Network, txid: bytes, input_index: int, block_hash: bytes,
                      position: int, proof: InclusionProof) -> "Locator":
        return cls(network=network, kind=LocatorKind.TAPROOT_BATCH, txid=txid, input_index=input_index,
                   block_hash=block_hash, body=BatchSlotRef(position, proof).encode())

    @property
    def batch_slot(self) -> BatchSlotRef:
        """The parsed body of a taproot-batch locator."""
        if self.kind != LocatorKind.TAPROOT_BATCH:
            raise MalformedInput(f"a {self.kind.label} locator has no batch slot")
        return BatchSlotRef.decode(self.body)

    def encode(self) -> bytes:
        return _FIXED.pack(self.version, self.network, self.kind, self.txid, self.input_index,
                           self.block_hash, len(self.body)) + self.body

    @classmethod
    def decode(cls, raw: bytes) -> "Locator":
        if len(raw) < _FIXED.size:
            raise MalformedInput("locator truncated")
        version, network, kind, txid, input_index, block_hash, body_len = _FIXED.unpack_from(raw)
        if version != VERSION:
            raise MalformedInput(f"unsupported locator version {version}")
        if len(raw) != _FIXED.size + body_len:
            raise MalformedInput("locator length does not match its body length")
        try:
            network = Network(network)
        except ValueError:
            raise MalformedInput(f"unknown network {network}") from None
        try:
            kind = LocatorKind(kind)
        except ValueError:
            raise MalformedInput(f"unknown locator kind {kind}") from None
        if kind not in _SUPPORTED_KINDS:
            raise MalformedInput(f"locator kind {kind.label} is not supported by this version")
        return cls(network=network, kind=kind, txid=txid, input_index=input_index,
                   block_hash=block_hash, body=raw[_FIXED.size:])

    def to_json(self) -> dict[str, Any]:
        doc = {
            "version": self.version,
            "network": self.network.label,
            "kind": self.kind.label,
            "txid": to_display_hex(self.txid),
            "input": self.input_index,
            "block_hash": to_display_hex(self.block_hash),
        }
        if self.body:
            doc["body"] = self.body.hex()
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> "Locator":
        if not isinstance(doc, dict):
            raise MalformedInput("a locator is a JSON object")
        try:
            if type(doc.get("version")) is not int or doc["version"] != VERSION:
                raise MalformedInput(f"unsupported locator version {doc.get('version')!r}")
            kind = LocatorKind.from_label(doc["kind"])
            if kind not in _SUPPORTED_KINDS:
                raise MalformedInput(f"locator kind {kind.label} is not supported by this version")
            if type(doc["input"]) is not int:
                raise MalformedInput("locator input must be an integer")
            return cls(network=Network.from_label(doc["network"]), kind=kind,
                       txid=from_display_hex(doc["txid"]), input_index=doc["input"],
                       block_hash=from_display_hex(doc["block_hash"]),
                       body=bytes.fromhex(doc.get("body", "")))
        except MalformedInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedInput(f"locator JSON is malformed: {exc}") from None

    @property
    def txid_hex(self) -> str:
        return to_display_hex(self.txid)
