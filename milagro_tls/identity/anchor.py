"""Building the single anchor and its funding, as pure functions over UTXOs.

    fee-key spend  fee key's coins  →  [payments..., fee-key change]   (the anchoring wallet)
    funding tx     a fee-key spend paying the identity P2WPKH (seal + fee + change)
    anchor tx      identity UTXO    →  [OP_RETURN marker 0x01 ‖ SHA256(cert),
                                        seal: P2WPKH to the identity key,
                                        chain outputs: P2WPKH to the chain key, CHAIN_VALUE,
                                          one per certificate root chain (output 2 + i),
                                        change: P2WPKH to the fee key (CPFP can spend it)]

The anchor spends a UTXO locked to the party's own P2WPKH key, so its input
signature is the party's ECDSA signature whose nonce becomes its key-agreement key.
Spending the seal later means "revoked" (gettxout / Esplora outspend can tell).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from ..chain.hashes import to_display_hex
from ..chain.sighash import SIGHASH_ALL, p2wpkh_sighash
from ..chain.source import UnspentOutput
from ..chain.tx import txid_of, vsize
from ..errors import IdentityError
from .keys import FeeKey, IdentityKey
from .marker import Marker, MarkerType

#: Seal value: above P2WPKH dust (294 sat) with room to pay for its own spend.
SEAL_VALUE = 1_000
#: Value of every anchor-chain output (identity.rootchain): each root transaction spends
#: one and makes the next, so it never pays fees and only has to stay above dust.
CHAIN_VALUE = 330
#: P2WPKH dust limit at the default dust relay fee (Core's GetDustThreshold).
DUST = 294
#: vB of a P2WPKH input with a 72-byte signature, of an output, and of the fixed part.
_INPUT_VB, _P2WPKH_OUT_VB, _OVERHEAD_VB = 68.25, 31, 10.5
_MARKER_OUT_VB = 8 + 1 + 42


@dataclass(frozen=True, slots=True)
class BuiltTx:
    raw: bytes
    txid: bytes

    @property
    def txid_hex(self) -> str:
        return to_display_hex(self.txid)

    @property
    def vsize(self) -> int:
        """BIP141 virtual size of the serialized transaction (what fee rates divide by)."""
        return vsize(self.raw)


def _fee(vbytes: float, fee_rate: float) -> int:
    # Rates are per whole vbyte of vsize = ceil(weight / 4) (BIP141): round the size bound up
    # first, or a 140.75 vB bound at 20 sat/vB pays 2,815 sat for a 141 vB transaction.
    return math.ceil(math.ceil(vbytes) * fee_rate)


def _input(coin: UnspentOutput) -> TransactionInput:
    # embit keeps input txids in display order.
    return TransactionInput(coin.txid[::-1], coin.vout, sequence=0xFFFFFFFD)


def _finish(tx: Transaction) -> BuiltTx:
    return BuiltTx(tx.serialize(), txid_of(tx))


def fee_key_spend_vbytes(n_inputs: int, payment_scripts: list[bytes]) -> float:
    """Upper bound on the vsize of a fee-key spend with change (72-byte signatures)."""
    outputs = sum(8 + 1 + len(s) for s in payment_scripts) + _P2WPKH_OUT_VB
    return _OVERHEAD_VB + _INPUT_VB * n_inputs + outputs


def fee_key_spend_fee(n_inputs: int, payment_scripts: list[bytes], fee_rate: float) -> int:
    return _fee(fee_key_spend_vbytes(n_inputs, payment_scripts), fee_rate)


def build_fee_key_spend(fee_key: FeeKey, coins: list[UnspentOutput], payments: list[tuple[int, bytes]],
                        fee: int, *, foreign: Sequence[UnspentOutput] = (),
                        sign_foreign: Callable[[Transaction], None] | None = None) -> BuiltTx:
    """Spend the fee key's ``coins`` to ``payments`` (value, scriptPubKey) paying exactly ``fee``
    (more only when change would be dust); the rest goes back to the fee key as the last output.

    ``foreign`` inputs (P2WPKH outputs of other keys, e.g. an anchor-chain output) come first,
    before the fee key's coins; ``sign_foreign(tx)`` sets their witnesses once the transaction
    is complete (with SIGHASH_ALL, each input's signature covers every input and output).
    Callers size ``fee`` with :func:`fee_key_spend_fee` or, for a CPFP child, from the package.
    """
    own = fee_key.p2wpkh_script
    if not coins:
        raise IdentityError("a fee-key spend needs at least one coin")
    if any(c.script_pubkey != own for c in coins):
        raise IdentityError("funding coins must belong to the fee key")
    if any(c.script_pubkey == own for c in foreign):
        raise IdentityError("foreign inputs must not be the fee key's own coins")
    if foreign and sign_foreign is None:
        raise IdentityError("foreign inputs need their signer")
    if fee < 0 or any(value < 0 for value, _ in payments):
        raise IdentityError("fee and payments must not be negative")
    total = sum(c.value for c in coins) + sum(c.value for c in foreign)
    paid = sum(value for value, _ in payments)
    change = total - paid - fee
    if change < 0:
        raise IdentityError(f"fee key holds {total} sat, {paid + fee} needed")
    outputs = [TransactionOutput(value, Script(script)) for value, script in payments]
    if change >= DUST:
        # Dust change would not relay; below DUST it goes to the fee instead.
        outputs.append(TransactionOutput(change, Script(own)))
    if not outputs:
        raise IdentityError(f"{total} sat of coins leave no output above dust after a {fee} sat fee")
    inputs = [*foreign, *coins]
    tx = Transaction(version=2, vin=[_input(c) for c in inputs], vout=outputs, locktime=0)
    for index, coin in enumerate(coins, start=len(foreign)):
        sighash = p2wpkh_sighash(tx, index, fee_key.public_key, coin.value)
        tx.vin[index].witness = Witness([fee_key.sign_input(sighash) + bytes([SIGHASH_ALL]), fee_key.public_key])
    if foreign:
        sign_foreign(tx)
        if any(not tx.vin[i].witness.items for i in range(len(foreign))):
            raise IdentityError("a foreign input was left unsigned")
    return _finish(tx)


def build_funding_tx(fee_key: FeeKey, coins: list[UnspentOutput], identity: IdentityKey, amount: int,
                     fee_rate: float = 1.0) -> BuiltTx:
    """Pay ``amount`` from the fee key's coins to the identity key's P2WPKH (output 0)."""
    fee = fee_key_spend_fee(len(coins), [identity.p2wpkh_script], fee_rate)
    return build_fee_key_spend(fee_key, coins, [(amount, identity.p2wpkh_script)], fee)


def anchor_funding_amount(fee_rate: float = 1.0, chains: int = 0) -> int:
    """What the identity UTXO must hold for the anchor to pay its fee and leave the seal
    (and ``chains`` anchor-chain outputs)."""
    return SEAL_VALUE + chains * CHAIN_VALUE + _anchor_fee(fee_rate, chains) + DUST


def _anchor_fee(fee_rate: float, chains: int = 0) -> int:
    return _fee(_OVERHEAD_VB + _INPUT_VB + _MARKER_OUT_VB + (2 + chains) * _P2WPKH_OUT_VB, fee_rate)


def build_anchor_tx(identity: IdentityKey, coin: UnspentOutput, certificate_digest: bytes,
                    change_script: bytes, fee_rate: float = 1.0,
                    chain_scripts: Sequence[bytes] = ()) -> BuiltTx:
    """The single anchor: the identity key spends its one UTXO, committing to the certificate.
    ``chain_scripts`` are the certificate's root chains' P2WPKH scripts, in its order."""
    if coin.script_pubkey != identity.p2wpkh_script:
        raise IdentityError("the anchor must spend a UTXO locked to the identity key itself")
    if identity.p2wpkh_script in chain_scripts:
        raise IdentityError("a chain output must not pay the identity key (it would pose as the seal)")
    change = coin.value - SEAL_VALUE - len(chain_scripts) * CHAIN_VALUE - _anchor_fee(fee_rate, len(chain_scripts))
    if change < DUST:
        raise IdentityError(f"identity UTXO of {coin.value} sat is too small for seal and fee")
    outputs = [
        TransactionOutput(0, Script(Marker(MarkerType.BIRTH_CERTIFICATE, certificate_digest).script())),
        TransactionOutput(SEAL_VALUE, Script(identity.p2wpkh_script)),
        *(TransactionOutput(CHAIN_VALUE, Script(script)) for script in chain_scripts),
        TransactionOutput(change, Script(change_script)),
    ]
    tx = Transaction(version=2, vin=[_input(coin)], vout=outputs, locktime=0)
    sighash = p2wpkh_sighash(tx, 0, identity.public_key, coin.value)
    signature = identity._sign_own_anchor_input(sighash)
    tx.vin[0].witness = Witness([signature + bytes([SIGHASH_ALL]), identity.public_key])
    return _finish(tx)


#: Output index of the seal in every single anchor built here.
SEAL_VOUT = 1
#: Output index of root chain 0 in a birth anchor; chain i is at FIRST_CHAIN_VOUT + i.
FIRST_CHAIN_VOUT = 2
#: Output index of the chain output in every root transaction (0 is its marker).
ROOT_CHAIN_VOUT = 1
