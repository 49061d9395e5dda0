"""Generate the known-answer vectors of the taproot batch form (tests/vectors/batch.json).

Run from the repository root:  .venv/bin/python tests/vectors/generate_batch_vectors.py

One batch of three PATs, built by the library's own functions (chain.taproot, merkle, the
locator) from fixed keys: the leaf, its tapleaf hash, the output key and control block, the
unsigned batch transaction, its script-path sighash, the PAT signatures (BIP340 with a fixed
32-byte aux, so the bytes are reproducible), the witness with PAT 2 absent, the nonce point
and k of PAT 1, and PAT 1's locator. rfc/render_vectors.py puts them in the draft; tests/rfc
recompute them with the code (test_batch_draft.py) and without it (test_clean_room.py).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import coincurve
from embit.script import Script, Witness
from embit.transaction import Transaction, TransactionInput, TransactionOutput

from milagro_tls.chain.network import Network
from milagro_tls.chain.proof import SpentOutput
from milagro_tls.chain.taproot import batch_output, leaf_script, output_key, script_path_sighash, tapleaf_hash
from milagro_tls.chain.tx import txid_of
from milagro_tls.ciphersuites.nonce import schnorr_nonce_point, schnorr_owner_nonce
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.locator import Locator
from milagro_tls.identity.marker import Marker, MarkerType
from milagro_tls.merkle import MerkleTree

HERE = Path(__file__).parent
GENERATED_BY = "tests/vectors/generate_batch_vectors.py"
AUX = bytes(32)                 # BIP340 aux_rand: fixed here so the signatures are reproducible


def _key(label: str) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(hashlib.sha256(b"milagro-tls batch vector key " + label.encode()).digest())


def _hash(label: str) -> bytes:
    return hashlib.sha256(b"milagro-tls batch vector " + label.encode()).digest()


def generate() -> dict:
    tbs = _key("tbs")
    tbs_x = tbs.public_key.format()[1:]
    pats = [_key(f"pat {i}") for i in range(3)]
    certificates = [BirthCertificate(role="pat", name=f"pat-{i:04d}", pubkey=key.public_key.format(),
                                     network="regtest", created=f"2026-11-26T00:00:0{i}Z", batch_key=tbs_x)
                    for i, key in enumerate(pats)]
    digests = [cert.digest() for cert in certificates]
    tree = MerkleTree(digests)
    leaf = leaf_script(tbs_x, [cert.pubkey[1:] for cert in certificates])
    q, parity = output_key(tbs_x, tapleaf_hash(leaf))
    script_pubkey, control = batch_output(tbs_x, leaf)
    funding_txid, funding_value, change_script = _hash("funding txid"), 2_000, bytes.fromhex("0014") + _hash("change")[:20]
    tx = Transaction(version=2, locktime=0,
                     vin=[TransactionInput(funding_txid[::-1], 0, sequence=0xFFFFFFFD)],
                     vout=[TransactionOutput(0, Script(Marker(MarkerType.BATCH_ROOT, tree.root).script())),
                           TransactionOutput(1_000, Script(change_script))])
    unsigned = tx.serialize()
    spent = [SpentOutput(funding_value, script_pubkey)]
    sighash = script_path_sighash(tx, 0, spent, leaf)
    signatures = [key.sign_schnorr(sighash, aux_randomness=AUX) for key in pats]
    answered = {0, 1}                           # PAT 2 does not answer: an empty item
    tbs_signature = tbs.sign_schnorr(sighash, aux_randomness=AUX)
    items = [signatures[i] if i in answered else b"" for i in reversed(range(3))] + [tbs_signature, leaf, control]
    tx.vin[0].witness = Witness(items)
    position = 1
    block_hash = _hash("block hash")
    locator = Locator.taproot_batch(network=Network.REGTEST, txid=txid_of(tx), input_index=0, block_hash=block_hash,
                                    position=position, proof=tree.inclusion_proof(position))
    nonce_k = schnorr_owner_nonce(pats[position], signatures[position], sighash)
    assert nonce_k.public_key.format() == schnorr_nonce_point(signatures[position])
    return {
        "source": "The taproot batch form (milagro_tls/chain/taproot.py, chain/batchverify.py, identity/locator.py)",
        "generated_by": GENERATED_BY,
        "aux_rand": AUX.hex(),
        "tbs_private_key": tbs.secret.hex(), "tbs_key": tbs_x.hex(),
        "pats": [{"private_key": key.secret.hex(), "key": cert.pubkey[1:].hex(), "certificate_sha256": digest.hex(),
                  "signature": signatures[i].hex(), "answered": i in answered}
                 for i, (key, cert, digest) in enumerate(zip(pats, certificates, digests))],
        "certificate": certificates[position].canonical_bytes().hex(),
        "batch_root": tree.root.hex(),
        "leaf_script": leaf.hex(),
        "tapleaf_hash": tapleaf_hash(leaf).hex(),
        "output_key": q.hex(), "output_parity": parity,
        "script_pubkey": script_pubkey.hex(),
        "control_block": control.hex(),
        "funding_txid": funding_txid[::-1].hex(), "funding_value": funding_value,
        "unsigned_tx": unsigned.hex(),
        "sighash": sighash.hex(),
        "tbs_signature": tbs_signature.hex(),
        "batch_tx": tx.serialize().hex(),
        "batch_txid": txid_of(tx)[::-1].hex(),
        "position": position,
        "nonce_point": schnorr_nonce_point(signatures[position]).hex(),
        "nonce_k": nonce_k.secret.hex(),
        "locator": {"json": locator.to_json(), "binary_hex": locator.encode().hex()},
    }


def main() -> None:
    (HERE / "batch.json").write_text(json.dumps(generate(), indent=2) + "\n")


if __name__ == "__main__":
    main()
