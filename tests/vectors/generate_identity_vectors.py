"""Generate the known-answer vectors for certificates, locators, anchors and nonce keys.

Run from the repository root:  .venv/bin/python tests/vectors/generate_identity_vectors.py
Each file is cross-checked by tests/identity/test_vectors.py, the nonce keys with a second
implementation (the pure-Python ``ecdsa`` package) rather than with this code.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import coincurve

from milagro_tls.chain.network import Network
from milagro_tls.chain.sighash import p2wpkh_script, p2wpkh_sighash
from milagro_tls.chain.tx import parse_tx
from milagro_tls.ciphersuites.nonce import N, ecdsa_nonce_point, ecdsa_owner_nonce, parse_der_signature
from milagro_tls.chain.source import UnspentOutput
from milagro_tls.identity.anchor import build_anchor_tx
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.keys import IdentityKey
from milagro_tls.identity.locator import Locator, LocatorKind

HERE = Path(__file__).parent
GENERATED_BY = "tests/vectors/generate_identity_vectors.py"


def _key(label: str) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(hashlib.sha256(b"milagro-tls test vector key " + label.encode()).digest())


def _write(name: str, source: str, valid: list, invalid: list) -> None:
    doc = {"source": source, "generated_by": GENERATED_BY, "valid": valid, "invalid": invalid}
    (HERE / name).write_text(json.dumps(doc, indent=2) + "\n")


def certificates() -> list[BirthCertificate]:
    certs = [
        BirthCertificate(role="service", name="echo.example", pubkey=_key("server").public_key.format(),
                         network="regtest", urls=("https://echo.example/",), created="2026-11-26T00:00:00Z"),
        BirthCertificate(role="pat", name="pat-0001", pubkey=_key("pat").public_key.format(), network="regtest",
                         created="2026-11-26T00:00:01Z", batch_key=_key("tbs").public_key.format()[1:],
                         role_data={"model": "sensor-α", "serial": 1}),
    ]
    valid = [{"json": c.to_json(), "canonical_hex": c.canonical_bytes().hex(), "sha256": c.digest().hex()}
             for c in certs]
    invalid = [
        {"name": "not canonical (whitespace)", "raw": json.dumps(certs[0].to_json(), indent=1),
         "error": "MalformedInput"},
        {"name": "unknown role", "raw": certs[0].canonical_bytes().decode().replace('"service"', '"king"'),
         "error": "MalformedInput"},
        {"name": "unknown field", "raw": '{"extra":1,' + certs[0].canonical_bytes().decode()[1:],
         "error": "MalformedInput"},
        {"name": "pubkey not on curve", "raw": certs[0].canonical_bytes().decode().replace(
            certs[0].pubkey.hex(), "02" + "00" * 32), "error": "MalformedInput"},
        {"name": "version true (equals 1 in Python)", "raw": certs[0].canonical_bytes().decode().replace(
            '"version":1', '"version":true'), "error": "MalformedInput"},
        {"name": "unknown network", "raw": certs[0].canonical_bytes().decode().replace(
            '"regtest"', '"moonnet"'), "error": "MalformedInput"},
        {"name": "role_data not an object", "raw": certs[1].canonical_bytes().decode().replace(
            '"role_data":{"model":"sensor-α","serial":1}', '"role_data":[1]'), "error": "MalformedInput"},
    ]
    _write("certificates.json", "RFC 8785 canonical JSON of BirthCertificate", valid, invalid)
    return certs


def locators() -> None:
    loc = Locator(network=Network.REGTEST, kind=LocatorKind.P2WPKH, txid=hashlib.sha256(b"tx").digest(),
                  input_index=0, block_hash=hashlib.sha256(b"block").digest())
    main = Locator(network=Network.MAINNET, kind=LocatorKind.P2WPKH, txid=hashlib.sha256(b"tx2").digest(),
                   input_index=3, block_hash=hashlib.sha256(b"block2").digest())
    valid = [{"json": x.to_json(), "binary_hex": x.encode().hex()} for x in (loc, main)]
    good = loc.encode()
    invalid = [
        {"name": "truncated", "binary_hex": good[:-1].hex(), "error": "MalformedInput"},
        {"name": "trailing byte", "binary_hex": (good + b"\x00").hex(), "error": "MalformedInput"},
        {"name": "unknown version", "binary_hex": (b"\x02" + good[1:]).hex(), "error": "MalformedInput"},
        {"name": "unknown network", "binary_hex": (good[:1] + b"\x09" + good[2:]).hex(), "error": "MalformedInput"},
        {"name": "unknown kind", "binary_hex": (good[:2] + b"\x07" + good[3:]).hex(), "error": "MalformedInput"},
        {"name": "p2wpkh with a body", "binary_hex": (good[:-2] + b"\x00\x01\xff").hex(), "error": "MalformedInput"},
    ]
    _write("locators.json", "Locator binary encoding (milagro_tls/identity/locator.py docstring)", valid, invalid)


def nonce_keys() -> None:
    valid = []
    for i in range(6):
        d = _key(f"nonce-{i}")
        z = hashlib.sha256(b"sighash %d" % i).digest()
        r, s = parse_der_signature(d.sign(z, hasher=None))
        for negated in (False, True):
            s_on_chain = N - s if negated else s   # a high-S copy: the same signature, negated
            point = ecdsa_nonce_point(r, s_on_chain, z, d.public_key.format())
            k = ecdsa_owner_nonce(d, r, s_on_chain, z)
            assert k.public_key.format() == point
            valid.append({"d": d.secret.hex(), "pubkey": d.public_key.format().hex(), "z": z.hex(),
                          "r": f"{r:064x}", "s": f"{s_on_chain:064x}", "high_s": s_on_chain > N // 2,
                          "nonce_point": point.hex(), "k": k.secret.hex()})
    invalid = [{"name": "wrong z", "pubkey": valid[0]["pubkey"], "z": "00" * 31 + "01",
                "r": valid[0]["r"], "s": valid[0]["s"], "error": "InvalidNonceInput"}]
    _write("nonce_keys.json", "ECDSA exact nonce point and owner nonce (test keys only, never use them)",
           valid, invalid)


def anchors(cert: BirthCertificate) -> None:
    identity = IdentityKey(_key("server"))
    fee = _key("fee")
    coin = UnspentOutput(hashlib.sha256(b"funding").digest(), 0, 2_000, identity.p2wpkh_script, None)
    fee_script = p2wpkh_script(fee.public_key.format())
    built = build_anchor_tx(identity, coin, cert.digest(), fee_script, fee_rate=1.0)
    tx = parse_tx(built.raw)
    signature = bytes(tx.vin[0].witness.items[0])
    r, s = parse_der_signature(signature[:-1])
    z = p2wpkh_sighash(tx, 0, identity.public_key, coin.value)
    valid = [{"certificate_sha256": cert.digest().hex(), "identity_pubkey": identity.public_key.hex(),
              "spent_txid": coin.txid[::-1].hex(), "spent_vout": coin.vout, "spent_value": coin.value,
              "raw_tx": built.raw.hex(), "txid": built.txid_hex, "sighash": z.hex(),
              "r": f"{r:064x}", "s": f"{s:064x}",
              "nonce_point": ecdsa_nonce_point(r, s, z, identity.public_key).hex()}]
    _write("anchors.json", "Single anchor transaction (RFC 6979 signatures, so byte-stable)", valid, [])


if __name__ == "__main__":
    certs = certificates()
    locators()
    nonce_keys()
    anchors(certs[0])
    print("vectors written to", HERE)
