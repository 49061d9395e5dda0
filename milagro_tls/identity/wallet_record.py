"""The anchoring wallet's record of what it sent: HOME/wallet.json, no secrets.

    {"version": 1,
     "transactions": [{"txid": display hex, "raw": hex, "fee": sat,
                       "change_vout": int | null, "created": unix seconds, "label": str}, ...]}

Entries are in the order they were made, which is a dependency order (a child is
always recorded after its parent), so rebroadcasting in record order sends parents
first. Every input of a recorded transaction is *reserved*: coin selection never
picks it again, whatever a source says about the mempool. The file is rewritten
atomically (temporary file, fsync, rename) under an exclusive lock on
HOME/wallet.lock, so two commands on one home cannot pick the same coins.

``WalletRecord`` is the default; ``AnchoringWallet(..., record=...)`` takes any object with
its four methods (``lock``, ``load``, ``save``, ``reserved``), such as the roles' store-backed
record (milagro_tls.roles.walletstore), which lets workers on several machines share one wallet.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..chain.hashes import from_display_hex, to_display_hex
from ..chain.tx import Outpoint, outpoint, parse_tx
from ..errors import IdentityError
from .files import file_lock, write_atomically

RECORD_FILE = "wallet.json"
LOCK_FILE = "wallet.lock"
VERSION = 1

@dataclass(frozen=True, slots=True)
class SentTx:
    """A transaction the wallet built or tracks (it pays change to the fee key)."""
    txid: bytes                  # wire order
    raw: bytes
    fee: int
    change_vout: int | None      # output paying the fee key, the one CPFP spends
    created: int
    label: str

    @property
    def txid_hex(self) -> str:
        return to_display_hex(self.txid)

    @property
    def prevouts(self) -> list[Outpoint]:
        return [outpoint(i) for i in parse_tx(self.raw).vin]

    def output_value(self, vout: int) -> int:
        return parse_tx(self.raw).vout[vout].value

    def to_json(self) -> dict:
        return {"txid": self.txid_hex, "raw": self.raw.hex(), "fee": self.fee,
                "change_vout": self.change_vout, "created": self.created, "label": self.label}

    @classmethod
    def from_json(cls, obj: dict) -> "SentTx":
        try:
            change = obj["change_vout"]
            return cls(from_display_hex(obj["txid"]), bytes.fromhex(obj["raw"]), int(obj["fee"]),
                       None if change is None else int(change), int(obj["created"]), str(obj["label"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IdentityError(f"wallet record entry is malformed: {exc}") from None


class WalletRecord:
    """The record in HOME/wallet.json, locked by an flock on HOME/wallet.lock."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / RECORD_FILE
        self._lock_path = Path(home) / LOCK_FILE

    def lock(self):
        """Exclusive across processes for one read-select-record-broadcast cycle."""
        return file_lock(self._lock_path)

    def load(self) -> list[SentTx]:
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise IdentityError(f"wallet record {self.path} is unreadable: {exc}") from None
        if not isinstance(state, dict) or state.get("version") != VERSION:
            raise IdentityError(f"wallet record {self.path} has an unknown version")
        return [SentTx.from_json(entry) for entry in state.get("transactions", [])]

    def save(self, entries: list[SentTx]) -> None:
        text = json.dumps({"version": VERSION, "transactions": [e.to_json() for e in entries]}, indent=1)
        write_atomically(self.path, text + "\n")

    def reserved(self, entries: list[SentTx] | None = None) -> set[Outpoint]:
        """Every outpoint a recorded transaction spends."""
        return {op for e in (self.load() if entries is None else entries) for op in e.prevouts}
