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


def render(vectors: Path = VECTORS) -> str:
    """The whole generated block, BEGIN and END markers included."""
    key_agreement = json.loads((vectors / "key_agreement.json").read_text())
    locators = json.loads((vectors / "locators.json").read_text())
    out = [BEGIN, "<!-- rfc/render_vectors.py wrote this from tests/vectors/key_agreement.json and "
                  "tests/vectors/locators.json; do not edit by hand. -->", ""]

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
