"""Generate the known-answer vectors of ECDH-BTC, YAK-BTC, their NIZKs and the extended master secret.

Run from the repository root:  .venv/bin/python tests/vectors/generate_key_agreement_vectors.py
tests/ciphersuites/test_key_agreement_vectors.py reproduces every value with our code and
recomputes every premaster, proof equation and master secret with a second implementation
(the pure-Python ``ecdsa`` package, hashlib and hmac) from the JSON alone.

Each valid case also carries, under "suites", the key schedule of every registered suite of
its family: the extended master secret with that suite's PRF hash, the key block split into
write keys and IVs, and the client's Finished verify_data. These are computed with
milagro_tls.handshake.keyschedule and checked against the record protection the handshake
builds. rfc/render_vectors.py renders all of it into the draft's Test Vectors appendix, and
tests/rfc/test_clean_room.py recomputes it from the draft's text alone.

The long-term keys are the nonces of real anchor transactions (RFC 6979 signatures, so the
bytes are stable), built as generate_identity_vectors.py builds its anchor; the server's is
that same anchor. Every key here is a fixed TEST key: publishing k is what makes the
vectors checkable, and it gives away the identity key (d = (s·k − z)/r).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import coincurve
from tlslite.mathtls import PRF_1_2, PRF_1_2_SHA384

from milagro_tls.chain.sighash import p2wpkh_script, p2wpkh_sighash
from milagro_tls.chain.source import UnspentOutput
from milagro_tls.chain.tx import parse_tx
from milagro_tls.ciphersuites import ecdh_btc, nizk, yak_btc
from milagro_tls.ciphersuites.nonce import N, ecdsa_nonce_point, parse_der_signature
from milagro_tls.ciphersuites.points import P
from milagro_tls.ciphersuites.registry import SUITES, KeyExchangeKind
from milagro_tls.handshake import keyschedule
from milagro_tls.handshake.records import ContentType, RecordProtection
from milagro_tls.identity.anchor import build_anchor_tx
from milagro_tls.identity.certificate import BirthCertificate
from milagro_tls.identity.keys import IdentityKey

HERE = Path(__file__).parent
GENERATED_BY = "tests/vectors/generate_key_agreement_vectors.py"
#: RFC 7627 §4: the label of the extended master secret.
EMS_LABEL = b"extended master secret"


def _key(label: str) -> coincurve.PrivateKey:
    # The same derivation as generate_identity_vectors.py, so "server" is the same key there.
    return coincurve.PrivateKey(hashlib.sha256(b"milagro-tls test vector key " + label.encode()).digest())


def _fixed(label: str) -> bytes:
    return hashlib.sha256(b"milagro-tls test vector ephemeral " + label.encode()).digest()


def _scalar(label: str) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(_fixed(label))


def _point(secret: coincurve.PrivateKey) -> bytes:
    return secret.public_key.format(compressed=True)


CERTIFICATES = {
    # certificates.json's first certificate: its digest is the server's UserID.
    "server": BirthCertificate(role="service", name="echo.example", pubkey=_point(_key("server")),
                               network="regtest", urls=("https://echo.example/",),
                               created="2026-11-26T00:00:00Z"),
    "client": BirthCertificate(role="pat", name="pat-client-0001", pubkey=_point(_key("client")),
                               network="regtest", created="2026-11-26T00:00:02Z"),
}


def anchor(label: str, funding: bytes) -> tuple[dict, coincurve.PrivateKey]:
    """The anchor of identity ``label`` spending sha256(funding):0, and the owner's nonce k."""
    identity = IdentityKey(_key(label))
    cert = CERTIFICATES[label]
    coin = UnspentOutput(hashlib.sha256(funding).digest(), 0, 2_000, identity.p2wpkh_script, None)
    built = build_anchor_tx(identity, coin, cert.digest(), p2wpkh_script(_point(_key("fee"))), fee_rate=1.0)
    tx = parse_tx(built.raw)
    r, s = parse_der_signature(bytes(tx.vin[0].witness.items[0])[:-1])
    z = p2wpkh_sighash(tx, 0, identity.public_key, coin.value)
    nonce_point = ecdsa_nonce_point(r, s, z, identity.public_key)
    k = identity.nonce_key(r, s, z)
    assert _point(k) == nonce_point
    return {"certificate_canonical_hex": cert.canonical_bytes().hex(), "certificate_sha256": cert.digest().hex(),
            "identity_private_key": _key(label).secret.hex(), "identity_pubkey": identity.public_key.hex(),
            "raw_tx": built.raw.hex(), "spent_value": coin.value, "sighash": z.hex(),
            "r": f"{r:064x}", "s": f"{s:064x}", "nonce_point": nonce_point.hex(), "k": k.secret.hex()}, k


def master_secrets(name: str, premaster: bytes) -> dict:
    """RFC 7627 §4: PRF(premaster, "extended master secret", session_hash)[0..47], per PRF hash."""
    label = b"milagro-tls test vector session hash " + name.encode()
    hash256, hash384 = hashlib.sha256(label).digest(), hashlib.sha384(label).digest()
    return {"session_hash_sha256": hash256.hex(),
            "master_secret_sha256": bytes(PRF_1_2(premaster, EMS_LABEL, hash256, 48)).hex(),
            "session_hash_sha384": hash384.hex(),
            "master_secret_sha384": bytes(PRF_1_2_SHA384(premaster, EMS_LABEL, hash384, 48)).hex()}


def _randoms(name: str) -> dict:
    """Fixed client and server randoms (RFC 5246 §7.4.1.2) of the case named ``name``."""
    return {"client_random": _fixed(f"{name} client_random").hex(),
            "server_random": _fixed(f"{name} server_random").hex()}


#: What suite_schedules encrypts to prove that its key split is the one the handshake uses.
_PROBE = b"milagro-tls key block probe"


def _same_protection(ours: RecordProtection, handshake: RecordProtection) -> bool:
    """Equal keys and IVs give equal records: the only way to compare AEAD states from outside."""
    return ours.seal(ContentType.application_data, _PROBE) == handshake.seal(ContentType.application_data, _PROBE)


def suite_schedules(case: dict) -> list[dict]:
    """The key schedule of every registered suite of ``case``'s family (RFC 5246 §6.3, §7.4.9;
    RFC 7627 §4), from the case's premaster, randoms and per-hash session hash."""
    kind = KeyExchangeKind.ECDH_BTC if case["suite"] == "ecdh_btc" else KeyExchangeKind.YAK_BTC
    premaster = bytes.fromhex(case["premaster"])
    client_random, server_random = bytes.fromhex(case["client_random"]), bytes.fromhex(case["server_random"])
    schedules = []
    for suite in sorted((s for s in SUITES.values() if s.key_exchange is kind), key=lambda s: s.code):
        session_hash = bytes.fromhex(case[f"session_hash_{suite.prf_hash}"])
        master = keyschedule.extended_master_secret(suite, premaster, session_hash)
        assert master.hex() == case[f"master_secret_{suite.prf_hash}"]
        key_length, iv_length = suite.cipher.key_length, suite.cipher.fixed_iv_length
        block = keyschedule.prf(suite, master, b"key expansion", server_random + client_random,
                                2 * (key_length + iv_length))
        parts = {"client_write_key": block[:key_length], "server_write_key": block[key_length:2 * key_length],
                 "client_write_iv": block[2 * key_length:2 * key_length + iv_length],
                 "server_write_iv": block[2 * key_length + iv_length:]}
        client_write, server_write = keyschedule.record_protections(suite, master, client_random, server_random)
        assert _same_protection(RecordProtection(suite.cipher, parts["client_write_key"], parts["client_write_iv"]),
                                client_write)
        assert _same_protection(RecordProtection(suite.cipher, parts["server_write_key"], parts["server_write_iv"]),
                                server_write)
        # In this handshake (no CertificateVerify) the client's Finished hashes exactly the
        # messages the session hash covers: ClientHello up to and including ClientKeyExchange.
        verify_data = keyschedule.finished_verify_data(suite, master, client=True, transcript_hash=session_hash)
        schedules.append({"code": f"0x{suite.code:04x}", "name": suite.name, "prf_hash": suite.prf_hash,
                          "session_hash": session_hash.hex(), "master_secret": master.hex(),
                          "key_block": block.hex(), **{k: v.hex() for k, v in parts.items()},
                          "client_verify_data": verify_data.hex()})
    return schedules


def _proof(name: str, side: str, secret: coincurve.PrivateKey, uid: bytes, info: bytes) -> dict:
    v = _scalar(f"{name} {side} v")
    proof = nizk.prove(secret, uid, info, nonce=v)
    nizk.verify(_point(secret), proof, uid, info)
    c = nizk.challenge(_point(secret), proof.commitment, uid, info)
    return {"nonce": v.secret.hex(), "commitment": proof.commitment.hex(), "response": proof.response.hex(),
            "challenge": f"{c:064x}", "user_id": uid.hex(), "other_info": info.hex()}


def _ephemeral(name: str, side: str) -> tuple[dict, coincurve.PrivateKey]:
    x = _scalar(f"{name} {side} x")
    return {"ephemeral": x.secret.hex(), "ephemeral_point": _point(x).hex()}, x


def ecdh_full(server: dict, k_s, client: dict, k_c) -> dict:
    name = "ecdh_btc full"
    pms = ecdh_btc.premaster(k_c, bytes.fromhex(server["nonce_point"]))
    assert pms == ecdh_btc.premaster(k_s, bytes.fromhex(client["nonce_point"]))
    return {"name": name, "suite": "ecdh_btc", "mode": "full", **_randoms(name),
            "client": {"anchor": client}, "server": {"anchor": server},
            "premaster": pms.hex(), **master_secrets(name, pms)}


def ecdh_server_only(server: dict, k_s) -> dict:
    name = "ecdh_btc server-only"
    client, e = _ephemeral(name, "client")
    pms = ecdh_btc.premaster(e, bytes.fromhex(server["nonce_point"]))
    assert pms == ecdh_btc.premaster(k_s, _point(e))
    return {"name": name, "suite": "ecdh_btc", "mode": "server-only", **_randoms(name),
            "client": client, "server": {"anchor": server},
            "premaster": pms.hex(), **master_secrets(name, pms)}


def yak(name: str, server: dict, k_s, client: dict | None, k_c) -> dict:
    randoms = _randoms(name)
    client_random, server_random = bytes.fromhex(randoms["client_random"]), bytes.fromhex(randoms["server_random"])
    info = yak_btc.other_info(client_random, server_random)
    sides = {}
    for side, anchor_doc in (("client", client), ("server", server)):
        doc, x = _ephemeral(name, side)
        uid = yak_btc.user_id(bytes.fromhex(anchor_doc["certificate_sha256"]) if anchor_doc else None)
        if anchor_doc:
            doc["anchor"] = anchor_doc
        doc["proof"] = _proof(name, side, x, uid, info)
        sides[side] = (doc, x)
    (client_doc, x_c), (server_doc, x_s) = sides["client"], sides["server"]
    client_view = yak_btc.premaster(long_term=k_c, ephemeral=x_c, peer_nonce_point=bytes.fromhex(server["nonce_point"]),
                                    peer_ephemeral=_point(x_s))
    server_view = yak_btc.premaster(long_term=k_s, ephemeral=x_s,
                                    peer_nonce_point=bytes.fromhex(client["nonce_point"]) if client else None,
                                    peer_ephemeral=_point(x_c))
    assert client_view == server_view
    return {"name": name, "suite": "yak_btc", "mode": "full" if client else "server-only",
            "client_random": client_random.hex(), "server_random": server_random.hex(),
            "client": client_doc, "server": server_doc,
            "premaster": client_view.hex(), **master_secrets(name, client_view)}


def _is_square(value: int) -> bool:
    return pow(value, (P - 1) // 2, P) == 1


def invalid_cases(yak_full: dict) -> list[dict]:
    client, server = yak_full["client"], yak_full["server"]
    proof = client["proof"]
    off_curve = next(x for x in range(1, 100) if not _is_square((x ** 3 + 7) % P))
    # A valid x plus p: libsecp256k1 must not reduce it mod p into a second encoding.
    wrapped = next(x for x in range(1, 100) if _is_square((x ** 3 + 7) % P)) + P
    r_server = coincurve.PublicKey(bytes.fromhex(server["anchor"]["nonce_point"]))
    v_point = coincurve.PublicKey(bytes.fromhex(proof["commitment"]))
    response = int(proof["response"], 16)
    points = [
        ("point not on the curve", "02" + f"{off_curve:064x}"),
        ("point at infinity", "00"),
        ("uncompressed point (65 bytes)", r_server.format(compressed=False).hex()),
        ("x not below the field prime", "02" + f"{wrapped:064x}"),
        ("compressed length with the uncompressed prefix", "04" + server["anchor"]["nonce_point"][2:]),
    ]
    cases = [{"name": name, "kind": "point", "point": point, "error": "InvalidPoint"} for name, point in points]

    def bad_proof(name: str, error: str, **change) -> dict:
        case = {"name": name, "kind": "proof", "public_point": client["ephemeral_point"],
                "commitment": proof["commitment"], "response": proof["response"],
                "user_id": proof["user_id"], "other_info": proof["other_info"], "error": error}
        case.update(change)
        return case

    swapped = bytes.fromhex(yak_full["server_random"]) + bytes.fromhex(yak_full["client_random"])
    cases += [
        bad_proof("NIZK response zero", "InvalidScalar", response="00" * 32),
        bad_proof("NIZK response equal to n", "InvalidScalar", response=f"{N:064x}"),
        bad_proof("NIZK response of 31 bytes", "InvalidScalar", response=proof["response"][2:]),
        bad_proof("NIZK response plus one", "InvalidProof", response=f"{(response + 1) % N:064x}"),
        bad_proof("tampered commitment (V + G)", "InvalidProof", commitment=coincurve.PublicKey.combine_keys(
            [v_point, coincurve.PublicKey.from_secret((1).to_bytes(32, "big"))]).format().hex()),
        bad_proof("commitment not on the curve", "InvalidPoint", commitment="02" + f"{off_curve:064x}"),
        bad_proof("proof checked against another user_id", "InvalidProof", user_id=server["proof"]["user_id"]),
        bad_proof("proof checked with other randoms", "InvalidProof", other_info=swapped.hex()),
        bad_proof("proof checked against another public point", "InvalidProof",
                  public_point=server["ephemeral_point"]),
        bad_proof("public point at infinity", "InvalidPoint", public_point="00"),
    ]
    # X_S = −R_S would make R_S + X_S infinity: the client must refuse it, not compute 0·(k + x).
    minus_r = r_server.format()
    minus_r = bytes([minus_r[0] ^ 1]) + minus_r[1:]
    cases.append({"name": "peer ephemeral is minus the peer's nonce point", "kind": "yak_premaster",
                  "long_term": client["anchor"]["k"], "ephemeral": client["ephemeral"],
                  "peer_nonce_point": server["anchor"]["nonce_point"], "peer_ephemeral": minus_r.hex(),
                  "error": "InvalidPoint"})
    return cases


def main() -> None:
    server, k_s = anchor("server", b"funding")  # anchors.json's anchor; its R has even y
    # YAK depends on the sign of R, so the client's R is the first with odd y: the vectors
    # then cover both parities.
    client, k_c = next((doc, k) for doc, k in (anchor("client", b"funding client %d" % i) for i in range(64))
                       if doc["nonce_point"].startswith("03"))
    valid = [
        ecdh_full(server, k_s, client, k_c),
        ecdh_server_only(server, k_s),
        yak("yak_btc full", server, k_s, client, k_c),
        yak("yak_btc server-only", server, k_s, None, None),
    ]
    for case in valid:
        case["suites"] = suite_schedules(case)
    doc = {"source": "ECDH-BTC and YAK-BTC premasters over real anchor nonces, RFC 8235 Schnorr NIZKs "
                     "(milagro_tls/ciphersuites/nizk.py transcript) and RFC 7627 extended master secrets "
                     "(test keys only, never use them)",
           "generated_by": GENERATED_BY, "valid": valid, "invalid": invalid_cases(valid[2])}
    (HERE / "key_agreement.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
    print("vectors written to", HERE / "key_agreement.json")
