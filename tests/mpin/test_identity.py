"""milagro_tls.mpin.identity: the ID encoding, H(ID), time-permit points, day numbers."""
import struct

import pytest

from milagro_tls.mpin import curve, identity
from milagro_tls.mpin.errors import MalformedIdentity


def test_encoding_is_length_prefixed_utf8():
    encoded = identity.encode_identity("https://idp.example", "ålice")
    assert encoded == b"\x00\x13https://idp.example\x00\x06" + "ålice".encode()
    assert identity.decode_identity(encoded) == ("https://idp.example", "ålice")
    assert identity.MpinIdentity.decode(encoded).encoded == encoded


def test_encoding_is_unambiguous():
    # Without length prefixes "ab"+"c" and "a"+"bc" would collide.
    assert identity.encode_identity("ab", "c") != identity.encode_identity("a", "bc")
    assert identity.hash_identity(identity.encode_identity("ab", "c")) != \
        identity.hash_identity(identity.encode_identity("a", "bc"))


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x01a", b"\x00\x01a\x00\x00",
                                 b"\x00\x00\x00\x01b", b"\x00\x01a\x00\x01b\x00",
                                 b"\x00\x01\xff\x00\x01b", b"\x00\x05ab\x00\x01b"])
def test_decode_refuses_malformed(raw):
    with pytest.raises(MalformedIdentity):
        identity.decode_identity(raw)


def test_encode_refuses_empty_or_long_fields():
    with pytest.raises(MalformedIdentity):
        identity.encode_identity("", "sub")
    with pytest.raises(MalformedIdentity):
        identity.encode_identity("iss", "x" * 65536)
    with pytest.raises(MalformedIdentity):
        identity.MpinIdentity("iss", "")


def test_hash_identity_is_rfc9380_with_the_id_tag():
    encoded = identity.encode_identity("https://idp.example", "alice")
    assert identity.hash_identity(encoded) == curve.hash_to_g1(encoded, identity.DST_ID)
    assert identity.DST_ID == b"MILAGRO-TLS-V1-MPIN-ID_BLS12381G1_XMD:SHA-256_SSWU_RO_"
    with pytest.raises(MalformedIdentity):
        identity.hash_identity(b"not an id")


def test_time_permit_point_binds_date_and_identity():
    h = identity.hash_identity(identity.encode_identity("https://idp.example", "alice"))
    expected = curve.hash_to_g1(struct.pack(">I", 20000) + curve.encode_g1(h), identity.DST_TP)
    assert identity.hash_time_permit(20000, h) == expected
    assert identity.hash_time_permit(20001, h) != expected
    assert identity.DST_TP == b"MILAGRO-TLS-V1-MPIN-TP_BLS12381G1_XMD:SHA-256_SSWU_RO_"
    encoded = identity.encode_identity("https://idp.example", "alice")
    assert identity.authentication_point(encoded, 20000) == h + expected
    for bad in (-1, 1 << 32, True, "1"):
        with pytest.raises(MalformedIdentity):
            identity.hash_time_permit(bad, h)


def test_day_numbers():
    assert identity.day_number(0) == 0
    assert identity.day_number(86399.9) == 0
    assert identity.day_number(86400) == 1
    assert identity.day_number(1_700_000_000) == 19675
