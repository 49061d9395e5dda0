"""The anchoring wallet: the fee key's coins, its fee rates, and the transactions it sent.

Parties that anchor on a real network (D-TA, IdP and TBS logs, single anchors) pay
from the **fee key** in HOME/fee.key, never from an identity key (identity.keys says
why). The operator funds the fee key's P2WPKH address; on regtest the faucet does.

Everything the wallet knows about its coins and fee rates is **the chain source's
word** (``utxos_unverified``, ``fee_rate_unverified``): headers cannot prove that an
output is unspent. That is acceptable here because a wrong answer costs at most a
refused broadcast, never a false identity: the verifier never uses these reads.
What the wallet itself sent is in HOME/wallet.json (identity.wallet_record), or in any
record passed as ``record=`` (the roles keep it in their shared database).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Protocol, Sequence

from embit.transaction import Transaction

from ..chain.errors import SourceError, TxNotFound, TxRejected
from ..chain.network import Network
from ..chain.script_text import address as script_address
from ..chain.source import ChainSource, TxStatus, UnspentOutput
from ..chain.tx import is_coinbase, parse_tx, vsize
from ..errors import IdentityError
from .anchor import (DUST, BuiltTx, build_fee_key_spend, fee_key_spend_fee, fee_key_spend_vbytes)
from .keys import FeeKey
from .wallet_record import SentTx, WalletRecord

#: Core's COINBASE_MATURITY (consensus/consensus.h).
COINBASE_MATURITY = 100

log = logging.getLogger("milagro_tls.wallet")

#: Core's default -minrelaytxfee (1,000 sat/kvB): below it nothing relays.
DEFAULT_FEE_FLOOR = 1.0
#: An unattended wallet must not follow a broken or hostile estimate without bound; at
#: 100 sat/vB an anchor costs about 35,000 sat. Above that an operator decides (``bump``).
DEFAULT_FEE_CAP = 100.0
#: About twenty anchors at 10 sat/vB (one anchor, funding included, is ~350 vB).
DEFAULT_LOW_BALANCE = 50_000
#: What one regtest faucet request gives the fee key.
FAUCET_AMOUNT = 100_000
#: A confirmed record is kept until this deep (coinbase maturity: the depth at which
#: Bitcoin itself treats outputs as final), so that a reorg can still rebroadcast it.
PRUNE_DEPTH = 100
#: A P2WPKH payment's scriptPubKey length, for sizing a spend before the payee is known.
_P2WPKH_SCRIPT = bytes(22)
#: A CPFP child is rebuilt at most this often to match its real (signed) size.
_CPFP_ROUNDS = 3


class WalletRecordLike(Protocol):
    """What the wallet needs from its record (identity.wallet_record.WalletRecord's interface).

    ``lock()`` is held for one whole select-build-record-send cycle and must exclude every
    other process spending the same fee key; ``load``/``save`` give and replace the entries in
    record order (a dependency order); ``reserved`` is every outpoint a recorded entry spends."""

    def lock(self) -> ContextManager: ...
    def load(self) -> list[SentTx]: ...
    def save(self, entries: list[SentTx]) -> None: ...
    def reserved(self, entries: list[SentTx] | None = None) -> set: ...


class WalletError(IdentityError):
    """The anchoring wallet cannot do what was asked."""


class InsufficientFunds(WalletError):
    def __init__(self, address: str, shortfall: int, needed: int, available: int) -> None:
        self.address, self.shortfall, self.needed, self.available = address, shortfall, needed, available
        super().__init__(f"the anchoring wallet needs {needed} sat and has {available} spendable: "
                         f"send at least {shortfall} sat to {address}")


@dataclass(frozen=True, slots=True)
class Balance:
    confirmed: int
    unconfirmed: int             # outputs of transactions still in the mempool

    @property
    def total(self) -> int:
        return self.confirmed + self.unconfirmed


def load_fee_key(home: Path) -> FeeKey:
    """HOME/fee.key, created (mode 0600) on first use."""
    path = Path(home) / "fee.key"
    if not path.exists():
        Path(home).mkdir(parents=True, exist_ok=True, mode=0o700)
        FeeKey.generate().save(path)
    return FeeKey.load(path)


def _already_there(exc: TxRejected) -> bool:
    """The source refused a re-send because it already has the transaction."""
    reason = (getattr(exc, "reason", None) or str(exc)).lower()
    return any(s in reason for s in ("already-in-mempool", "already in mempool", "already-known",
                                     "already in block chain", "already in utxo set"))


class AnchoringWallet:
    def __init__(self, home: Path, source: ChainSource, *, fee_floor: float = DEFAULT_FEE_FLOOR,
                 fee_cap: float = DEFAULT_FEE_CAP, low_balance: int = DEFAULT_LOW_BALANCE,
                 record: WalletRecordLike | None = None) -> None:
        """``record``: where the sent transactions live and what serializes coin selection
        (default HOME/wallet.json under an flock). Every process spending this fee key must use
        the same record, or two of them can pick the same coin."""
        if not (0 < fee_floor <= fee_cap and math.isfinite(fee_cap)):
            raise WalletError(f"fee floor {fee_floor} and cap {fee_cap} must satisfy 0 < floor <= cap")
        self.home = Path(home)
        self.source = source
        self.fee_floor, self.fee_cap, self.low_balance = fee_floor, fee_cap, low_balance
        self._key = load_fee_key(self.home)
        self.script_pubkey = self._key.p2wpkh_script
        self._record = record if record is not None else WalletRecord(self.home)

    # --- what the wallet holds ------------------------------------------------------------
    def address(self) -> str:
        """The fee key's P2WPKH address on the source's network (bc1/tb1/bcrt1): show it to the operator."""
        return script_address(self.script_pubkey, self.source.network)

    def coins(self) -> list[UnspentOutput]:
        """Spendable coins: the source's unspent outputs to the fee key, less every output a
        recorded transaction already spends (its own mempool view may lag or be wiped), and
        less coinbase outputs not yet mature (someone may mine to the funding address)."""
        reserved = self._record.reserved()
        listed = [u for u in self.source.utxos_unverified(self.script_pubkey)
                  if u.script_pubkey == self.script_pubkey and (u.txid, u.vout) not in reserved]
        young = [u for u in listed if u.height is not None and u.coinbase is not False]
        if not young:
            return listed
        next_height = self.source.tip().height + 1
        return [u for u in listed if u not in young or self._mature(u, next_height)]

    def _mature(self, coin: UnspentOutput, next_height: int) -> bool:
        """Core's rule: a coinbase output is spendable in a block 100 blocks above its own."""
        if next_height - coin.height >= COINBASE_MATURITY:
            return True
        if coin.coinbase is None:   # the source does not say (Esplora): the transaction does
            return not is_coinbase(parse_tx(self.source.transaction(coin.txid)))
        return not coin.coinbase

    def balance(self) -> Balance:
        coins = self.coins()
        return Balance(sum(u.value for u in coins if u.height is not None),
                       sum(u.value for u in coins if u.height is None))

    def check_low_balance(self) -> str | None:
        """A warning (also logged) when the balance is below ``low_balance``, else None."""
        balance = self.balance()
        if balance.total >= self.low_balance:
            return None
        message = (f"anchoring wallet balance {balance.total} sat ({balance.confirmed} confirmed) is below "
                   f"{self.low_balance} sat: send bitcoin to {self.address()}")
        log.warning(message)
        return message

    def pending(self) -> list[SentTx]:
        """Recorded transactions the source does not show as confirmed."""
        return [e for e in self._record.load() if not self._confirmed(self._status(e.txid))]

    # --- fees ------------------------------------------------------------------------------
    def fee_rate(self, target_blocks: int = 6) -> float:
        """The source's estimate in sat/vB, clamped to [floor, cap]; the floor when it has none."""
        try:
            estimate = self.source.fee_rate_unverified(target_blocks)
        except SourceError as exc:
            log.warning("fee estimate unavailable (%s); using the floor %.2f sat/vB", exc, self.fee_floor)
            estimate = None
        if estimate is None or not math.isfinite(estimate) or estimate <= 0:
            return self.fee_floor
        if estimate > self.fee_cap:
            log.warning("fee estimate %.2f sat/vB is above the cap; paying %.2f sat/vB", estimate, self.fee_cap)
            return self.fee_cap
        return max(estimate, self.fee_floor)

    def _rate(self, fee_rate: float | None) -> float:
        rate = self.fee_rate() if fee_rate is None else fee_rate
        if not (math.isfinite(rate) and self.fee_floor <= rate <= self.fee_cap):
            raise WalletError(f"fee rate {rate} sat/vB is outside [{self.fee_floor}, {self.fee_cap}]")
        return rate

    # --- paying ----------------------------------------------------------------------------
    def _select(self, amount: int, payment_scripts: list[bytes], rate: float,
                foreign_inputs: int = 0) -> tuple[list[UnspentOutput], int]:
        """Confirmed coins first (largest first), then unconfirmed ones, until amount + fee is covered
        (``foreign_inputs``: P2WPKH inputs of other keys the transaction also has, for its size)."""
        chosen: list[UnspentOutput] = []
        total = 0
        fee = fee_key_spend_fee(1 + foreign_inputs, payment_scripts, rate)
        for coin in sorted(self.coins(), key=lambda u: (u.height is None, -u.value)):
            chosen.append(coin)
            total += coin.value
            fee = fee_key_spend_fee(len(chosen) + foreign_inputs, payment_scripts, rate)
            if total >= amount + fee:
                return chosen, fee
        raise InsufficientFunds(self.address(), amount + fee - total, amount + fee, total)

    def ensure_funded(self, amount: int, *, fee_rate: float | None = None) -> None:
        """Make sure ``fund(script, amount)`` can pay: on regtest the faucet tops the wallet up
        (and a block confirms it); elsewhere InsufficientFunds names the address and amount."""
        rate = self._rate(fee_rate)
        try:
            self._select(amount, [_P2WPKH_SCRIPT], rate)
            return
        except InsufficientFunds as short:
            faucet, mine = getattr(self.source, "faucet", None), getattr(self.source, "mine", None)
            if self.source.network is not Network.REGTEST or faucet is None or mine is None:
                raise
            # the shortfall counts the coins held now; the new coin's own input costs a little more
            faucet(self.script_pubkey, max(FAUCET_AMOUNT, short.shortfall + fee_key_spend_fee(1, [], rate)))
            mine(1)
        self._select(amount, [_P2WPKH_SCRIPT], rate)

    def fund(self, script_pubkey: bytes, amount: int, *, fee_rate: float | None = None,
             broadcast: bool = True, label: str = "fund",
             before_record: Callable[[BuiltTx], None] | None = None) -> BuiltTx:
        """Pay ``amount`` to ``script_pubkey`` (output 0), change to the fee key (last output).

        The transaction is recorded before it is sent, so a crash in between leaves it for
        ``rebroadcast_unconfirmed``. With ``broadcast=False`` the caller sends it with ``send``.
        ``before_record`` runs once the transaction is built and before it is recorded: a caller
        whose own state must exist before the payment can ever be sent (an identity's anchor)
        writes it there.
        """
        if amount < DUST:
            raise WalletError(f"{amount} sat is below the dust limit ({DUST} sat)")
        rate = self._rate(fee_rate)
        with self._record.lock():
            chosen, fee = self._select(amount, [script_pubkey], rate)
            built = build_fee_key_spend(self._key, chosen, [(amount, script_pubkey)], fee)
            if before_record is not None:
                before_record(built)
            self._remember(built, sum(c.value for c in chosen), label)
            if broadcast:
                self._send(built.txid)
        if broadcast:   # before the send, its change is not listed yet: a caller checks after sending
            self.check_low_balance()
        return built

    def spend_with(self, foreign: Sequence[UnspentOutput], payments: Sequence[tuple[int, bytes]],
                   sign_foreign: Callable[[Transaction], None], *, fee_rate: float | None = None,
                   label: str = "spend", before_record: Callable[[BuiltTx], None] | None = None,
                   broadcast: bool = True) -> BuiltTx:
        """A transaction whose first inputs are ``foreign`` P2WPKH outputs of another key (an
        anchor-chain output), paying ``payments`` in order, with the fee and the rest of the
        value from the fee key's coins and change to the fee key (last output).

        ``sign_foreign(tx)`` sets the foreign inputs' witnesses (SIGHASH_ALL) on the complete
        transaction. As in ``fund``: coins are selected, the transaction recorded and sent
        under the record lock, and ``before_record`` runs before it is recorded, so a caller
        can make its own state durable first (a crash then leaves it for a re-send).
        """
        if not foreign:
            raise WalletError("spend_with needs at least one foreign input; use fund otherwise")
        rate = self._rate(fee_rate)
        scripts = [script for _, script in payments]
        # Foreign value counts towards the payments: a chain output is spent and paid on.
        amount = sum(value for value, _ in payments) - sum(coin.value for coin in foreign)
        with self._record.lock():
            chosen, fee = self._select(amount, scripts, rate, foreign_inputs=len(foreign))
            built = build_fee_key_spend(self._key, chosen, list(payments), fee, foreign=foreign,
                                        sign_foreign=sign_foreign)
            if before_record is not None:
                before_record(built)
            self._remember(built, sum(c.value for c in chosen) + sum(c.value for c in foreign), label)
            if broadcast:
                self._send(built.txid)
        return built

    def recorded(self, txid: bytes) -> SentTx | None:
        """The record of a transaction this wallet sent or tracks, or None."""
        return next((e for e in self._record.load() if e.txid == txid), None)

    def track(self, built: BuiltTx, *, spent_value: int, label: str) -> SentTx:
        """Record a transaction built elsewhere that pays change to the fee key (an anchor):
        the wallet then rebroadcasts it and can bump it through that change."""
        with self._record.lock():
            return self._remember(built, spent_value, label)

    def send(self, txid: bytes) -> bytes:
        """Broadcast a recorded transaction (TxRejected drops it from the record)."""
        with self._record.lock():
            return self._send(txid)

    def _remember(self, built: BuiltTx, spent_value: int, label: str) -> SentTx:
        tx = parse_tx(built.raw)
        fee = spent_value - sum(out.value for out in tx.vout)
        if fee < 0:
            raise WalletError(f"{built.txid_hex} spends {spent_value} sat but pays out more")
        change = [i for i, out in enumerate(tx.vout) if out.script_pubkey.data == self.script_pubkey]
        entry = SentTx(built.txid, built.raw, fee, change[-1] if change else None, int(time.time()), label)
        entries = [e for e in self._record.load() if e.txid != built.txid]
        self._record.save(entries + [entry])
        return entry

    def _send(self, txid: bytes) -> bytes:
        entry = self._entry(txid)
        try:
            return self.source.broadcast(entry.raw)
        except TxRejected as exc:
            if _already_there(exc):
                return txid
            # A definite refusal: it will never relay as it is, so it reserves nothing.
            self._drop(self._record.load(), {txid}, f"the source refused it: {exc}")
            raise

    # --- keeping what was sent alive ------------------------------------------------------
    def rebroadcast_unconfirmed(self) -> list[bytes]:
        """Re-send every recorded transaction the source shows as unconfirmed or does not
        know, parents first; returns the txids it accepted anew. A transaction whose input
        a confirmed transaction spends can never confirm: it (and what spends it) is dropped
        from the record. Records confirmed PRUNE_DEPTH deep are forgotten."""
        resent: list[bytes] = []
        with self._record.lock():
            entries = self._record.load()
            tip = self.source.tip().height
            deep: set[bytes] = set()
            for entry in list(entries):
                if entry not in entries:        # dropped with an ancestor earlier in this pass
                    continue
                status = self._status(entry.txid)
                if self._confirmed(status):
                    if status.height is not None and tip - status.height + 1 >= PRUNE_DEPTH:
                        deep.add(entry.txid)
                    continue
                try:
                    self.source.broadcast(entry.raw)
                    resent.append(entry.txid)
                    log.info("rebroadcast %s (%s)", entry.txid_hex, entry.label)
                except TxRejected as exc:
                    if _already_there(exc):
                        continue
                    conflict = self._confirmed_conflict(entry)
                    if conflict is None:
                        log.warning("rebroadcast of %s (%s) refused, kept for later: %s",
                                    entry.txid_hex, entry.label, exc)
                        continue
                    entries = self._drop(entries, {entry.txid}, f"its input {conflict} is spent by a "
                                         "confirmed transaction")
                except SourceError as exc:
                    log.warning("rebroadcast of %s (%s) failed, kept for later: %s", entry.txid_hex, entry.label, exc)
            if deep:
                entries = [e for e in entries if e.txid not in deep]
                self._record.save(entries)
        return resent

    def _confirmed_conflict(self, entry: SentTx) -> str | None:
        for txid, vout in entry.prevouts:
            spender = self.source.outspend_unverified(txid, vout)
            if spender is not None and spender != entry.txid and self._confirmed(self._status(spender)):
                return f"{txid[::-1].hex()}:{vout} (spent by {spender[::-1].hex()})"
        return None

    def _drop(self, entries: list[SentTx], txids: set[bytes], why: str) -> list[SentTx]:
        """Remove ``txids`` and every recorded descendant (they spend outputs that will not exist)."""
        dropped = set(txids)
        kept = []
        for entry in entries:           # record order is dependency order
            if entry.txid in dropped or any(op[0] in dropped for op in entry.prevouts):
                dropped.add(entry.txid)
                log.warning("dropped %s (%s) from the wallet record: %s", entry.txid_hex, entry.label,
                            why if entry.txid in txids else "it spends a dropped transaction")
            else:
                kept.append(entry)
        self._record.save(kept)
        return kept

    # --- CPFP ------------------------------------------------------------------------------
    def bump(self, txid: bytes, target_fee_rate: float) -> BuiltTx:
        """Child pays for parent: spend the recorded transaction's change (plus more coins if
        needed) back to the fee key with a fee that lifts the package to ``target_fee_rate``."""
        rate = self._rate(target_fee_rate)
        with self._record.lock():
            entries = self._record.load()
            parent = self._entry(txid, entries)
            status = self._status(txid)
            if status is None:
                raise WalletError(f"{parent.txid_hex} is unknown to the chain source: rebroadcast it first")
            if self._confirmed(status):
                raise WalletError(f"{parent.txid_hex} is already confirmed at height {status.height}: nothing to bump")
            if parent.change_vout is None:
                raise WalletError(f"{parent.txid_hex} has no change output to the fee key for a CPFP child")
            spender = self.source.outspend_unverified(txid, parent.change_vout)
            if spender is not None:
                raise WalletError(f"the change of {parent.txid_hex} is already spent by "
                                  f"{spender[::-1].hex()}: bump that transaction instead")
            package = [parent] + self._unconfirmed_ancestors(parent, entries)
            change = UnspentOutput(parent.txid, parent.change_vout, parent.output_value(parent.change_vout),
                                   self.script_pubkey, None)
            child, spent_value = self._build_child(parent, package, change, rate)
            self._remember(child, spent_value, f"cpfp {parent.txid_hex}")
            self._send(child.txid)
        log.info("CPFP child %s bumps %s to %.2f sat/vB", child.txid_hex, parent.txid_hex, rate)
        return child

    def _unconfirmed_ancestors(self, entry: SentTx, entries: list[SentTx]) -> list[SentTx]:
        by_txid = {e.txid: e for e in entries}
        found: dict[bytes, SentTx] = {}
        stack = [entry]
        while stack:
            for txid, _ in stack.pop().prevouts:
                ancestor = by_txid.get(txid)
                if ancestor is not None and txid not in found and not self._confirmed(self._status(txid)):
                    found[txid] = ancestor
                    stack.append(ancestor)
        return list(found.values())

    def _build_child(self, parent: SentTx, package: list[SentTx], change: UnspentOutput,
                     rate: float) -> tuple[BuiltTx, int]:
        """The signed child and the value it spends."""
        parent_vsize = vsize(parent.raw)
        if parent.fee >= rate * parent_vsize:
            raise WalletError(f"{parent.txid_hex} already pays {parent.fee / parent_vsize:.2f} sat/vB, "
                              f"at or above {rate} sat/vB")
        package_vsize = sum(vsize(e.raw) for e in package)
        package_fee = sum(e.fee for e in package)

        def child_fee(child_vsize: float) -> int:
            # Miners rank a child by its ancestor package; with several unconfirmed ancestors
            # both the parent+child pair and the whole package must reach the target, or a
            # well-paying grandparent is mined alone and leaves the pair behind.
            return max(math.ceil(rate * (parent_vsize + child_vsize)) - parent.fee,
                       math.ceil(rate * (package_vsize + child_vsize)) - package_fee,
                       math.ceil(self.fee_floor * child_vsize))

        # coins(): unreserved and mature, the same pool fund() selects from.
        extra = sorted((u for u in self.coins() if (u.txid, u.vout) != (change.txid, change.vout)),
                       key=lambda u: (u.height is None, -u.value))
        coins = [change]
        while sum(c.value for c in coins) - child_fee(fee_key_spend_vbytes(len(coins), [])) < DUST:
            if not extra:
                needed = child_fee(fee_key_spend_vbytes(len(coins), [])) + DUST
                have = sum(c.value for c in coins)
                raise InsufficientFunds(self.address(), needed - have, needed, have)
            coins.append(extra.pop(0))
        fee = child_fee(fee_key_spend_vbytes(len(coins), []))
        for _ in range(_CPFP_ROUNDS):
            child = build_fee_key_spend(self._key, coins, [], fee)
            needed = child_fee(child.vsize)    # the real signed size, not the estimate
            if fee >= needed:
                return child, sum(c.value for c in coins)
            fee = needed
        raise WalletError("could not size the CPFP child")   # unreachable: the estimate bounds the size

    # --- helpers ---------------------------------------------------------------------------
    def _entry(self, txid: bytes, entries: list[SentTx] | None = None) -> SentTx:
        for entry in self._record.load() if entries is None else entries:
            if entry.txid == txid:
                return entry
        raise WalletError(f"{txid[::-1].hex()} is not a transaction this wallet sent or tracks")

    def _status(self, txid: bytes) -> TxStatus | None:
        try:
            return self.source.tx_status(txid)
        except TxNotFound:
            return None

    @staticmethod
    def _confirmed(status: TxStatus | None) -> bool:
        return status is not None and status.block_hash is not None
