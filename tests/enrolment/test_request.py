"""The ECIES-sealed enrolment request and the poll MAC."""
import hashlib
import hmac
import json

import coincurve
import ecies
import pytest
import rfc8785

from milagro_tls.chain.network import Network
from milagro_tls.enrolment import (EnrolmentRequest, MalformedEnrolment, check_poll_mac, enrolment_key_of,
                                   open_enrolment, poll_mac, seal_enrolment)
from milagro_tls.enrolment.request import ECIES, MAX_ENROLMENT_SIZE
from milagro_tls.errors import MalformedInput
from milagro_tls.identity.certificate import BirthCertificate

BATCH_KEY = bytes.fromhex("11" * 32)
AES_KEY = bytes(range(16))


def pat_certificate(**changes) -> BirthCertificate:
    fields = dict(role="pat", name="pat-0001", pubkey=coincurve.PrivateKey().public_key.format(),
                  network=Network.REGTEST.label, batch_key=BATCH_KEY, created="2025-01-01T00:00:00Z")
    fields.update(changes)
    return BirthCertificate(**fields)


@pytest.fixture
def tbs_key():
    return coincurve.PrivateKey()


def seal_doc(tbs_key, doc) -> bytes:
    """Seal any JSON document exactly as the PAT would, to test what open_enrolment refuses."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return ecies.encrypt(tbs_key.public_key.format(), raw, ECIES)


def good_doc(cert=None) -> dict:
    cert = cert or pat_certificate()
    return {"version": 1, "certificate": cert.canonical_bytes().decode(), "aes_key": AES_KEY.hex(),
            "nonce": "ab" * 16}


def test_round_trip_gives_back_certificate_key_and_nonce(tbs_key):
    cert = pat_certificate()
    blob = seal_enrolment(tbs_key.public_key.format(), cert, AES_KEY, nonce=b"\x07" * 16)
    request = open_enrolment(tbs_key, blob, batch_key=BATCH_KEY)
    assert request.certificate.canonical_bytes() == cert.canonical_bytes()
    assert request.aes_key == AES_KEY and request.nonce == b"\x07" * 16
    assert AES_KEY.hex() not in repr(request)
    # The blob does not carry the AES key or the certificate in clear.
    assert AES_KEY.hex().encode() not in blob and cert.pubkey.hex().encode() not in blob
    # The private key as raw bytes works the same.
    assert open_enrolment(tbs_key.secret, blob).certificate == cert


def test_two_seals_differ_and_nonce_is_random(tbs_key):
    cert = pat_certificate()
    first = open_enrolment(tbs_key, seal_enrolment(tbs_key.public_key.format(), cert, AES_KEY))
    second = open_enrolment(tbs_key, seal_enrolment(tbs_key.public_key.format(), cert, AES_KEY))
    assert first.nonce != second.nonce


def test_another_tbs_key_cannot_open(tbs_key):
    blob = seal_enrolment(tbs_key.public_key.format(), pat_certificate(), AES_KEY)
    with pytest.raises(MalformedEnrolment, match="does not decrypt under this TBS's enrolment key"):
        open_enrolment(coincurve.PrivateKey(), blob)


@pytest.mark.parametrize("where", [0, 70, -1])
def test_any_flipped_byte_is_refused(tbs_key, where):
    blob = bytearray(seal_enrolment(tbs_key.public_key.format(), pat_certificate(), AES_KEY))
    blob[where] ^= 0x01
    with pytest.raises(MalformedEnrolment, match="does not decrypt"):
        open_enrolment(tbs_key, bytes(blob))


def test_truncated_and_oversized_blobs(tbs_key):
    with pytest.raises(MalformedEnrolment, match="does not decrypt"):
        open_enrolment(tbs_key, b"\x04" + b"\x00" * 20)
    with pytest.raises(MalformedEnrolment, match=f"exceeds {MAX_ENROLMENT_SIZE}"):
        open_enrolment(tbs_key, b"\x00" * (MAX_ENROLMENT_SIZE + 1))
    with pytest.raises(MalformedEnrolment, match="an enrolment is bytes"):
        open_enrolment(tbs_key, "text")


def test_batch_key_mismatch_role_and_missing_batch_key(tbs_key):
    blob = seal_enrolment(tbs_key.public_key.format(), pat_certificate(), AES_KEY)
    with pytest.raises(MalformedEnrolment, match="another batch key than this TBS's"):
        open_enrolment(tbs_key, blob, batch_key=b"\x22" * 32)
    service = pat_certificate(role="service")
    with pytest.raises(MalformedEnrolment, match="for a PAT, not a 'service'"):
        open_enrolment(tbs_key, seal_enrolment(tbs_key.public_key.format(), service, AES_KEY))
    no_batch = pat_certificate(batch_key=None)
    with pytest.raises(MalformedEnrolment, match="names no batch key"):
        open_enrolment(tbs_key, seal_enrolment(tbs_key.public_key.format(), no_batch, AES_KEY))


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=True), r"enrolment version must be an integer"),
    (lambda d: d.update(version=2), "unsupported enrolment version 2"),
    (lambda d: d.update(extra=1), r"unknown \['extra'\]"),
    (lambda d: d.pop("nonce"), r"missing \['nonce'\]"),
    (lambda d: d.update(aes_key="00" * 32), "aes_key must be 16 bytes, not 32"),
    (lambda d: d.update(aes_key=AES_KEY.hex().upper()), "aes_key must be a lowercase hex string"),
    (lambda d: d.update(nonce="zz" * 16), "nonce is not hex"),
    (lambda d: d.update(certificate={"a": 1}), "certificate must be a string"),
    (lambda d: d.update(certificate=d["certificate"].replace('{"', '{ "', 1)), "not in RFC 8785 canonical form"),
])
def test_malformed_plaintexts_are_refused_precisely(tbs_key, change, message):
    doc = good_doc()
    change(doc)
    with pytest.raises(MalformedEnrolment, match=message):
        open_enrolment(tbs_key, seal_doc(tbs_key, doc))


def test_duplicate_fields_non_json_and_non_objects(tbs_key):
    doc = good_doc()
    raw = rfc8785.dumps(doc)[:-1] + b',"nonce":"' + b"cd" * 16 + b'"}'
    with pytest.raises(MalformedEnrolment, match="duplicate field 'nonce'"):
        open_enrolment(tbs_key, seal_doc(tbs_key, raw))
    with pytest.raises(MalformedEnrolment, match="is not JSON"):
        open_enrolment(tbs_key, seal_doc(tbs_key, b"\xff\xfe"))
    with pytest.raises(MalformedEnrolment, match="not a JSON object"):
        open_enrolment(tbs_key, seal_doc(tbs_key, b"[1]"))
    with pytest.raises(MalformedEnrolment, match="NaN is not JSON"):
        open_enrolment(tbs_key, seal_doc(tbs_key, b'{"version": NaN}'))


def test_seal_refuses_bad_inputs(tbs_key):
    with pytest.raises(ValueError, match="16 bytes"):
        seal_enrolment(tbs_key.public_key.format(), pat_certificate(), b"short")
    with pytest.raises(ValueError, match="enrolment key is unusable"):
        seal_enrolment(b"\x02" + b"\x00" * 32, pat_certificate(), AES_KEY)


def test_enrolment_key_of_a_tbs_certificate(tbs_key):
    key = tbs_key.public_key.format()
    tbs = pat_certificate(role="tbs", name="tbs.example", batch_key=None, role_data={"enrolment_key": key.hex()})
    assert enrolment_key_of(tbs) == key
    for role_data, message in [(None, "must be a lowercase hex string"),
                               ({"enrolment_key": "02" + "00" * 32}, "not a secp256k1 point"),
                               ({"enrolment_key": tbs_key.public_key.format(compressed=False).hex()},
                                "must be 33 bytes")]:
        cert = pat_certificate(role="tbs", name="tbs.example", batch_key=None, role_data=role_data)
        with pytest.raises(MalformedInput, match=message):
            enrolment_key_of(cert)


def test_poll_mac_is_hmac_sha256_of_poll_and_id():
    expected = hmac.new(AES_KEY, b"poll42", hashlib.sha256).hexdigest()
    assert poll_mac(AES_KEY, "42") == expected
    assert check_poll_mac(AES_KEY, "42", expected)
    assert not check_poll_mac(AES_KEY, "43", expected)
    assert not check_poll_mac(b"\x00" * 16, "42", expected)
    assert not check_poll_mac(AES_KEY, "42", expected[:-2])
    assert not check_poll_mac(AES_KEY, "42", None)
    assert not check_poll_mac(AES_KEY, "42", "é" * 64)


def test_request_json_form_is_the_wire_form():
    cert = pat_certificate()
    request = EnrolmentRequest(cert, AES_KEY, b"\x01" * 16)
    assert request.to_json() == {"version": 1, "certificate": cert.canonical_bytes().decode(),
                                 "aes_key": AES_KEY.hex(), "nonce": "01" * 16}
