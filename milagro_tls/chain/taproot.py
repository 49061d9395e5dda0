"""The taproot batch form: its one leaf script, tapleaf hash, output key, control block, sighash.

One P2TR output per batch group. The internal key P is the batcher's (TBS's) x-only key, so the
batcher alone can reclaim the coins through the key path; the single leaf (version 0xc0) is

    20 <tbs> ad  20 <pat_0> ac  20 <pat_1> ba ... 20 <pat_N-1> ba
    <TBS> OP_CHECKSIGVERIFY <PAT_0> OP_CHECKSIG <PAT_1> OP_CHECKSIGADD ... <PAT_N-1> OP_CHECKSIGADD

34 + 34·N bytes. The count CHECKSIGADD leaves on the stack is the script's result: tapscript's
clean-stack rule wants one true item, so at least one PAT must sign (the measured design's
optional ``51 a2`` tail is redundant and this form leaves it out: 2 bytes less per batch, and one
template, not two, for verifiers to accept byte for byte). 1 <= N <= 998: consensus keeps the
1000-item stack limit in tapscript, and the N + 1 signatures plus the pushed TBS key must fit.

Witness of the batch input, bottom of the stack first:

    [sig_PAT(N-1), ..., sig_PAT1, sig_PAT0, sig_TBS, leaf, control_block]

so PAT i's 64-byte BIP340 signature (SIGHASH_DEFAULT) is witness item N-1-i, and a PAT that did not
sign has an empty item there. The control block is 33 bytes, (0xc0 | parity(Q)) ‖ P: one leaf,
no Merkle path. Numbers and pitfalls: ../shared/reference/batch-anchoring.md.

Hashing is embit's and BIP340's tagged hash; points are coincurve's (libsecp256k1).
"""
from __future__ import annotations

from typing import Sequence

import coincurve
from embit import compact
from embit.script import Script
from embit.transaction import SIGHASH, Transaction

from ..errors import MalformedInput
from .hashes import tagged_hash

LEAF_VERSION = 0xC0
#: Consensus bound of PAT keys in one leaf (stack limit 1000 = N + 1 signatures + the TBS push).
MAX_LEAF_KEYS = 998
_PUSH32, _CHECKSIGVERIFY, _CHECKSIG, _CHECKSIGADD = 0x20, 0xAD, 0xAC, 0xBA
_KEY_ITEM = 34                         # 0x20 ‖ 32-byte key ‖ opcode
CONTROL_BLOCK_SIZE = 33
SCHNORR_SIGNATURE_SIZE = 64


class LeafTemplateError(MalformedInput):
    """A script, control block or output that is not the batch form."""


def _xonly(key: bytes, what: str) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise LeafTemplateError(f"{what} must be a 32-byte x-only key")
    try:
        coincurve.PublicKeyXOnly(bytes(key))
    except ValueError:
        raise LeafTemplateError(f"{what} is not the x of a curve point") from None
    return bytes(key)


def leaf_script(tbs_key: bytes, pat_keys: Sequence[bytes]) -> bytes:
    """The leaf for ``tbs_key`` and the PATs' x-only keys in position order."""
    if not 1 <= len(pat_keys) <= MAX_LEAF_KEYS:
        raise LeafTemplateError(f"a batch leaf holds 1 to {MAX_LEAF_KEYS} PAT keys, not {len(pat_keys)}")
    if len(set(pat_keys)) != len(pat_keys):
        raise LeafTemplateError("a PAT key appears twice in the batch")
    parts = [bytes([_PUSH32]) + _xonly(tbs_key, "the TBS key") + bytes([_CHECKSIGVERIFY])]
    for position, key in enumerate(pat_keys):
        opcode = _CHECKSIG if position == 0 else _CHECKSIGADD
        parts.append(bytes([_PUSH32]) + _xonly(key, f"PAT key {position}") + bytes([opcode]))
    return b"".join(parts)


def parse_leaf(script: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """(TBS key, PAT keys) of a script that is the leaf template byte for byte.

    Keys are not checked to be points here: a leaf that confirmed has been executed, and the
    verifier's signature check under the PAT's own key is what binds it.
    """
    n, rest = divmod(len(script) - _KEY_ITEM, _KEY_ITEM)
    if len(script) < 2 * _KEY_ITEM or rest or not 1 <= n <= MAX_LEAF_KEYS:
        raise LeafTemplateError(f"a {len(script)}-byte script is not a batch leaf (34 + 34·N bytes)")
    keys = []
    for index in range(n + 1):
        item = script[index * _KEY_ITEM:(index + 1) * _KEY_ITEM]
        expected = _CHECKSIGVERIFY if index == 0 else _CHECKSIG if index == 1 else _CHECKSIGADD
        if item[0] != _PUSH32 or item[-1] != expected:
            raise LeafTemplateError(f"leaf item {index} is not `20 <key> {expected:02x}`")
        keys.append(item[1:33])
    return keys[0], tuple(keys[1:])


def tapleaf_hash(script: bytes) -> bytes:
    """BIP341: TaggedHash("TapLeaf", 0xc0 ‖ compactsize(len) ‖ script)."""
    return tagged_hash("TapLeaf", bytes([LEAF_VERSION]) + compact.to_bytes(len(script)) + script)


def output_key(internal_key: bytes, leaf_hash: bytes) -> tuple[bytes, int]:
    """Q = lift_x(P) + TaggedHash("TapTweak", P ‖ leaf_hash)·G as (Q.x, parity of Q.y)."""
    tweak = tagged_hash("TapTweak", _xonly(internal_key, "the internal key") + leaf_hash)
    key = coincurve.PublicKeyXOnly(internal_key)
    try:
        key.tweak_add(tweak)
    except ValueError:       # tweak >= n or Q at infinity: negligible, but never a silent wrong key
        raise LeafTemplateError("the taproot tweak is out of range") from None
    return key.format(), int(key.parity)


def p2tr_script(output_xonly: bytes) -> bytes:
    """OP_1 <32-byte output key>: a segwit v1 scriptPubKey."""
    return b"\x51\x20" + output_xonly


def control_block(internal_key: bytes, parity: int) -> bytes:
    return bytes([LEAF_VERSION | (parity & 1)]) + internal_key


def batch_output(internal_key: bytes, leaf: bytes) -> tuple[bytes, bytes]:
    """(scriptPubKey, control block) of the P2TR output whose only leaf is ``leaf``."""
    q, parity = output_key(internal_key, tapleaf_hash(leaf))
    return p2tr_script(q), control_block(internal_key, parity)


def check_control_block(control: bytes, leaf: bytes, spent_script: bytes) -> bytes:
    """The internal key of ``control`` after checking that it and ``leaf`` open ``spent_script``.

    :raises LeafTemplateError: not a 33-byte 0xc0 control block, or Q does not match the output.
    """
    if len(control) != CONTROL_BLOCK_SIZE or control[0] & 0xFE != LEAF_VERSION:
        raise LeafTemplateError("control block is not 33 bytes of leaf version 0xc0 (one leaf, no path)")
    internal = control[1:]
    q, parity = output_key(internal, tapleaf_hash(leaf))
    if spent_script != p2tr_script(q) or parity != control[0] & 1:
        raise LeafTemplateError("control block and leaf do not open the spent output's key")
    return internal


def script_path_sighash(tx: Transaction, input_index: int, spent: Sequence, leaf: bytes) -> bytes:
    """BIP341 script-path signature hash, SIGHASH_DEFAULT, ext_flag 1, key version 0, no
    code separator, no annex; ``spent`` holds every input's spent output (value, script_pubkey).

    embit computes it; tests compare it with an implementation written from the BIP's text."""
    if len(spent) != len(tx.vin):
        raise LeafTemplateError("the taproot sighash needs one spent output per input")
    tx.clear_cache()       # embit caches hash_prevouts & co.; callers may have changed the tx
    return tx.sighash_taproot(input_index, [Script(out.script_pubkey) for out in spent],
                              [out.value for out in spent], SIGHASH.DEFAULT, ext_flag=1,
                              script=Script(leaf), leaf_version=LEAF_VERSION)


def verify_schnorr(xonly_key: bytes, signature: bytes, message: bytes) -> bool:
    """BIP340 verification by libsecp256k1; False for anything malformed."""
    if len(signature) != SCHNORR_SIGNATURE_SIZE or len(message) != 32:
        return False
    try:
        return coincurve.PublicKeyXOnly(xonly_key).verify(signature, message)
    except (ValueError, TypeError):
        return False
