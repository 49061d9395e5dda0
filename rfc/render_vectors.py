"""Render the draft's Test Vectors appendix from tests/vectors/*.json; never edit it by hand.

    .venv/bin/python rfc/render_vectors.py           rewrite the appendix in the draft
    .venv/bin/python rfc/render_vectors.py --check   exit 1 if the draft differs from the vectors

The appendix sits between BEGIN and END below. Each vector is one fenced record of
``name: value`` lines, values in lowercase hex (integers big-endian) except a few tokens
(record, label, suite_name, mode, prf_hash, the anchor labels). A value too long for one
line of the draft's 69-column artwork continues on the next lines, each indented by two
spaces. tests/rfc/test_clean_room.py parses these records back and recomputes them.

This script reads JSON only: it imports nothing from milagro_tls, so the draft shows
exactly what the vector generators (tests/vectors/generate_*.py) wrote.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRAFT = ROOT / "rfc" / "draft-milagro-tls-bitcoin-ake-00.md"
VECTORS = ROOT / "tests" / "vectors"
BEGIN = "<!-- BEGIN GENERATED VECTORS -->"
END = "<!-- END GENERATED VECTORS -->"
#: xml2rfc's text output indents artwork by 3 columns of its 72.
WIDTH = 69
CHUNK = 66   # 33 bytes: a compressed point fits one line

_FAMILIES = {"ecdh_btc": "ECDH-BTC", "yak_btc": "YAK-BTC"}
_MODES = {"full": "Full Mode", "server-only": "Server-Only Mode"}


def _field(name: str, value: str) -> list[str]:
    line = f"{name}: {value}"
    if len(line) <= WIDTH:
        return [line]
    return [f"{name}:"] + [f"  {value[i:i + CHUNK]}" for i in range(0, len(value), CHUNK)]


def _record(fields: list[tuple[str, str]]) -> str:
    lines = [line for name, value in fields for line in _field(name, value)]
    return "~~~~\n" + "\n".join(lines) + "\n~~~~\n"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _anchor_record(label: str, anchor: dict) -> str:
    return _record([
        ("record", "anchor"), ("label", label),
        ("identity_private_key", anchor["identity_private_key"]),
        ("identity_pubkey", anchor["identity_pubkey"]),
        ("certificate", anchor["certificate_canonical_hex"]),
        ("certificate_sha256", anchor["certificate_sha256"]),
        ("spent_value", f"{anchor['spent_value']:016x}"),
        ("anchor_tx", anchor["raw_tx"]),
        ("sighash", anchor["sighash"]),
        ("signature_r", anchor["r"]), ("signature_s", anchor["s"]),
        ("nonce_point", anchor["nonce_point"]), ("nonce_k", anchor["k"]),
    ])


def _side_fields(side: str, doc: dict, labels: dict[str, str]) -> list[tuple[str, str]]:
    fields = []
    if "anchor" in doc:
        anchor = doc["anchor"]
        fields += [(f"{side}_anchor", labels[anchor["raw_tx"]]),
                   (f"{side}_nonce_k", anchor["k"]), (f"{side}_nonce_point", anchor["nonce_point"])]
    if "ephemeral" in doc:
        fields += [(f"{side}_ephemeral", doc["ephemeral"]), (f"{side}_ephemeral_point", doc["ephemeral_point"])]
    if "proof" in doc:
        proof = doc["proof"]
        fields += [(f"{side}_nizk_user_id", proof["user_id"]), (f"{side}_nizk_nonce", proof["nonce"]),
                   (f"{side}_nizk_commitment", proof["commitment"]),
                   (f"{side}_nizk_challenge", proof["challenge"]),
                   (f"{side}_nizk_response", proof["response"])]
    return fields


def _handshake_record(case: dict, suite: dict, labels: dict[str, str]) -> str:
    fields = [("record", "handshake"), ("suite", suite["code"][2:]), ("suite_name", suite["name"]),
              ("mode", case["mode"]), ("prf_hash", suite["prf_hash"])]
    fields += _side_fields("client", case["client"], labels)
    fields += _side_fields("server", case["server"], labels)
    fields += [("client_random", case["client_random"]), ("server_random", case["server_random"]),
               ("premaster", case["premaster"])]
    fields += [(name, suite[name]) for name in (
        "session_hash", "master_secret", "key_block", "client_write_key", "server_write_key",
        "client_write_iv", "server_write_iv", "client_verify_data")]
    return _record(fields)


def _invalid_record(case: dict) -> str:
    head = [("record", f"invalid-{case['kind'].replace('_', '-')}"), ("label", _slug(case["name"]))]
    keys = {"point": ("point",),
            "proof": ("public_point", "commitment", "response", "user_id", "other_info"),
            "yak_premaster": ("long_term", "ephemeral", "peer_nonce_point", "peer_ephemeral")}[case["kind"]]
    return _record(head + [(key, case[key]) for key in keys])


def _locator_fields(doc: dict) -> list[tuple[str, str]]:
    networks = {"mainnet": 0, "testnet3": 1, "testnet4": 2, "signet": 3, "regtest": 4}
    kinds = {"p2wpkh": 1, "taproot-batch": 2}
    return [("version", f"{doc['version']:02x}"), ("network", f"{networks[doc['network']]:02x}"), ("kind", f"{kinds[doc['kind']]:02x}"),
            # the JSON form is in display order; the wire form, like an outpoint, is not
            ("txid", bytes.fromhex(doc["txid"])[::-1].hex()), ("input_index", f"{doc['input']:04x}"),
            ("block_hash", bytes.fromhex(doc["block_hash"])[::-1].hex())]


def _batch_records(batch: dict) -> list[str]:
    pats = batch["pats"]
    locator = batch["locator"]["json"]
    body = bytes.fromhex(batch["locator"]["binary_hex"])[71:]
    count = body[10]
    form = [("record", "batch"), ("tbs_key", batch["tbs_key"])]
    form += [(f"pat_{i}_key", pat["key"]) for i, pat in enumerate(pats)]
    form += [("leaf_script", batch["leaf_script"]), ("tapleaf_hash", batch["tapleaf_hash"]),
             ("output_key", batch["output_key"]), ("output_parity", f"{batch['output_parity']:02x}"),
             ("script_pubkey", batch["script_pubkey"]), ("control_block", batch["control_block"])]
    signing = [("record", "batch-signing"), ("tbs_key", batch["tbs_key"])]
    signing += [(f"pat_{i}_key", pat["key"]) for i, pat in enumerate(pats)]
    signing += [("leaf_script", batch["leaf_script"]), ("spent_value", f"{batch['funding_value']:016x}"),
                ("script_pubkey", batch["script_pubkey"]), ("batch_root", batch["batch_root"]),
                ("unsigned_tx", batch["unsigned_tx"]), ("sighash", batch["sighash"]),
                ("tbs_signature", batch["tbs_signature"])]
    signing += [(f"pat_{i}_signature", pat["signature"]) for i, pat in enumerate(pats)]
    signing += [("absent", ",".join(str(i) for i, pat in enumerate(pats) if not pat["answered"])),
                ("control_block", batch["control_block"]), ("batch_tx", batch["batch_tx"])]
    position = batch["position"]
    nonce = [("record", "batch-nonce"), ("label", f"pat-{position}"),
             ("pat_private_key", pats[position]["private_key"]), ("pat_key", pats[position]["key"]),
             ("sighash", batch["sighash"]), ("signature", pats[position]["signature"]),
             ("nonce_point", batch["nonce_point"]), ("nonce_k", batch["nonce_k"])]
    loc = [("record", "batch-locator"), *_locator_fields(locator),
           ("position", body[:2].hex()), ("merkle_index", body[2:6].hex()), ("merkle_size", body[6:10].hex()),
           ("merkle_path", body[11:11 + 32 * count].hex()),
           ("certificate", batch["certificate"]), ("certificate_sha256", pats[position]["certificate_sha256"]),
           ("batch_root", batch["batch_root"]), ("encoding", batch["locator"]["binary_hex"])]
    return [_record(form), _record(signing), _record(nonce), _record(loc)]


#: The Merkle vectors the draft shows (of the many in merkle.json): trees of these sizes, and
#: inclusion proofs of these (size, index) pairs.
_MERKLE_SIZES = (1, 2, 3, 5, 7)
_MERKLE_PROOFS = ((3, 2), (5, 4), (7, 3))


def _merkle_records(merkle: dict) -> list[str]:
    out = [_record([("record", "merkle-empty"), ("root", merkle["empty_root"])])]
    trees = {tree["size"]: tree for tree in merkle["trees"]}
    for size in _MERKLE_SIZES:
        tree = trees[size]
        fields = [("record", "merkle-tree"), ("size", f"{size:08x}")]
        for i, (leaf, leaf_hash) in enumerate(zip(tree["leaves"], tree["leaf_hashes"])):
            fields += [(f"leaf_{i}", leaf or "(empty)"), (f"leaf_hash_{i}", leaf_hash)]
        out.append(_record(fields + [("root", tree["root"])]))
    for size, index in _MERKLE_PROOFS:
        tree = trees[size]
        proof = tree["inclusion"][index]
        out.append(_record([("record", "merkle-inclusion"), ("leaf", tree["leaves"][index] or "(empty)"),
                            ("index", f"{index:08x}"), ("size", f"{size:08x}"), ("path", "".join(proof["path"])),
                            ("root", tree["root"]), ("encoding", proof["encoded"])]))
    return out


def render(vectors: Path = VECTORS) -> str:
    """The whole generated block, BEGIN and END markers included."""
    key_agreement = json.loads((vectors / "key_agreement.json").read_text())
    locators = json.loads((vectors / "locators.json").read_text())
    batch = json.loads((vectors / "batch.json").read_text())
    merkle = json.loads((vectors / "merkle.json").read_text())
    out = [BEGIN, "<!-- rfc/render_vectors.py wrote this from tests/vectors/key_agreement.json, locators.json, "
                  "batch.json and merkle.json; do not edit by hand. -->", ""]

    anchors: dict[str, dict] = {}
    for case in key_agreement["valid"]:
        for side in ("server", "client"):
            if "anchor" in case[side]:
                anchors.setdefault(side, case[side]["anchor"])
    labels = {anchor["raw_tx"]: label for label, anchor in anchors.items()}
    out += ["## Anchors {#vectors-anchors}", "",
            "The anchors of the server and of the client (full mode only). The client's nonce",
            "point has odd y and the server's even y, so the vectors cover both parities.", ""]
    for label, anchor in anchors.items():
        out.append(_anchor_record(label, anchor))

    for case in key_agreement["valid"]:
        family, mode = _FAMILIES[case["suite"]], case["mode"]
        out += [f"## {family}, {_MODES[mode]} {{#vectors-{_slug(case['suite'])}-{mode}}}", ""]
        for suite in case["suites"]:
            out += [f"### {suite['name']}, {mode} {{#vectors-{suite['code'][2:]}-{mode}}}", "",
                    _handshake_record(case, suite, labels)]

    out += ["## Invalid Key-Exchange Values {#vectors-invalid}", "",
            "Each value below MUST be refused: a point or proof with the alert of",
            "{{alerts}}, a YAK premaster whose sum R + X is the point at infinity",
            "with illegal_parameter.", ""]
    out += [_invalid_record(case) for case in key_agreement["invalid"]]

    out += ["## Locators {#vectors-locators}", ""]
    for doc in locators["valid"]:
        out.append(_record([("record", "locator"), *_locator_fields(doc["json"]), ("encoding", doc["binary_hex"])]))
    out += ["The following encodings MUST be refused (decode_error in a hello extension).", ""]
    for case in locators["invalid"]:
        out.append(_record([("record", "invalid-locator"), ("label", _slug(case["name"])),
                            ("encoding", case["binary_hex"])]))

    out += ["## Taproot Batch {#vectors-batch}", "",
            "One batch of three PATs ({{batch}}) from fixed keys: the batch form, the",
            "signing of its one input (PAT 2 did not answer: an empty item), the nonce",
            "of PAT 1, and PAT 1's taproot_batch locator. The signatures use",
            f"aux_rand = {batch['aux_rand'][:8]}... (32 zero bytes), so they are reproducible;",
            "any aux_rand gives valid signatures. Integers are big-endian hex;",
            "\"absent\" lists the positions whose witness item is empty.", ""]
    out += _batch_records(batch)
    out += ["## Merkle Trees {#vectors-merkle}", "",
            "Roots and inclusion proofs of the tree of {{merkle-tree}}. A leaf is",
            "its data in hex (\"(empty)\" for zero bytes); encoding is the",
            "InclusionProof of {{batch-locator}}.", ""]
    out += _merkle_records(merkle)
    out.append(END)
    return "\n".join(out)


def splice(draft: str, generated: str) -> str:
    """``draft`` with its generated block replaced by ``generated``."""
    start, end = draft.index(BEGIN), draft.index(END) + len(END)
    return draft[:start] + generated + draft[end:]


def main(argv: list[str]) -> int:
    draft = DRAFT.read_text()
    rendered = splice(draft, render())
    if "--check" in argv:
        if rendered != draft:
            print(f"{DRAFT.relative_to(ROOT)} differs from tests/vectors: run rfc/render_vectors.py",
                  file=sys.stderr)
            return 1
        return 0
    DRAFT.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
