"""Revoking a single-anchored identity: spend its seal.

    revocation tx   input 0: the seal (anchor output SEAL_VOUT, P2WPKH to the identity key),
                             signed SIGHASH_ALL by the identity key
                    inputs 1..: the fee key's coins (the anchoring wallet pays the fee)
                    outputs  [change to the fee key]   (the seal's value goes with it)

Once any chain source has seen this transaction (mempool included), verifiers that ask it
(chain.revocation) refuse the identity. Revocation is final: the seal cannot be unspent, and a
new identity needs a new anchor. A batch-anchored PAT has no seal: its TBS revokes it.

The spend is recorded in HOME/identities/NAME/revoked.json before the wallet records and sends
it, so a crash between the two re-sends the same transaction instead of building another.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from embit.script import Witness

from ..chain.errors import TxNotFound
from ..chain.hashes import to_display_hex
from ..chain.sighash import SIGHASH_ALL, p2wpkh_sighash
from ..chain.source import ChainSource, UnspentOutput
from ..chain.tx import parse_tx, txid_of
from ..errors import IdentityError
from .anchor import SEAL_VALUE, SEAL_VOUT, BuiltTx, fee_key_spend_fee
from .files import write_atomically
from .party import Party, spent_value_of
from .wallet import AnchoringWallet

log = logging.getLogger(__name__)

REVOKED_FILE = "revoked.json"


@dataclass(frozen=True, slots=True)
class Revocation:
    name: str
    txid: bytes          # wire order
    raw: bytes
    seal: tuple[bytes, int]

    @property
    def txid_hex(self) -> str:
        return to_display_hex(self.txid)


def revoke_party(home: Path, name: str, source: ChainSource, *, fee_rate: float | None = None) -> Revocation:
    """Spend ``name``'s seal and broadcast it. Idempotent: a second call re-sends (if needed)
    and returns the recorded revocation. IdentityError if the identity has no confirmed anchor,
    or if the source says something else already spends the seal."""
    party = Party.load(home, name)
    if party.locator is None:
        raise IdentityError(f"identity {name} is not confirmed: nothing anchored to revoke "
                            "(an unconfirmed anchor can still be replaced by its owner)")
    recorded = _recorded(party)
    wallet = AnchoringWallet(home, source)
    if recorded is not None:
        _resend(wallet, recorded)
        return recorded
    seal = (party.anchor_txid, SEAL_VOUT)
    spender = source.outspend_unverified(*seal)
    if spender is not None:
        raise IdentityError(f"the seal of {name} is already spent by {to_display_hex(spender)} "
                            "(by the source's word): it is revoked already, but not by this home")
    anchor = parse_tx(party.anchor_tx)
    if anchor.vout[SEAL_VOUT].script_pubkey.data != party.key.p2wpkh_script:
        raise IdentityError(f"output {SEAL_VOUT} of {name}'s anchor is not its seal")
    rate = wallet.fee_rate() if fee_rate is None else fee_rate
    wallet.ensure_funded(fee_key_spend_fee(2, [], rate), fee_rate=rate)
    coin = UnspentOutput(seal[0], seal[1], SEAL_VALUE, party.key.p2wpkh_script, None)

    def sign_seal(tx) -> None:
        sighash = p2wpkh_sighash(tx, 0, party.key.public_key, SEAL_VALUE)
        signature = party.key._sign_own_revocation_input(sighash) + bytes([SIGHASH_ALL])
        tx.vin[0].witness = Witness([signature, party.key.public_key])

    made: list[Revocation] = []

    def write_first(built: BuiltTx) -> None:
        # Durable before the wallet records or sends it (a crash then re-sends this one).
        revocation = Revocation(name, built.txid, built.raw, seal)
        write_atomically(party.directory / REVOKED_FILE, json.dumps(
            {"txid": revocation.txid_hex, "raw": built.raw.hex(),
             "seal": [to_display_hex(seal[0]), seal[1]]}, indent=1) + "\n")
        made.append(revocation)

    wallet.spend_with([coin], [], sign_seal, fee_rate=rate, label=f"revoke {name}", before_record=write_first)
    log.info("revoked %s: seal %s:%d spent by %s", name, to_display_hex(seal[0]), seal[1], made[0].txid_hex)
    return made[0]


def revocation_of(home: Path, name: str) -> Revocation | None:
    """The revocation this home recorded for ``name``, if any."""
    return _recorded(Party.load(home, name))


def _recorded(party: Party) -> Revocation | None:
    path = party.directory / REVOKED_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        raw = bytes.fromhex(doc["raw"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IdentityError(f"{path} is unreadable: {exc}") from None
    return Revocation(party.name, txid_of(parse_tx(raw)), raw, (party.anchor_txid, SEAL_VOUT))


def _resend(wallet: AnchoringWallet, revocation: Revocation) -> None:
    try:
        wallet.source.tx_status(revocation.txid)
        return
    except TxNotFound:
        pass
    if wallet.recorded(revocation.txid) is None:
        wallet.track(BuiltTx(revocation.raw, revocation.txid),
                     spent_value=spent_value_of(wallet.source, revocation.raw), label=f"revoke {revocation.name}")
    wallet.send(revocation.txid)
