"""The node's miner key and the faucet's transaction builder (P2WPKH only)."""
from __future__ import annotations

import os
from pathlib import Path

import coincurve
from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from ..errors import NodeError
from ..sighash import SIGHASH_ALL, p2wpkh_script, p2wpkh_sighash
from .mempool import COINBASE_MATURITY
from .store import Utxo

FEE_RATE = 2                 # sat/vB; regtest has no fee market, but zero-fee looks wrong on a chart
DUST = 546
P2WPKH_INPUT_VBYTES = 68
TX_OVERHEAD_VBYTES = 11

Coin = tuple[bytes, int, Utxo]      # (txid wire order, vout, the output)


class P2wpkhKey:
    """A secp256k1 key spending P2WPKH; the node keeps its own in DATADIR/miner.key (hex, mode 0600)."""

    def __init__(self, secret: bytes) -> None:
        self._key = coincurve.PrivateKey(secret)
        self.pubkey = self._key.public_key.format(compressed=True)
        self.script_pubkey = p2wpkh_script(self.pubkey)

    @classmethod
    def load_or_create(cls, path: Path) -> "P2wpkhKey":
        try:
            # O_EXCL: never overwrite a key, never race another creator.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            text = path.read_text().strip()
            try:
                secret = bytes.fromhex(text)
                return cls(secret)
            except ValueError:
                raise NodeError(f"{path} does not hold a 32-byte hex secret key") from None
        secret = coincurve.PrivateKey().secret
        with os.fdopen(fd, "w") as f:
            f.write(secret.hex() + "\n")
        return cls(secret)

    def sign_input(self, tx: Transaction, index: int, value: int) -> None:
        """BIP143 signature (SIGHASH_ALL) for a P2WPKH input of this key."""
        der = self._key.sign(p2wpkh_sighash(tx, index, self.pubkey, value), hasher=None)   # low-S DER
        tx.vin[index].witness = Witness([der + bytes([SIGHASH_ALL]), self.pubkey])

    def spend(self, inputs: list[tuple[bytes, int, int]], outputs: list[tuple[int, bytes]], *,
              version: int = 2, locktime: int = 0, sequence: int = 0xFFFFFFFF) -> bytes:
        """A signed transaction spending P2WPKH outputs of this key.

        ``inputs`` are (txid wire order, vout, value), ``outputs`` (value, scriptPubKey).
        """
        # embit keeps input txids in display order
        vin = [TransactionInput(txid[::-1], vout, sequence=sequence) for txid, vout, _ in inputs]
        vout = [TransactionOutput(value, Script(spk)) for value, spk in outputs]
        tx = Transaction(version=version, vin=vin, vout=vout, locktime=locktime)
        for i, (_, _, value) in enumerate(inputs):
            self.sign_input(tx, i, value)
        return tx.serialize()


def _vbytes(n_inputs: int, output_scripts: list[bytes]) -> int:
    outs = sum(8 + 1 + len(s) for s in output_scripts)
    return TX_OVERHEAD_VBYTES + P2WPKH_INPUT_VBYTES * n_inputs + outs


def build_payment(key: P2wpkhKey, coins: list[Coin], script_pubkey: bytes, amount: int) -> bytes | None:
    """Spend the fewest of ``coins`` (largest first) to pay ``amount``; change back to the key.

    Returns the signed raw transaction, or None if the coins do not cover amount + fee.
    """
    chosen: list[Coin] = []
    total = 0
    for coin in sorted(coins, key=lambda c: -c[2].value):
        chosen.append(coin)
        total += coin[2].value
        fee = FEE_RATE * _vbytes(len(chosen), [script_pubkey, key.script_pubkey])
        if total >= amount + fee:
            break
    else:
        return None
    change = total - amount - fee
    outputs = [(amount, script_pubkey)]
    if change >= DUST:
        outputs.append((change, key.script_pubkey))
    return key.spend([(txid, vout, coin.value) for txid, vout, coin in chosen], outputs)


def spendable(coins: list[Coin], next_height: int) -> list[Coin]:
    """The coins a transaction in block ``next_height`` may spend: all but immature coinbases."""
    return [c for c in coins if not c[2].is_coinbase or next_height - c[2].height >= COINBASE_MATURITY]


def blocks_until_new_coin(coins: list[Coin], tip: int) -> int:
    """Blocks to mine (to the key) before another of its coinbases among ``coins`` matures."""
    immature = [u.height for _, _, u in coins if u.is_coinbase and tip + 1 - u.height < COINBASE_MATURITY]
    if immature:
        return max(1, min(immature) + COINBASE_MATURITY - 1 - tip)
    return COINBASE_MATURITY       # one new coinbase plus 99 blocks on top
