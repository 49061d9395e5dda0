"""Signature hashes, computed by embit (never hand-written)."""
from __future__ import annotations

from embit.script import Script
from embit.transaction import SIGHASH, Transaction

from .hashes import hash160

SIGHASH_ALL = SIGHASH.ALL


def p2wpkh_script(pubkey: bytes) -> bytes:
    return b"\x00\x14" + hash160(pubkey)


def p2wpkh_script_code(pubkey: bytes) -> bytes:
    """BIP143: the scriptCode of a P2WPKH input is the P2PKH script of the key hash."""
    return b"\x76\xa9\x14" + hash160(pubkey) + b"\x88\xac"


def p2wpkh_sighash(tx: Transaction, input_index: int, pubkey: bytes, value: int,
                   sighash_type: int = SIGHASH_ALL) -> bytes:
    """BIP143 sighash of a P2WPKH input spending ``value`` satoshis."""
    tx.clear_cache()
    return tx.sighash_segwit(input_index, Script(p2wpkh_script_code(pubkey)), value, sighash_type)
