"""An anchored party in its home directory: create, load, and derive its nonce key.

Home directory layout (a party's home is not the chain's data directory):

    HOME/fee.key                          fee key, mode 0600 (pays every anchor; identity.wallet)
    HOME/wallet.json                      what the anchoring wallet sent (no secrets)
    HOME/identities/NAME/identity.key     identity key, mode 0600
    HOME/identities/NAME/chain.key        chain key of its root chains, mode 0600 (only when
                                          the certificate names root_chains; identity.rootchain)
    HOME/identities/NAME/certificate.json canonical (RFC 8785) birth certificate
    HOME/identities/NAME/anchor.json      anchor tx, the value it spent, and the locator
                                          once confirmed (the nonce k is never stored)
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import coincurve

from ..chain.errors import TxNotFound
from ..chain.hashes import to_display_hex
from ..chain.network import Network
from ..chain.sighash import p2wpkh_script, p2wpkh_sighash
from ..chain.source import ChainSource, UnspentOutput
from ..chain.tx import parse_tx, txid_of
from ..ciphersuites.nonce import parse_der_signature
from ..errors import IdentityError
from .anchor import FIRST_CHAIN_VOUT, BuiltTx, anchor_funding_amount, build_anchor_tx
from .certificate import ROOT_CHAIN_TYPES, BirthCertificate, RootChainEntry
from .files import write_atomically
from .keys import ChainKey, IdentityKey
from .marker import MarkerType
from .locator import Locator, LocatorKind
from .wallet import AnchoringWallet


class AnchorNotMined(IdentityError):
    """The anchor is broadcast but not in a block yet: try again later."""


CHAIN_KEY_FILE = "chain.key"


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _identity_dir(home: Path, name: str) -> Path:
    if not _SAFE_NAME.match(name):
        raise IdentityError(f"identity name {name!r} cannot be a directory name")
    return Path(home) / "identities" / name


@dataclass
class Party:
    """A party's anchored identity as its owner holds it."""
    name: str
    directory: Path
    key: IdentityKey
    certificate: BirthCertificate
    anchor_tx: bytes
    funding_value: int
    locator: Locator | None
    funding_tx: bytes | None = None     # kept until confirmed: a crash before broadcast is resumable

    # --- the owner's key-agreement secret ---------------------------------------------
    def nonce_key(self) -> coincurve.PrivateKey:
        """k from the published anchor signature; recomputed on demand, never stored."""
        tx = parse_tx(self.anchor_tx)
        signature = bytes(tx.vin[0].witness.items[0])
        r, s = parse_der_signature(signature[:-1])
        sighash = p2wpkh_sighash(tx, 0, self.key.public_key, self.funding_value)
        return self.key.nonce_key(r, s, sighash)

    # --- anchor chains (identity.rootchain builds on these) ---------------------------
    def chain_key(self) -> ChainKey:
        """The key locking this party's root-chain outputs (IdentityError if it has none)."""
        if not self.certificate.root_chains:
            raise IdentityError(f"identity {self.name} has no root chains")
        key = ChainKey.load(self.directory / CHAIN_KEY_FILE)
        if any(entry.key != key.public_key for entry in self.certificate.root_chains):
            raise IdentityError(f"{CHAIN_KEY_FILE} of {self.name} is not the key its certificate names")
        return key

    def root_chain_start(self, root_type: int) -> tuple[bytes, int]:
        """(anchor txid, vout): the birth-anchor output that the first root of ``root_type`` spends."""
        found = self.certificate.root_chain(root_type)
        if found is None:
            raise IdentityError(f"identity {self.name} has no root chain of type {root_type}")
        return self.anchor_txid, FIRST_CHAIN_VOUT + found[0]

    def trust_entry(self, roles: list[str] | None = None) -> dict[str, Any]:
        """This party as a pinned trust-store entry (name, locator, roles)."""
        if self.locator is None:
            raise IdentityError(f"identity {self.name} is not confirmed yet")
        return {"name": self.certificate.name, "locator": self.locator.to_json(),
                "roles": roles or [self.certificate.role]}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.certificate.role,
                "pubkey": self.key.public_key.hex(),
                "certificate_sha256": self.certificate.digest().hex(),
                "anchor_txid": to_display_hex(txid_of(parse_tx(self.anchor_tx))),
                "locator": self.locator.to_json() if self.locator else None}

    # --- persistence --------------------------------------------------------------------
    @classmethod
    def load(cls, home: Path, name: str) -> "Party":
        directory = _identity_dir(home, name)
        if not (directory / "anchor.json").exists():
            raise IdentityError(f"no identity {name!r} in {home}")
        state = json.loads((directory / "anchor.json").read_text())
        certificate = BirthCertificate.parse((directory / "certificate.json").read_bytes())
        locator = Locator.from_json(state["locator"]) if state.get("locator") else None
        funding = state.get("funding_tx")
        return cls(name, directory, IdentityKey.load(directory / "identity.key"), certificate,
                   bytes.fromhex(state["anchor_tx"]), int(state["funding_value"]), locator,
                   bytes.fromhex(funding) if funding else None)

    def _save_state(self) -> None:
        state = {"anchor_tx": self.anchor_tx.hex(), "funding_value": self.funding_value,
                 "locator": self.locator.to_json() if self.locator else None}
        if self.funding_tx is not None and self.locator is None:
            state["funding_tx"] = self.funding_tx.hex()
        # Durable before the wallet records the funding: create() depends on that order.
        write_atomically(self.directory / "anchor.json", json.dumps(state, indent=2) + "\n")

    # --- creation -----------------------------------------------------------------------
    @classmethod
    def create(cls, home: Path, source: ChainSource, *, role: str, name: str,
               urls: tuple[str, ...] = (), role_data: dict | None = None,
               fee_rate: float | None = None, confirm_blocks: int = 6,
               root_chains: Sequence[MarkerType] = (), batch_key: bytes | None = None) -> "Party":
        """Generate keys and a certificate, fund the anchor from the anchoring wallet and
        broadcast both. On regtest the faucet funds the wallet and ``confirm_blocks`` blocks
        are mined (0: none), so the locator is known; elsewhere, and with 0, the party is
        returned unconfirmed and ``confirm(source)`` records the locator once it is mined.

        ``fee_rate`` defaults to the wallet's clamped estimate. A wallet that cannot pay
        raises InsufficientFunds (naming the address and amount) before anything is created.

        ``root_chains`` (marker types 2, 3, 4; at most one chain each) makes a chain key
        (chain.key, 0600) that the certificate names, and one chain output per type in the
        anchor (output 2 + i): identity.rootchain.RootAnchorer anchors those roots.

        ``batch_key`` (x-only, 32 bytes) is named in the certificate: a TBS's batching key.
        """
        chain_types = tuple(root_chains)
        if any(type(t) not in (int, MarkerType) or t not in ROOT_CHAIN_TYPES for t in chain_types):
            raise IdentityError(f"root chain types must be among {sorted(int(t) for t in ROOT_CHAIN_TYPES)}")
        if len(set(chain_types)) != len(chain_types):
            raise IdentityError("root_chains names a type twice: one chain per type")
        directory = _identity_dir(home, name)
        if directory.exists() and not (directory / "anchor.json").exists():
            # An earlier create stopped before its anchor was written: nothing of it was ever
            # recorded by the wallet or broadcast (see below), so it is safe to start over.
            shutil.rmtree(directory)
        if directory.exists():
            raise IdentityError(f"identity {name!r} already exists in {home}")
        wallet = AnchoringWallet(home, source)
        fee_rate = wallet.fee_rate() if fee_rate is None else fee_rate
        amount = anchor_funding_amount(fee_rate, len(chain_types))
        wallet.ensure_funded(amount, fee_rate=fee_rate)
        directory.mkdir(parents=True, mode=0o700)
        key = IdentityKey.generate()
        key.save(directory / "identity.key")
        chains: tuple[RootChainEntry, ...] = ()
        if chain_types:
            chain_key = ChainKey.generate()
            chain_key.save(directory / CHAIN_KEY_FILE)
            chains = tuple(RootChainEntry(MarkerType(t), chain_key.public_key) for t in chain_types)
        certificate = BirthCertificate(role=role, name=name, pubkey=key.public_key,
                                       network=source.network.label, urls=tuple(urls), role_data=role_data,
                                       root_chains=chains, batch_key=batch_key)
        (directory / "certificate.json").write_bytes(certificate.canonical_bytes())

        made: list[Party] = []

        def write_anchor_first(funding) -> None:
            # anchor.json (with the funding transaction) exists before the wallet records the
            # funding, so no crash can leave coins sent to the identity key without its anchor.
            identity_coin = UnspentOutput(funding.txid, 0, amount, key.p2wpkh_script, None)
            anchor = build_anchor_tx(key, identity_coin, certificate.digest(), wallet.script_pubkey, fee_rate,
                                     [p2wpkh_script(entry.key) for entry in chains])
            party = cls(name, directory, key, certificate, anchor.raw, amount, None, funding.raw)
            party._save_state()
            made.append(party)

        wallet.fund(key.p2wpkh_script, amount, fee_rate=fee_rate, broadcast=False,
                    label=f"funding {name}", before_record=write_anchor_first)
        party = made[0]
        party._send_anchor(wallet)
        wallet.check_low_balance()
        if source.network is Network.REGTEST and confirm_blocks > 0:
            _regtest_control(source).mine(confirm_blocks)
            party.confirm(source)
        return party

    @property
    def anchor_txid(self) -> bytes:
        return txid_of(parse_tx(self.anchor_tx))

    def _send_anchor(self, wallet: AnchoringWallet, *, record_funding: bool = False) -> None:
        """Record the anchor and send funding and anchor; idempotent. ``record_funding`` is the
        resume after a crash that came before the wallet recorded the funding."""
        funding_txid = txid_of(parse_tx(self.funding_tx))
        if record_funding:
            wallet.track(BuiltTx(self.funding_tx, funding_txid),
                         spent_value=spent_value_of(wallet.source, self.funding_tx), label=f"funding {self.name}")
        # The anchor's change pays the fee key: tracked, the wallet rebroadcasts it and can
        # bump it (CPFP) through that change.
        wallet.track(BuiltTx(self.anchor_tx, self.anchor_txid), spent_value=self.funding_value,
                     label=f"anchor {self.name}")
        wallet.send(funding_txid)
        wallet.send(self.anchor_txid)

    def confirm(self, source: ChainSource) -> Locator:
        """Record the locator once the anchor is mined (again after a reorg moved it);
        AnchorNotMined while it is not. An anchor the source has never seen (the creating
        process stopped before broadcasting) is handed to the wallet and sent again."""
        txid = self.anchor_txid
        try:
            status = source.tx_status(txid)
        except TxNotFound:
            if self.funding_tx is None:
                raise
            self._send_anchor(AnchoringWallet(self.directory.parent.parent, source), record_funding=True)
            status = source.tx_status(txid)
        if status.block_hash is None:
            raise AnchorNotMined(f"anchor {to_display_hex(txid)} is not confirmed yet")
        self.locator = Locator(network=source.network, kind=LocatorKind.P2WPKH, txid=txid,
                               input_index=0, block_hash=status.block_hash)
        self._save_state()
        return self.locator


def _regtest_control(source: ChainSource):
    if not (hasattr(source, "faucet") and hasattr(source, "mine")):
        raise IdentityError("this chain source has no regtest faucet/miner")
    return source


def spent_value_of(source: ChainSource, raw_tx: bytes) -> int:
    """What a transaction's inputs hold, read from the transactions they spend (the source's
    word: used only to re-record a transaction of our own after a crash, never to verify)."""
    total = 0
    for tx_in in parse_tx(raw_tx).vin:
        previous = parse_tx(source.transaction(tx_in.txid[::-1]))   # embit keeps display order
        total += previous.vout[tx_in.vout].value
    return total
