"""The owner's side of anchor chains: anchoring roots (log, batch, revocation-list Merkle roots)
that only this party can anchor, each spending the previous one.

    root tx of type T   input 0: the previous link's chain output (the birth anchor's output
                                 2 + i for the first root), signed SIGHASH_ALL by the chain key
                        inputs 1..: the fee key's coins (the anchoring wallet pays)
                        outputs  [0: OP_RETURN "MILAGRO" ‖ T ‖ root,
                                  1: chain output, P2WPKH(chain key), CHAIN_VALUE,
                                  2: change to the fee key]

The verifier (chain.rootchain) follows the chain from the birth anchor; the current root is
the one whose chain output is unspent. A fork (two transactions spending one chain output)
would make the chain's history depend on which one miners take, so:

* every anchor runs under an exclusive lock, so processes build, record and send one link at
  a time: by default an ``fcntl.flock`` on NAME/rootchain.lock (processes sharing the home,
  gunicorn workers); ``RootAnchorer(..., lock=...)`` takes another (the roles' PostgreSQL
  advisory lock, milagro_tls.roles.walletstore, for workers on several machines);
* the new link is written to the state (NAME/rootchain.json by default; ``state=`` takes
  another, such as the roles' store) as ``pending`` *before* the wallet
  records and sends it. After a crash the next call re-sends exactly that transaction
  instead of building a second spend of the same output; it is rebuilt only once the
  source has refused it and says the previous chain output exists and is still unspent.

The tip may be unconfirmed: a root transaction can spend its unconfirmed predecessor (Core
relays chains of up to 25 unconfirmed transactions; a role anchoring faster than blocks come
would reach that limit, and then the send fails with the source's reason).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, ContextManager, Protocol

from embit.script import Witness

from ..chain.errors import TxNotFound, TxRejected
from ..chain.hashes import from_display_hex, to_display_hex
from ..chain.sighash import SIGHASH_ALL, p2wpkh_sighash
from ..chain.source import ChainSource, UnspentOutput
from ..errors import IdentityError
from .anchor import CHAIN_VALUE, ROOT_CHAIN_VOUT, BuiltTx, fee_key_spend_fee
from .certificate import ROOT_CHAIN_TYPES
from .files import file_lock, write_atomically
from .keys import ChainKey
from .marker import Marker, MarkerType
from .party import Party, spent_value_of
from .wallet import AnchoringWallet

log = logging.getLogger("milagro_tls.rootchain")

STATE_FILE = "rootchain.json"
LOCK_FILE = "rootchain.lock"
VERSION = 1


class RootChainStateError(IdentityError):
    """The owner's chain state does not match what the chain source shows."""


@dataclass(frozen=True, slots=True)
class RootTx:
    """A root transaction this party built (sent, or recorded for a re-send)."""
    root_type: MarkerType
    root: bytes
    txid: bytes                  # wire order
    raw: bytes

    @property
    def txid_hex(self) -> str:
        return to_display_hex(self.txid)


@dataclass(frozen=True, slots=True)
class _Link:
    """A root transaction of ours in rootchain.json."""
    txid: bytes                  # wire order
    raw: bytes
    root: bytes

    def to_json(self) -> dict:
        return {"txid": to_display_hex(self.txid), "raw": self.raw.hex(), "root": self.root.hex()}

    @classmethod
    def from_json(cls, obj) -> "_Link":
        try:
            return cls(from_display_hex(obj["txid"]), bytes.fromhex(obj["raw"]), bytes.fromhex(obj["root"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RootChainStateError(f"{STATE_FILE} entry is malformed: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Chain:
    """One chain in rootchain.json: the latest sent link (None: the chain output is still the
    birth anchor's) and a link written but not yet known to be sent."""
    tip: _Link | None = None
    pending: _Link | None = None

    def to_json(self) -> dict:
        return {"tip": self.tip.to_json() if self.tip else None,
                "pending": self.pending.to_json() if self.pending else None}

    @classmethod
    def from_json(cls, obj) -> "_Chain":
        if not isinstance(obj, dict):
            raise RootChainStateError(f"{STATE_FILE} chain entry is not an object")
        return cls(_Link.from_json(obj["tip"]) if obj.get("tip") else None,
                   _Link.from_json(obj["pending"]) if obj.get("pending") else None)


class ChainState(Protocol):
    """Where RootAnchorer keeps its state document (JSON text); ``where`` names it in errors."""
    where: str

    def read(self) -> str | None: ...
    def write(self, text: str) -> None: ...


class RootAnchorer:
    """Anchors roots on a party's anchor chains (one chain per marker type its certificate names)."""

    def __init__(self, home: Path, party_name: str, source: ChainSource, *,
                 wallet: AnchoringWallet | None = None,
                 lock: Callable[[], ContextManager] | None = None, state: "ChainState | None" = None) -> None:
        """``lock()``: a context manager excluding every other anchorer of this party for one
        settle-build-record-send cycle (default: an flock on NAME/rootchain.lock). ``state``:
        where the chains' links are kept (default NAME/rootchain.json); it is read and written
        only under the lock, so anchorers on several machines share it through a database."""
        self.party = Party.load(home, party_name)
        if not self.party.certificate.root_chains:
            raise IdentityError(f"identity {party_name} has no root chains (Party.create(..., root_chains=...))")
        self.source = source
        self.wallet = wallet if wallet is not None else AnchoringWallet(home, source)
        self._key: ChainKey = self.party.chain_key()
        self._state = state if state is not None else FileChainState(self.party.directory / STATE_FILE)
        self._lock_path = self.party.directory / LOCK_FILE
        self._locked = lock if lock is not None else partial(file_lock, self._lock_path)

    # --- public ---------------------------------------------------------------------------
    def anchor(self, root_type: int, root: bytes, *, fee_rate: float | None = None) -> RootTx:
        """Anchor ``root`` as the next link of the ``root_type`` chain and send it.

        Idempotent for a retry: when the chain's latest link already carries ``root`` (a caller
        that crashed after this returned), that link (re-sent if a crash left it unsent) is
        returned. The link may stay unconfirmed; verifiers show it as pending until it is mined.
        """
        kind = self._type(root_type)
        if not isinstance(root, bytes) or len(root) != 32:
            raise IdentityError("a root is 32 bytes")
        with self._locked():
            state = self._load()
            tip = self._settle(state, kind)
            if tip is not None and tip.root == root:
                return RootTx(kind, root, tip.txid, tip.raw)
            return self._extend(state, kind, tip, root, fee_rate)

    def resume(self) -> list[RootTx]:
        """Re-send every link a crash left unsent (a role calls it on start); returns those
        now sent (a link the source refused for good is dropped and built anew by ``anchor``)."""
        resent = []
        with self._locked():
            state = self._load()
            for entry in self.party.certificate.root_chains:
                pending = state.get(entry.type, _Chain()).pending
                tip = self._settle(state, entry.type)
                if pending is not None and tip == pending:
                    resent.append(RootTx(entry.type, tip.root, tip.txid, tip.raw))
        return resent

    def latest(self, root_type: int) -> RootTx | None:
        """The chain's latest sent link as the owner recorded it (None before the first root)."""
        kind = self._type(root_type)
        tip = self._load().get(kind, _Chain()).tip
        return None if tip is None else RootTx(kind, tip.root, tip.txid, tip.raw)

    # --- building -------------------------------------------------------------------------
    def _extend(self, state: dict[MarkerType, _Chain], kind: MarkerType, tip: _Link | None, root: bytes,
                fee_rate: float | None) -> RootTx:
        chain_script = self._key.p2wpkh_script
        marker = Marker(kind, root).script()
        payments = [(0, marker), (CHAIN_VALUE, chain_script)]
        rate = self.wallet.fee_rate() if fee_rate is None else fee_rate
        # On regtest the faucet tops the wallet up; elsewhere InsufficientFunds names the address.
        self.wallet.ensure_funded(fee_key_spend_fee(2, [marker, chain_script], rate), fee_rate=rate)
        previous = self._chain_output(kind, tip)
        coin = UnspentOutput(previous[0], previous[1], CHAIN_VALUE, chain_script, None)

        def sign_chain_input(tx) -> None:
            sighash = p2wpkh_sighash(tx, 0, self._key.public_key, CHAIN_VALUE)
            signature = self._key._sign_own_chain_input(sighash) + bytes([SIGHASH_ALL])
            tx.vin[0].witness = Witness([signature, self._key.public_key])

        def write_link_first(built: BuiltTx) -> None:
            # Durable before the wallet records or sends it: after a crash, _settle re-sends
            # this very transaction rather than building a second spend of the chain output.
            state[kind] = _Chain(tip, _Link(built.txid, built.raw, root))
            self._save(state)

        # A refusal (TxRejected) propagates; the wallet has dropped the transaction, and the next
        # call finds it pending and decides from the source whether to re-send or rebuild.
        built = self.wallet.spend_with([coin], payments, sign_chain_input, fee_rate=rate,
                                       label=self._label(kind), before_record=write_link_first)
        state[kind] = _Chain(state[kind].pending)
        self._save(state)
        log.info("anchored %s root %s in %s", kind.name, root.hex(), built.txid_hex)
        return RootTx(kind, root, built.txid, built.raw)

    def _chain_output(self, kind: MarkerType, tip: _Link | None) -> tuple[bytes, int]:
        return self.party.root_chain_start(kind) if tip is None else (tip.txid, ROOT_CHAIN_VOUT)

    def _settle(self, state: dict[MarkerType, _Chain], kind: MarkerType) -> _Link | None:
        """The chain's latest link, after re-sending one a crash (or a refusal) left pending."""
        chain = state.get(kind, _Chain())
        pending = chain.pending
        if pending is None:
            return chain.tip
        if self.wallet.recorded(pending.txid) is None:
            # The crash came before the wallet recorded it: record it now (its change is ours).
            self.wallet.track(BuiltTx(pending.raw, pending.txid),
                              spent_value=spent_value_of(self.source, pending.raw), label=self._label(kind))
        if not self._source_knows(pending.txid):
            try:
                self.wallet.send(pending.txid)
            except TxRejected as exc:
                self._check_rebuild_is_safe(kind, chain.tip, pending, exc)
                log.warning("%s root link %s was refused (%s); it will be built again", kind.name,
                            to_display_hex(pending.txid), exc)
                state[kind] = _Chain(chain.tip)
                self._save(state)
                return chain.tip
            log.info("re-sent %s root link %s that a crash left unsent", kind.name, to_display_hex(pending.txid))
        state[kind] = _Chain(pending)
        self._save(state)
        return pending

    def _check_rebuild_is_safe(self, kind: MarkerType, tip: _Link | None, pending: _Link,
                               exc: TxRejected) -> None:
        """A second spend of the chain output is built only when the source knows the output
        and says nothing spends it: otherwise (a missing parent, a spend we do not know) a new
        link could fork the chain."""
        txid, vout = self._chain_output(kind, tip)
        where = f"{to_display_hex(txid)}:{vout}"
        if not self._source_knows(txid):
            raise RootChainStateError(
                f"{kind.name} root link {to_display_hex(pending.txid)} was refused ({exc}) and the source does "
                f"not know the chain output {where} it spends: rebroadcast the wallet's transactions first"
            ) from None
        spender = self.source.outspend_unverified(txid, vout)
        if spender is not None:
            raise RootChainStateError(
                f"the {kind.name} chain output {where} is spent by {to_display_hex(spender)}, not by the "
                f"recorded link {to_display_hex(pending.txid)} (which the source refused: {exc})") from None

    def _label(self, kind: MarkerType) -> str:
        return f"root {kind.name.lower()} {self.party.name}"

    def _source_knows(self, txid: bytes) -> bool:
        try:
            self.source.tx_status(txid)
            return True
        except TxNotFound:
            return False

    # --- state ----------------------------------------------------------------------------
    def _type(self, root_type: int) -> MarkerType:
        if type(root_type) not in (int, MarkerType) or root_type not in ROOT_CHAIN_TYPES:
            raise IdentityError(f"{root_type!r} is not a root chain type")
        if self.party.certificate.root_chain(root_type) is None:
            raise IdentityError(f"identity {self.party.name} has no root chain of type {int(root_type)}")
        return MarkerType(root_type)

    def _load(self) -> dict[MarkerType, _Chain]:
        where = self._state.where
        try:
            text = self._state.read()
            if text is None:
                return {}
            doc = json.loads(text)
        except (OSError, ValueError) as exc:
            raise RootChainStateError(f"{where} is unreadable: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("chains"), dict):
            raise RootChainStateError(f"{where} has an unknown version")
        try:
            return {MarkerType(int(t)): _Chain.from_json(chain) for t, chain in doc["chains"].items()}
        except (KeyError, ValueError) as exc:
            raise RootChainStateError(f"{where} is malformed: {exc}") from None

    def _save(self, state: dict[MarkerType, _Chain]) -> None:
        doc = {"version": VERSION, "chains": {str(int(t)): c.to_json() for t, c in sorted(state.items())}}
        self._state.write(json.dumps(doc, indent=1) + "\n")


class FileChainState:
    """The default state store: NAME/rootchain.json, replaced atomically (and fsynced)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    def read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def write(self, text: str) -> None:
        write_atomically(self.path, text)
