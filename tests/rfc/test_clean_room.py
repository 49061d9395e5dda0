"""A clean-room check of the draft's test vectors, from the draft's text and values alone.

Nothing here comes from milagro_tls: only hashlib, hmac, re, the pure-Python ``ecdsa``
package's curve arithmetic, and pathlib and pytest to find and run. The suite table, the
key lengths, the PRF labels, the NIZK generator and anonymous UserID are read from the
draft's prose, and every vector is recomputed by the formulas the draft states: the exact
nonce point from the anchor's signature (the ECDSA verification equation), the owner's k,
each premaster, each NIZK, the extended master secret, the key block and the client's
Finished. A meta-test flips each value in turn and requires the checker to fail, so that
it cannot pass by checking nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest
from ecdsa import SECP256k1, VerifyingKey
from ecdsa.ellipticcurve import INFINITY, Point
from ecdsa.util import sigdecode_string, sigencode_string

DRAFT = (Path(__file__).resolve().parents[2] / "rfc" / "draft-milagro-tls-bitcoin-ake-00.md").read_text()
CURVE, GENERATOR, ORDER = SECP256k1.curve, SECP256k1.generator, SECP256k1.order
FIELD = CURVE.p()


# ---------------------------------------------------------------- what the draft's text says

def _flat(text: str) -> str:
    return " ".join(text.split())


def _suites() -> dict[str, dict]:
    """Suite table: code -> name, family, cipher, PRF hash (all spelled by the name)."""
    suites = {}
    for code, name in re.findall(r"^\| 0x([0-9A-F]{4}) \| (TLS_\w+) \|$", DRAFT, re.M):
        family, cipher, prf = re.fullmatch(r"TLS_(ECDH_BTC|YAK_BTC)_WITH_(\w+)_(SHA256|SHA384)", name).groups()
        suites[code.lower()] = {"name": name, "family": family, "cipher": cipher, "prf": prf.lower()}
    return suites


def _key_lengths() -> dict[str, tuple[int, int]]:
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", DRAFT, re.M)
    return {cipher: (int(key), int(iv)) for cipher, key, iv, _explicit, _block in rows}


TEXT = _flat(DRAFT)
SUITES = _suites()
KEY_LENGTHS = _key_lengths()
EMS_LABEL = re.search(r'master_secret = PRF\(pre_master_secret, "([^"]+)",', TEXT).group(1).encode()
KEY_EXPANSION_LABEL = re.search(r'key_block = PRF\(master_secret, "([^"]+)",', TEXT).group(1).encode()
CLIENT_FINISHED_LABEL = re.search(r'PRF\(master_secret, "([^"]+)", session_hash\)', TEXT).group(1).encode()
NIZK_G = bytes.fromhex("".join(re.search(r"G is ([0-9a-f]+) ([0-9a-f]+)", TEXT).groups()))
ANONYMOUS_USER_ID = re.search(r'anonymous client the (\d+) ASCII bytes "([^"]+)"', TEXT).group(2).encode()
MARKER_MAGIC = bytes.fromhex(re.search(r'"MILAGRO": ((?:[0-9a-f]{2} )+)', TEXT).group(1).replace(" ", ""))


def parse_records(draft: str) -> list[dict[str, str]]:
    """Every ``name: value`` record between the draft's generated-vector markers."""
    block = draft[draft.index("<!-- BEGIN GENERATED VECTORS -->"):draft.index("<!-- END GENERATED VECTORS -->")]
    records = []
    for body in re.findall(r"^~~~~\n(.*?)^~~~~$", block, re.M | re.S):
        record: dict[str, str] = {}
        name = None
        for line in body.splitlines():
            if continuation := re.fullmatch(r"  ([0-9a-f]+)", line):
                record[name] += continuation.group(1)
                continue
            name, value = re.fullmatch(r"([a-z0-9_]+):(?: (\S+))?", line).groups()
            assert name not in record, f"{name} twice in one record"
            record[name] = value or ""
        records.append(record)
    return records


RECORDS = parse_records(DRAFT)


# ---------------------------------------------------------------- secp256k1 by the draft's rules

def decode_point(data: bytes) -> Point:
    """A 33-byte compressed point, refused unless prefix, x < p and curve membership hold."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise ValueError("not a 33-byte compressed point")
    x = int.from_bytes(data[1:], "big")
    if x >= FIELD:
        raise ValueError("x is not below p")
    y = pow((x ** 3 + 7) % FIELD, (FIELD + 1) // 4, FIELD)
    if y * y % FIELD != (x ** 3 + 7) % FIELD:
        raise ValueError("x is not on the curve")
    if y % 2 != data[0] - 2:
        y = FIELD - y
    return Point(CURVE, x, y, ORDER)


def encode_point(point) -> bytes:
    assert point != INFINITY, "point at infinity"
    return bytes([2 + (point.y() & 1)]) + point.x().to_bytes(32, "big")


def x_bytes(point) -> bytes:
    assert point != INFINITY, "point at infinity"
    return point.x().to_bytes(32, "big")


def scalar(value: str) -> int:
    number = int(value, 16)
    assert len(value) == 64 and 0 < number < ORDER, "scalar out of range"
    return number


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def p_hash(name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 section 5, as the draft's key schedule restates it."""
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, name).digest()
        out += hmac.new(secret, a + seed, name).digest()
    return out[:length]


def prf(name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    return p_hash(name, secret, label + seed, length)


# ---------------------------------------------------------------- Bitcoin transactions

class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), "transaction truncated"
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def varint(self) -> int:
        first = self.uint(1)
        size = {0xfd: 2, 0xfe: 4, 0xff: 8}.get(first)
        return self.uint(size) if size else first


def varint(n: int) -> bytes:
    assert n < 0xfd
    return bytes([n])


def parse_segwit_tx(raw: bytes) -> dict:
    r = Reader(raw)
    tx = {"version": r.take(4)}
    assert r.take(2) == b"\x00\x01", "not a segwit serialization"
    tx["inputs"] = [{"outpoint": r.take(36), "script_sig": r.take(r.varint()), "sequence": r.take(4)}
                    for _ in range(r.varint())]
    tx["outputs"] = [{"value": r.take(8), "script": r.take(r.varint())} for _ in range(r.varint())]
    for tx_in in tx["inputs"]:
        tx_in["witness"] = [r.take(r.varint()) for _ in range(r.varint())]
    tx["locktime"] = r.take(4)
    assert r.pos == len(raw), "trailing bytes after the transaction"
    return tx


def bip143_sighash(tx: dict, index: int, pubkey: bytes, value: int, sighash_type: int = 1) -> bytes:
    """BIP143 for a P2WPKH input (scriptCode 0x76 0xa9 0x14 HASH160(Q) 0x88 0xac)."""
    prevouts = sha256d(b"".join(i["outpoint"] for i in tx["inputs"]))
    sequences = sha256d(b"".join(i["sequence"] for i in tx["inputs"]))
    outputs = sha256d(b"".join(o["value"] + varint(len(o["script"])) + o["script"] for o in tx["outputs"]))
    script_code = bytes.fromhex("76a914") + hash160(pubkey) + bytes.fromhex("88ac")
    this = tx["inputs"][index]
    preimage = (tx["version"] + prevouts + sequences + this["outpoint"] + varint(len(script_code)) + script_code
                + value.to_bytes(8, "little") + this["sequence"] + outputs + tx["locktime"]
                + sighash_type.to_bytes(4, "little"))
    return sha256d(preimage)


def parse_strict_der(der: bytes) -> tuple[int, int]:
    assert der[0] == 0x30 and der[1] == len(der) - 2, "not DER"
    values, pos = [], 2
    for _ in range(2):
        assert der[pos] == 0x02, "DER integer expected"
        length = der[pos + 1]
        body = der[pos + 2:pos + 2 + length]
        assert len(body) == length and not body[0] & 0x80, "bad DER integer"
        assert not (length > 1 and body[0] == 0 and not body[1] & 0x80), "non-minimal DER integer"
        values.append(int.from_bytes(body, "big"))
        pos += 2 + length
    assert pos == len(der), "trailing DER bytes"
    return values[0], values[1]


# ---------------------------------------------------------------- the checkers

def check_anchor(record: dict) -> None:
    """Section 4 and 5 of the draft: the anchor, its marker and seal, R and k."""
    d, k = scalar(record["identity_private_key"]), scalar(record["nonce_k"])
    q_bytes = h(record["identity_pubkey"])
    q = decode_point(q_bytes)
    assert GENERATOR * d == q, "d*G is not the identity key"
    certificate = h(record["certificate"])
    assert hashlib.sha256(certificate).hexdigest() == record["certificate_sha256"]
    tx = parse_segwit_tx(h(record["anchor_tx"]))
    markers = [o for o in tx["outputs"] if o["script"][:1] == b"\x6a" and o["script"][2:9] == MARKER_MAGIC]
    assert [o["script"] for o in markers] == [b"\x6a\x28" + MARKER_MAGIC + b"\x01" +
                                              h(record["certificate_sha256"])], "marker"
    seal = b"\x00\x14" + hash160(q_bytes)
    assert any(o["script"] == seal for o in tx["outputs"]), "no seal output"
    tx_in = tx["inputs"][0]
    assert tx_in["script_sig"] == b"" and len(tx_in["witness"]) == 2, "not a native P2WPKH spend"
    signature, pubkey = tx_in["witness"]
    assert pubkey == q_bytes and signature[-1] == 0x01, "wrong key or not SIGHASH_ALL"
    r, s = parse_strict_der(signature[:-1])
    assert (f"{r:064x}", f"{s:064x}") == (record["signature_r"], record["signature_s"])
    z = bip143_sighash(tx, 0, q_bytes, int(record["spent_value"], 16))
    assert z.hex() == record["sighash"], "BIP143 sighash"
    # R = s^-1*z*G + s^-1*r*Q, and x(R) mod n = r: the ECDSA verification equation
    s_inv = pow(s, -1, ORDER)
    nonce_point = GENERATOR * (int.from_bytes(z, "big") * s_inv % ORDER) + q * (r * s_inv % ORDER)
    assert nonce_point.x() % ORDER == r
    assert encode_point(nonce_point).hex() == record["nonce_point"]
    assert VerifyingKey.from_string(q_bytes, curve=SECP256k1).verify_digest(
        sigencode_string(r, s, ORDER), z, sigdecode=sigdecode_string)
    # the owner's k = s^-1*(z + r*d), k*G = R, and k gives d back: d = (s*k - z)/r
    assert k == s_inv * (int.from_bytes(z, "big") + r * d) % ORDER
    assert GENERATOR * k == nonce_point
    assert (s * k - int.from_bytes(z, "big")) * pow(r, -1, ORDER) % ORDER == d


def nizk_challenge(public_point: bytes, commitment: bytes, user_id: bytes, other_info: bytes) -> int:
    transcript = b"".join(len(item).to_bytes(4, "big") + item
                          for item in (NIZK_G, commitment, public_point, user_id, other_info))
    return int.from_bytes(hashlib.sha256(transcript).digest(), "big") % ORDER


def nizk_verifies(public_point: bytes, commitment: bytes, response: bytes, user_id: bytes, other_info: bytes) -> bool:
    """The draft's verifier: A and V valid points, 0 < r < n, V = r*G + c*A (not infinity)."""
    try:
        a, v = decode_point(public_point), decode_point(commitment)
    except ValueError:
        return False
    r = int.from_bytes(response, "big")
    if len(response) != 32 or not 0 < r < ORDER:
        return False
    expected = GENERATOR * r + a * nizk_challenge(public_point, commitment, user_id, other_info)
    return expected != INFINITY and expected == v


def _check_nizk(record: dict, side: str, user_id: bytes, other_info: bytes) -> None:
    x = scalar(record[f"{side}_ephemeral"])
    big_x = h(record[f"{side}_ephemeral_point"])
    assert encode_point(GENERATOR * x) == big_x
    assert h(record[f"{side}_nizk_user_id"]) == user_id, "UserID"
    v, commitment = scalar(record[f"{side}_nizk_nonce"]), h(record[f"{side}_nizk_commitment"])
    assert encode_point(GENERATOR * v) == commitment
    c = nizk_challenge(big_x, commitment, user_id, other_info)
    assert f"{c:064x}" == record[f"{side}_nizk_challenge"]
    response = h(record[f"{side}_nizk_response"])
    assert int.from_bytes(response, "big") == (v - x * c) % ORDER
    assert nizk_verifies(big_x, commitment, response, user_id, other_info), "NIZK does not verify"


def check_handshake(record: dict, anchors: dict[str, dict]) -> None:
    """One suite and mode: premaster, NIZKs, master secret, key block, client Finished."""
    suite = SUITES[record["suite"]]
    assert record["suite_name"] == suite["name"] and record["prf_hash"] == suite["prf"]
    full = record["mode"] == "full"
    assert record["mode"] in ("full", "server-only")
    sides = ("client", "server") if full else ("server",)
    assert ("client_anchor" in record) == full
    keys = {}
    for side in sides:
        anchor = anchors[record[f"{side}_anchor"]]
        k, big_r = scalar(record[f"{side}_nonce_k"]), h(record[f"{side}_nonce_point"])
        assert (record[f"{side}_nonce_k"], record[f"{side}_nonce_point"]) == (anchor["nonce_k"], anchor["nonce_point"])
        assert encode_point(GENERATOR * k) == big_r
        keys[side] = (k, decode_point(big_r), hashlib.sha256(h(anchor["certificate"])).digest())
    client_random, server_random = h(record["client_random"]), h(record["server_random"])
    assert len(client_random) == len(server_random) == 32
    k_s, r_s, _ = keys["server"]

    if suite["family"] == "ECDH_BTC":
        if full:
            k_c, r_c, _ = keys["client"]
            views = [r_s * k_c, r_c * k_s]
        else:
            e, big_e = scalar(record["client_ephemeral"]), h(record["client_ephemeral_point"])
            assert encode_point(GENERATOR * e) == big_e
            views = [r_s * e, decode_point(big_e) * k_s]
    else:
        other_info = client_random + server_random
        _check_nizk(record, "server", keys["server"][2], other_info)
        _check_nizk(record, "client", keys["client"][2] if full else ANONYMOUS_USER_ID, other_info)
        x_c, x_s = scalar(record["client_ephemeral"]), scalar(record["server_ephemeral"])
        big_x_c, big_x_s = decode_point(h(record["client_ephemeral_point"])), decode_point(h(record["server_ephemeral_point"]))
        if full:
            k_c, r_c, _ = keys["client"]
            views = [(r_s + big_x_s) * ((k_c + x_c) % ORDER), (r_c + big_x_c) * ((k_s + x_s) % ORDER)]
        else:
            views = [(r_s + big_x_s) * x_c, big_x_c * ((k_s + x_s) % ORDER)]
    assert {x_bytes(view).hex() for view in views} == {record["premaster"]}, "premaster"

    name = suite["prf"]
    premaster, session_hash = h(record["premaster"]), h(record["session_hash"])
    assert len(session_hash) == hashlib.new(name).digest_size
    master = prf(name, premaster, EMS_LABEL, session_hash, 48)
    assert master.hex() == record["master_secret"], "extended master secret"
    key_length, iv_length = KEY_LENGTHS[suite["cipher"]]
    block = prf(name, master, KEY_EXPANSION_LABEL, server_random + client_random, 2 * (key_length + iv_length))
    assert block.hex() == record["key_block"], "key block"
    parts = [block[:key_length], block[key_length:2 * key_length],
             block[2 * key_length:2 * key_length + iv_length], block[2 * key_length + iv_length:]]
    assert [p.hex() for p in parts] == [record[f] for f in ("client_write_key", "server_write_key",
                                                            "client_write_iv", "server_write_iv")]
    assert prf(name, master, CLIENT_FINISHED_LABEL, session_hash, 12).hex() == record["client_verify_data"]


def check_locator(record: dict) -> None:
    encoding = (h(record["version"]) + h(record["network"]) + h(record["kind"]) + h(record["txid"]) + h(record["input_index"])
                + h(record["block_hash"]) + (0).to_bytes(2, "big"))
    assert len(h(record["txid"])) == len(h(record["block_hash"])) == 32
    assert encoding.hex() == record["encoding"]
    decode_locator(h(record["encoding"]))


def decode_locator(raw: bytes) -> None:
    """The draft's rules for a p2wpkh locator; raise ValueError for anything else."""
    if len(raw) < 71 or raw[0] != 1 or raw[1] > 4 or raw[2] != 1:
        raise ValueError("locator version, network or kind")
    if len(raw) != 71 + int.from_bytes(raw[69:71], "big") or len(raw) != 71:
        raise ValueError("locator length, or a p2wpkh locator with a body")


def check_invalid(record: dict) -> None:
    """Each invalid value is refused by the draft's rules."""
    kind = record["record"]
    if kind == "invalid-point":
        with pytest.raises(ValueError):
            decode_point(h(record["point"]))
    elif kind == "invalid-proof":
        assert not nizk_verifies(*(h(record[f]) for f in ("public_point", "commitment", "response",
                                                          "user_id", "other_info")))
    elif kind == "invalid-yak-premaster":
        total = decode_point(h(record["peer_nonce_point"])) + decode_point(h(record["peer_ephemeral"]))
        assert total == INFINITY, "R + X is not infinity: this premaster would not be refused"
    elif kind == "invalid-locator":
        with pytest.raises(ValueError):
            decode_locator(h(record["encoding"]))
    else:
        raise AssertionError(f"unknown record {kind}")


# ---------------------------------------------------------------- taproot batches and the Merkle tree

def tagged(tag: str, data: bytes) -> bytes:
    """BIP340's TaggedHash(tag, data) = SHA256(SHA256(tag) || SHA256(tag) || data)."""
    digest = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(digest + digest + data).digest()


def _draft_tag(name: str) -> str:
    """The tag the draft gives a Merkle hash: ``leaf_hash(d) = TaggedHash("milagro/merkle/leaf", ...``."""
    return re.search(rf'{re.escape(name)} *= TaggedHash\("([^"]+)"', TEXT).group(1)


MERKLE_LEAF_TAG, MERKLE_NODE_TAG, MERKLE_EMPTY_TAG = (_draft_tag("leaf_hash(d)"), _draft_tag("node_hash(l,r)"),
                                                      _draft_tag("MTH({})"))
#: The leaf template's opcodes, read from the draft: 0x20 T 0xad, 0x20 K_0 0xac, 0x20 K_i 0xba.
LEAF_OPCODES = tuple(int(re.search(rf"0x20 {key} 0x([0-9a-f]{{2}})", TEXT).group(1), 16) for key in ("T", "K_0", "K_i"))


def lift_x(x: bytes) -> Point:
    return decode_point(b"\x02" + x)


def bip340_verifies(key: bytes, message: bytes, signature: bytes) -> bool:
    """BIP340 verification from the BIP's text: s*G - e*P = R, even y, x(R) = r."""
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if r >= FIELD or s >= ORDER:
        return False
    e = int.from_bytes(tagged("BIP0340/challenge", signature[:32] + key + message), "big") % ORDER
    point = GENERATOR * s + lift_x(key) * (ORDER - e)
    return point != INFINITY and point.y() % 2 == 0 and point.x() == r


def merkle_leaf(data: bytes) -> bytes:
    return tagged(MERKLE_LEAF_TAG, len(data).to_bytes(4, "big") + data)


def merkle_node(left: bytes, right: bytes) -> bytes:
    return tagged(MERKLE_NODE_TAG, left + right)


def merkle_root(leaves: list[bytes]) -> bytes:
    """MTH of the draft (RFC 9162's shape, recursively): split at the largest power of two < n."""
    if not leaves:
        return tagged(MERKLE_EMPTY_TAG, b"")
    if len(leaves) == 1:
        return merkle_leaf(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle_node(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def merkle_path(leaves: list[bytes], index: int) -> list[bytes]:
    """RFC 9162 section 2.1.3.1 PATH(m, D[n]), lowest sibling first."""
    if len(leaves) <= 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if index < k:
        return merkle_path(leaves[:k], index) + [merkle_root(leaves[k:])]
    return merkle_path(leaves[k:], index - k) + [merkle_root(leaves[:k])]


def merkle_verify(data: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2 with the draft's hashes; returns the root the path leads to."""
    assert index < size, "index outside the tree"
    fn, sn, r = index, size - 1, merkle_leaf(data)
    for p in path:
        assert sn != 0, "path longer than the tree"
        if fn & 1 or fn == sn:
            r = merkle_node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = merkle_node(r, p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "path shorter than the tree"
    return r


def decode_inclusion_proof(raw: bytes) -> tuple[int, int, list[bytes]]:
    assert len(raw) >= 9, "inclusion proof header"
    index, size, count = int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:8], "big"), raw[8]
    assert len(raw) == 9 + 32 * count, "inclusion proof length"
    return index, size, [raw[9 + 32 * i:41 + 32 * i] for i in range(count)]


def leaf_keys(leaf: bytes) -> tuple[bytes, list[bytes]]:
    """(T, [K_0, ...]) of a leaf that is the draft's template byte for byte."""
    n, rest = divmod(len(leaf) - 34, 34)
    assert rest == 0 and 1 <= n <= 998, "leaf length is not 34 + 34*N"
    keys = []
    for i in range(n + 1):
        item = leaf[34 * i:34 * i + 34]
        opcode = LEAF_OPCODES[min(i, 2)]
        assert item[0] == 0x20 and item[33] == opcode, f"leaf item {i} is not the template"
        keys.append(item[1:33])
    return keys[0], keys[1:]


def taproot_output(internal: bytes, leaf: bytes) -> tuple[bytes, int]:
    leaf_hash = tagged("TapLeaf", b"\xc0" + varint(len(leaf)) + leaf)
    tweak = int.from_bytes(tagged("TapTweak", internal + leaf_hash), "big")
    assert tweak < ORDER
    q = lift_x(internal) + GENERATOR * tweak
    return x_bytes(q), q.y() & 1


def bip341_sighash(tx: dict, index: int, spent: list[tuple[int, bytes]], leaf: bytes) -> bytes:
    """BIP341 SigMsg(0x00, ext_flag 1) with BIP342's extension, no annex, no code separator."""
    sha = lambda data: hashlib.sha256(data).digest()  # noqa: E731
    msg = b"\x00" + b"\x00" + tx["version"] + tx["locktime"]
    msg += sha(b"".join(i["outpoint"] for i in tx["inputs"]))
    msg += sha(b"".join(value.to_bytes(8, "little") for value, _ in spent))
    msg += sha(b"".join(varint(len(script)) + script for _, script in spent))
    msg += sha(b"".join(i["sequence"] for i in tx["inputs"]))
    msg += sha(b"".join(o["value"] + varint(len(o["script"])) + o["script"] for o in tx["outputs"]))
    msg += bytes([2]) + index.to_bytes(4, "little")                 # spend_type: ext_flag 1, no annex
    msg += tagged("TapLeaf", b"\xc0" + varint(len(leaf)) + leaf) + b"\x00" + b"\xff\xff\xff\xff"
    return tagged("TapSighash", msg)


def _pat_keys(record: dict) -> list[bytes]:
    return [h(record[f"pat_{i}_key"]) for i in range(sum(1 for name in record if re.fullmatch(r"pat_\d+_key", name)))]


def check_batch(record: dict) -> None:
    """The funding output of a batch: leaf template, tapleaf hash, output key, control block."""
    leaf, tbs = h(record["leaf_script"]), h(record["tbs_key"])
    assert leaf_keys(leaf) == (tbs, _pat_keys(record)), "leaf keys"
    assert tagged("TapLeaf", b"\xc0" + varint(len(leaf)) + leaf).hex() == record["tapleaf_hash"]
    q, parity = taproot_output(tbs, leaf)
    assert (q.hex(), f"{parity:02x}") == (record["output_key"], record["output_parity"])
    assert record["script_pubkey"] == "5120" + q.hex()
    assert record["control_block"] == f"{0xc0 | parity:02x}" + tbs.hex()


def check_batch_signing(record: dict) -> None:
    """The unsigned batch, its sighash, every signature, and the witness of the signed batch."""
    leaf, tbs, keys = h(record["leaf_script"]), h(record["tbs_key"]), _pat_keys(record)
    assert leaf_keys(leaf) == (tbs, keys), "leaf keys"
    script_pubkey = h(record["script_pubkey"])
    q, parity = taproot_output(tbs, leaf)
    assert script_pubkey == b"\x51\x20" + q and h(record["control_block"]) == bytes([0xc0 | parity]) + tbs
    unsigned = h(record["unsigned_tx"])
    # The unsigned transaction without witness: version, inputs, outputs, locktime.
    r = Reader(unsigned)
    tx = {"version": r.take(4)}
    tx["inputs"] = [{"outpoint": r.take(36), "script_sig": r.take(r.varint()), "sequence": r.take(4)}
                    for _ in range(r.varint())]
    tx["outputs"] = [{"value": r.take(8), "script": r.take(r.varint())} for _ in range(r.varint())]
    tx["locktime"] = r.take(4)
    assert r.pos == len(unsigned)
    markers = [o["script"] for o in tx["outputs"] if o["script"][:1] == b"\x6a" and o["script"][2:9] == MARKER_MAGIC]
    assert markers == [b"\x6a\x28" + MARKER_MAGIC + b"\x02" + h(record["batch_root"])], "one 0x02 marker"
    m = bip341_sighash(tx, 0, [(int(record["spent_value"], 16), script_pubkey)], leaf)
    assert m.hex() == record["sighash"], "BIP341 script-path sighash"
    signatures = [h(record[f"pat_{i}_signature"]) for i in range(len(keys))]
    assert all(bip340_verifies(key, m, sig) for key, sig in zip(keys, signatures)), "a PAT signature"
    assert bip340_verifies(tbs, m, h(record["tbs_signature"])), "the TBS signature"
    absent = {int(i) for i in record["absent"].split(",") if i}
    assert absent <= set(range(len(keys))), "absent names a position outside the leaf"
    signed = parse_segwit_tx(h(record["batch_tx"]))
    assert {k: v for k, v in signed.items() if k != "inputs"} == {k: v for k, v in tx.items() if k != "inputs"}
    assert [{k: v for k, v in i.items() if k != "witness"} for i in signed["inputs"]] == tx["inputs"]
    n = len(keys)
    expected = [b"" if i in absent else signatures[i] for i in reversed(range(n))]
    assert signed["inputs"][0]["witness"] == expected + [h(record["tbs_signature"]), leaf, h(record["control_block"])]


def check_batch_nonce(record: dict) -> None:
    """R = lift_x(sig[0:32]) and k = s - e*d' with k*G = R."""
    d, k = scalar(record["pat_private_key"]), scalar(record["nonce_k"])
    key, signature, m = h(record["pat_key"]), h(record["signature"]), h(record["sighash"])
    public = GENERATOR * d
    assert x_bytes(public) == key, "d*G is not the PAT key"
    assert bip340_verifies(key, m, signature)
    d_even = d if public.y() % 2 == 0 else ORDER - d
    e = int.from_bytes(tagged("BIP0340/challenge", signature[:32] + key + m), "big") % ORDER
    assert k == (int.from_bytes(signature[32:], "big") - e * d_even) % ORDER
    assert encode_point(lift_x(signature[:32])).hex() == record["nonce_point"]
    assert encode_point(GENERATOR * k) == h(record["nonce_point"])


def check_batch_locator(record: dict) -> None:
    encoding = h(record["encoding"])
    body = h(record["position"]) + h(record["merkle_index"]) + h(record["merkle_size"])
    path = h(record["merkle_path"])
    body += bytes([len(path) // 32]) + path
    fixed = (h(record["version"]) + h(record["network"]) + h(record["kind"]) + h(record["txid"])
             + h(record["input_index"]) + h(record["block_hash"]))
    assert len(h(record["position"])) == 2 and len(h(record["input_index"])) == 2
    assert encoding == fixed + len(body).to_bytes(2, "big") + body
    assert encoding[0] == 1 and encoding[1] <= 4 and encoding[2] == 2, "version, network, kind taproot_batch"
    index, size, hashes = decode_inclusion_proof(encoding[73:])
    certificate = h(record["certificate"])
    digest = hashlib.sha256(certificate).digest()
    assert digest.hex() == record["certificate_sha256"]
    assert merkle_verify(digest, index, size, hashes).hex() == record["batch_root"]


def check_merkle(record: dict) -> None:
    kind = record["record"]
    if kind == "merkle-empty":
        assert merkle_root([]).hex() == record["root"]
        return
    def leaf_data(value: str) -> bytes:
        return b"" if value == "(empty)" else h(value)
    if kind == "merkle-tree":
        size = int(record["size"], 16)
        leaves = [leaf_data(record[f"leaf_{i}"]) for i in range(size)]
        assert f"leaf_{size}" not in record
        assert [merkle_leaf(leaf).hex() for leaf in leaves] == [record[f"leaf_hash_{i}"] for i in range(size)]
        assert merkle_root(leaves).hex() == record["root"]
        return
    index, size = int(record["index"], 16), int(record["size"], 16)
    path = h(record["path"])
    hashes = [path[i:i + 32] for i in range(0, len(path), 32)]
    assert merkle_verify(leaf_data(record["leaf"]), index, size, hashes).hex() == record["root"]
    assert decode_inclusion_proof(h(record["encoding"])) == (index, size, hashes)
    assert h(record["encoding"])[:8] == h(record["index"]) + h(record["size"])


BATCH_CHECKERS = {"batch": check_batch, "batch-signing": check_batch_signing, "batch-nonce": check_batch_nonce,
                  "batch-locator": check_batch_locator, "merkle-empty": check_merkle, "merkle-tree": check_merkle,
                  "merkle-inclusion": check_merkle}


def check(record: dict, anchors: dict[str, dict]) -> None:
    kind = record["record"]
    if kind == "anchor":
        check_anchor(record)
    elif kind == "handshake":
        check_handshake(record, anchors)
    elif kind == "locator":
        check_locator(record)
    elif kind in BATCH_CHECKERS:
        BATCH_CHECKERS[kind](record)
    else:
        check_invalid(record)


ANCHORS = {r["label"]: r for r in RECORDS if r["record"] == "anchor"}


def _ids(records):
    return [f"{r['record']}-{r.get('suite', r.get('label', i))}-{r.get('mode', '')}".rstrip("-")
            for i, r in enumerate(records)]


# ---------------------------------------------------------------- the tests

def test_the_draft_has_every_suite_and_mode_and_both_anchors():
    handshakes = {(r["suite"], r["mode"]) for r in RECORDS if r["record"] == "handshake"}
    assert handshakes == {(code, mode) for code in SUITES for mode in ("full", "server-only")}
    assert len(SUITES) == 6 and set(ANCHORS) == {"client", "server"}
    assert {ANCHORS[label]["nonce_point"][:2] for label in ANCHORS} == {"02", "03"}, "both parities of R"
    assert set(KEY_LENGTHS) == {s["cipher"] for s in SUITES.values()}


@pytest.mark.parametrize("record", RECORDS, ids=_ids(RECORDS))
def test_vector_recomputes_from_the_draft(record):
    check(record, ANCHORS)


def _flip(value: str) -> str:
    return value[:-1] + f"{int(value[-1], 16) ^ 1:x}"


_HEX = re.compile(r"[0-9a-f]+")
_CHECKED = [r for r in RECORDS if r["record"] in ("anchor", "handshake", "locator", *BATCH_CHECKERS)]
_FLIPS = [(i, name) for i, r in enumerate(_CHECKED) for name, value in r.items()
          if name not in ("record", "label") and _HEX.fullmatch(value)]


@pytest.mark.parametrize("index, name", _FLIPS, ids=[f"{_ids(_CHECKED)[i]}:{n}" for i, n in _FLIPS])
def test_checker_refuses_each_value_with_one_bit_flipped(index, name):
    record = dict(_CHECKED[index], **{name: _flip(_CHECKED[index][name])})
    anchors = dict(ANCHORS)
    if record["record"] == "anchor":
        anchors[record["label"]] = record
    with pytest.raises((AssertionError, ValueError, KeyError)):
        check(record, anchors)


def test_checker_refuses_a_flipped_anchor_through_the_handshakes_that_use_it():
    """A handshake record repeats its anchors' R and k: both copies are compared."""
    anchors = {label: dict(a, nonce_k=_flip(a["nonce_k"])) for label, a in ANCHORS.items()}
    for record in (r for r in RECORDS if r["record"] == "handshake"):
        with pytest.raises(AssertionError):
            check_handshake(record, anchors)


def test_checker_refuses_each_invalid_value_made_valid():
    """The invalid records are checked for being refused: a valid value in one must fail that check."""
    valid = next(r for r in RECORDS if r["record"] == "handshake" and r["suite_name"].startswith("TLS_YAK"))
    good_point = {"record": "invalid-point", "point": valid["server_nonce_point"]}
    with pytest.raises(pytest.fail.Exception):
        check_invalid(good_point)
    good_proof = {"record": "invalid-proof", "public_point": valid["client_ephemeral_point"],
                  "commitment": valid["client_nizk_commitment"], "response": valid["client_nizk_response"],
                  "user_id": valid["client_nizk_user_id"],
                  "other_info": valid["client_random"] + valid["server_random"]}
    with pytest.raises(AssertionError):
        check_invalid(good_proof)
    good_locator = next(r for r in RECORDS if r["record"] == "locator")
    with pytest.raises(pytest.fail.Exception):
        check_invalid({"record": "invalid-locator", "encoding": good_locator["encoding"]})


def test_the_checker_imports_nothing_from_milagro_tls():
    source = Path(__file__).read_text()
    imported = set(re.findall(r"^(?:from|import) ([\w.]+)", source, re.M))
    assert imported <= {"__future__", "hashlib", "hmac", "re", "pathlib", "pytest", "ecdsa",
                        "ecdsa.ellipticcurve", "ecdsa.util"}
