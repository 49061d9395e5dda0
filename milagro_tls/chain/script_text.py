"""Scripts as the explorers print them: Core's and Esplora's asm, type names, addresses, descriptors.

Two dialects because the two APIs we imitate disagree: Bitcoin Core's ``ScriptToAsmStr``
prints small pushes as numbers and decodes sighash bytes in scriptSigs
(``3044…01`` → ``3044…[ALL]``); Esplora (rust-bitcoin) prints every opcode by name
(``OP_0 OP_PUSHBYTES_20 …``). The tests hold both against real response bodies.
"""
from __future__ import annotations

from embit import base58, bech32
from embit.descriptor.checksum import add_checksum

from .network import Network

# (base58 P2PKH prefix, base58 P2SH prefix, bech32 hrp) per network.
_ADDRESS_PARAMS = {
    Network.MAINNET: (0x00, 0x05, "bc"),
    Network.TESTNET3: (0x6F, 0xC4, "tb"),
    Network.TESTNET4: (0x6F, 0xC4, "tb"),
    Network.SIGNET: (0x6F, 0xC4, "tb"),
    Network.REGTEST: (0x6F, 0xC4, "bcrt"),
}

OP_0, OP_PUSHDATA1, OP_PUSHDATA2, OP_PUSHDATA4, OP_1NEGATE = 0x00, 0x4C, 0x4D, 0x4E, 0x4F
OP_1, OP_16, OP_RETURN, OP_CHECKSIG, OP_CHECKMULTISIG = 0x51, 0x60, 0x6A, 0xAC, 0xAE

# Opcode names from 0x61 on, in Core's spelling; Esplora differs only where overridden below.
_NAMES = dict(enumerate((
    "OP_NOP OP_VER OP_IF OP_NOTIF OP_VERIF OP_VERNOTIF OP_ELSE OP_ENDIF OP_VERIFY OP_RETURN "
    "OP_TOALTSTACK OP_FROMALTSTACK OP_2DROP OP_2DUP OP_3DUP OP_2OVER OP_2ROT OP_2SWAP OP_IFDUP "
    "OP_DEPTH OP_DROP OP_DUP OP_NIP OP_OVER OP_PICK OP_ROLL OP_ROT OP_SWAP OP_TUCK OP_CAT "
    "OP_SUBSTR OP_LEFT OP_RIGHT OP_SIZE OP_INVERT OP_AND OP_OR OP_XOR OP_EQUAL OP_EQUALVERIFY "
    "OP_RESERVED1 OP_RESERVED2 OP_1ADD OP_1SUB OP_2MUL OP_2DIV OP_NEGATE OP_ABS OP_NOT "
    "OP_0NOTEQUAL OP_ADD OP_SUB OP_MUL OP_DIV OP_MOD OP_LSHIFT OP_RSHIFT OP_BOOLAND OP_BOOLOR "
    "OP_NUMEQUAL OP_NUMEQUALVERIFY OP_NUMNOTEQUAL OP_LESSTHAN OP_GREATERTHAN OP_LESSTHANOREQUAL "
    "OP_GREATERTHANOREQUAL OP_MIN OP_MAX OP_WITHIN OP_RIPEMD160 OP_SHA1 OP_SHA256 OP_HASH160 "
    "OP_HASH256 OP_CODESEPARATOR OP_CHECKSIG OP_CHECKSIGVERIFY OP_CHECKMULTISIG "
    "OP_CHECKMULTISIGVERIFY OP_NOP1 OP_CHECKLOCKTIMEVERIFY OP_CHECKSEQUENCEVERIFY OP_NOP4 OP_NOP5 "
    "OP_NOP6 OP_NOP7 OP_NOP8 OP_NOP9 OP_NOP10 OP_CHECKSIGADD").split(), start=0x61))
_NAMES[0x50] = "OP_RESERVED"
_ESPLORA_NAMES = {**_NAMES, 0xB1: "OP_CLTV", 0xB2: "OP_CSV", 0xFF: "OP_INVALIDOPCODE",
                  **{op: f"OP_RETURN_{op}" for op in range(0xBB, 0xFF)}}
_PUSHDATA_NAMES = {OP_PUSHDATA1: "OP_PUSHDATA1", OP_PUSHDATA2: "OP_PUSHDATA2", OP_PUSHDATA4: "OP_PUSHDATA4"}
_SIGHASH_NAMES = {0x01: "ALL", 0x81: "ALL|ANYONECANPAY", 0x02: "NONE",
                  0x82: "NONE|ANYONECANPAY", 0x03: "SINGLE", 0x83: "SINGLE|ANYONECANPAY"}
#: Core's MAX_SCRIPT_SIZE: a longer scriptPubKey can never be spent.
MAX_SCRIPT_SIZE = 10_000


def is_unspendable(script: bytes) -> bool:
    """Core's CScript::IsUnspendable: such outputs never enter the UTXO set."""
    return script[:1] == bytes([OP_RETURN]) or len(script) > MAX_SCRIPT_SIZE


def iter_ops(script: bytes):
    """Yield (opcode, pushed data or None); a truncated push yields (opcode, Ellipsis) and stops."""
    i, n = 0, len(script)
    while i < n:
        op = script[i]
        i += 1
        if op > OP_PUSHDATA4:
            yield op, None
            continue
        size, width = op, 0
        if op >= OP_PUSHDATA1:
            width = {OP_PUSHDATA1: 1, OP_PUSHDATA2: 2, OP_PUSHDATA4: 4}[op]
            if i + width > n:
                yield op, ...
                return
            size = int.from_bytes(script[i:i + width], "little")
        i += width
        if i + size > n:
            yield op, ...
            return
        yield op, script[i:i + size]
        i += size


def _script_num(data: bytes) -> int:
    """CScriptNum without the minimality check: little-endian sign-magnitude."""
    if not data:
        return 0
    value = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(value & ~(0x80 << (8 * (len(data) - 1))))
    return value


def is_strict_der_signature(sig: bytes) -> bool:
    """Core's IsValidSignatureEncoding (BIP66), the sighash byte included in ``sig``."""
    if len(sig) < 9 or len(sig) > 73 or sig[0] != 0x30 or sig[1] != len(sig) - 3:
        return False
    len_r = sig[3]
    if 5 + len_r >= len(sig):
        return False
    len_s = sig[5 + len_r]
    if len_r + len_s + 7 != len(sig) or sig[2] != 0x02 or len_r == 0 or sig[4] & 0x80:
        return False
    if len_r > 1 and sig[4] == 0 and not sig[5] & 0x80:
        return False
    if sig[len_r + 4] != 0x02 or len_s == 0 or sig[len_r + 6] & 0x80:
        return False
    return not (len_s > 1 and sig[len_r + 6] == 0 and not sig[len_r + 7] & 0x80)


def core_asm(script: bytes, sighash_decode: bool = False) -> str:
    """Bitcoin Core's ScriptToAsmStr; ``sighash_decode`` for scriptSigs (never for OP_RETURN data)."""
    out = []
    decode = sighash_decode and not (script[:1] == bytes([OP_RETURN]))
    for op, data in iter_ops(script):
        if data is ...:
            out.append("[error]")
            break
        if data is None:
            if op == OP_1NEGATE:
                out.append("-1")
            elif OP_1 <= op <= OP_16:
                out.append(str(op - OP_1 + 1))
            else:
                out.append(_NAMES.get(op, "OP_UNKNOWN"))
        elif len(data) <= 4:
            out.append(str(_script_num(data)))
        elif decode and is_strict_der_signature(data) and data[-1] in _SIGHASH_NAMES:
            out.append(data[:-1].hex() + f"[{_SIGHASH_NAMES[data[-1]]}]")
        else:
            out.append(data.hex())
    return " ".join(out)


def esplora_asm(script: bytes) -> str:
    """rust-bitcoin's Script::to_asm_string, which Esplora serves."""
    out = []
    for op, data in iter_ops(script):
        if data is ...:
            out.append("<unexpected end>")
            break
        if op == OP_0:
            out.append("OP_0")
        elif data is not None:
            name = f"OP_PUSHBYTES_{op}" if op < OP_PUSHDATA1 else _PUSHDATA_NAMES[op]
            out.append(f"{name} {data.hex()}")
        elif op == OP_1NEGATE:
            out.append("OP_PUSHNUM_NEG1")
        elif OP_1 <= op <= OP_16:
            out.append(f"OP_PUSHNUM_{op - OP_1 + 1}")
        else:
            out.append(_ESPLORA_NAMES.get(op, "OP_UNKNOWN"))
    return " ".join(out)


def witness_program(script: bytes) -> tuple[int, bytes] | None:
    """(version, program) when the script is a BIP141 witness program."""
    if 4 <= len(script) <= 42 and (script[0] == OP_0 or OP_1 <= script[0] <= OP_16) \
            and script[1] + 2 == len(script):
        return (0 if script[0] == OP_0 else script[0] - OP_1 + 1), script[2:]
    return None


def _is_pubkey(data) -> bool:
    return isinstance(data, bytes) and (
        (len(data) == 33 and data[0] in (2, 3)) or (len(data) == 65 and data[0] in (4, 6, 7)))


def _multisig(script: bytes) -> tuple[int, list[bytes]] | None:
    ops = list(iter_ops(script))
    if len(ops) < 4 or ops[-1] != (OP_CHECKMULTISIG, None):
        return None
    (m_op, m_data), (n_op, n_data) = ops[0], ops[-2]
    keys = [data for _, data in ops[1:-2]]
    if m_data is not None or n_data is not None or not (OP_1 <= m_op <= n_op <= OP_16):
        return None
    if n_op - OP_1 + 1 != len(keys) or not all(_is_pubkey(k) for k in keys):
        return None
    return m_op - OP_1 + 1, keys


def _is_push_only(script: bytes) -> bool:
    """Core's IsPushOnly: no opcode above OP_16 (OP_RESERVED counts as a push there) and no truncation."""
    return all(data is not ... and op <= OP_16 for op, data in iter_ops(script))


def core_type(script: bytes) -> str:
    """Core's Solver() type names (GetTxnOutputType)."""
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[-1] == 0x87:
        return "scripthash"
    wp = witness_program(script)
    if wp is not None:
        version, program = wp
        if version == 1 and program == b"\x4e\x73":
            return "anchor"
        if version == 0:
            return {20: "witness_v0_keyhash", 32: "witness_v0_scripthash"}.get(len(program), "nonstandard")
        if version == 1 and len(program) == 32:
            return "witness_v1_taproot"
        return "witness_unknown"
    if script[:1] == bytes([OP_RETURN]) and _is_push_only(script[1:]):
        return "nulldata"
    ops = list(iter_ops(script))
    if len(ops) == 2 and _is_pubkey(ops[0][1]) and ops[1] == (OP_CHECKSIG, None):
        return "pubkey"
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[-2:] == b"\x88\xac":
        return "pubkeyhash"
    if _multisig(script) is not None:
        return "multisig"
    return "nonstandard"


def esplora_type(script: bytes) -> str:
    """electrs' script_type() names."""
    kind = core_type(script)
    if not script:
        return "empty"
    if script[0] == OP_RETURN:
        return "op_return"
    names = {"pubkey": "p2pk", "pubkeyhash": "p2pkh", "scripthash": "p2sh",
             "witness_v0_keyhash": "v0_p2wpkh", "witness_v0_scripthash": "v0_p2wsh",
             "witness_v1_taproot": "v1_p2tr"}
    if kind in names:
        return names[kind]
    return "provably_unspendable" if script[0] == 0xFF or len(script) > MAX_SCRIPT_SIZE else "unknown"


def address(script: bytes, network: Network) -> str | None:
    """The address Core's ExtractDestination gives the script, or None (P2PK has none since v26)."""
    p2pkh, p2sh, hrp = _ADDRESS_PARAMS[network]
    kind = core_type(script)
    if kind == "pubkeyhash":
        return base58.encode_check(bytes([p2pkh]) + script[3:23])
    if kind == "scripthash":
        return base58.encode_check(bytes([p2sh]) + script[2:22])
    wp = witness_program(script)
    if wp is not None and kind != "nonstandard":
        return bech32.encode(hrp, wp[0], wp[1])
    return None


def address_to_script(addr: str, network: Network) -> bytes:
    """Decode an address of ``network`` to its scriptPubKey; ValueError for anything else."""
    p2pkh, p2sh, hrp = _ADDRESS_PARAMS[network]
    if addr.lower().startswith(hrp + "1"):  # bech32(m); the codec rejects mixed case
        try:
            version, program = bech32.decode(hrp, addr)
        except Exception:
            version = None
        if version is None:
            raise ValueError(f"invalid {network.label} address {addr!r}")
        return bytes([version + OP_1 - 1 if version else OP_0, len(program)]) + bytes(program)
    try:
        payload = base58.decode_check(addr)
    except Exception:
        raise ValueError(f"invalid {network.label} address {addr!r}") from None
    if len(payload) == 21 and payload[0] == p2pkh:
        return b"\x76\xa9\x14" + payload[1:] + b"\x88\xac"
    if len(payload) == 21 and payload[0] == p2sh:
        return b"\xa9\x14" + payload[1:] + b"\x87"
    raise ValueError(f"invalid {network.label} address {addr!r}")


def _valid_xonly(key: bytes) -> bool:
    from coincurve.keys import PublicKeyXOnly
    try:
        PublicKeyXOnly(key)
        return True
    except ValueError:
        return False


def descriptor(script: bytes, network: Network) -> str:
    """Core's InferDescriptor for a bare scriptPubKey (no wallet keys known), with checksum."""
    kind = core_type(script)
    if kind == "pubkey":
        desc = f"pk({script[1:-1].hex()})"
    elif kind == "multisig":
        m, keys = _multisig(script)
        desc = f"multi({m},{','.join(k.hex() for k in keys)})"
    elif kind == "witness_v1_taproot" and _valid_xonly(script[2:]):
        desc = f"rawtr({script[2:].hex()})"
    elif (addr := address(script, network)) is not None:
        desc = f"addr({addr})"
    else:
        desc = f"raw({script.hex()})"
    return add_checksum(desc)
