"""getpeercert() for an X.509 peer (the standard-suite fallback) is ssl's dict, field for field.

The reference is the dict CPython's _ssl builds from the same certificate
(``ssl._ssl._test_decode_cert``, what ssl's own tests use): the serial's even-length hex, the
day padded with a space, IPv6 in full groups, subjectAltName in the certificate's order and
multi-valued RDNs kept together.
"""
from __future__ import annotations

import datetime
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from milagro_tls.adapters.peercert import x509_peer_dict

from helpers.pki import ec_key, make_root

decode_cert = getattr(ssl._ssl, "_test_decode_cert", None)
pytestmark = pytest.mark.skipif(decode_cert is None, reason="this Python has no ssl._ssl._test_decode_cert")

UTC = datetime.timezone.utc


def certificate(*, serial=12345, not_before=datetime.datetime(2026, 1, 5, 3, 4, 5, tzinfo=UTC),
                subject=None, alt_names=None) -> x509.Certificate:
    root = make_root()
    subject = subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(root.certificate.subject)
               .public_key(ec_key().public_key()).serial_number(serial)
               .not_valid_before(not_before).not_valid_after(not_before + datetime.timedelta(days=35)))
    if alt_names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(root.key, hashes.SHA256())


def reference(cert: x509.Certificate, tmp_path) -> dict:
    from cryptography.hazmat.primitives.serialization import Encoding
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return decode_cert(str(path))


@pytest.mark.parametrize("serial", [1, 0x0F, 0x80, 0x100, 0x0C34BB1DEA859E2CEA7C5D02ABF578FFF51FF951, 2**159 - 1])
def test_serial_number_is_printed_as_openssl_does(serial, tmp_path):
    cert = certificate(serial=serial)
    assert x509_peer_dict(cert) == reference(cert, tmp_path)


@pytest.mark.parametrize("day", [5, 25])
def test_times_pad_the_day_with_a_space_and_parse_with_ssl(day, tmp_path):
    cert = certificate(not_before=datetime.datetime(2026, 3, day, 3, 4, 5, tzinfo=UTC))
    ours = x509_peer_dict(cert)
    assert ours == reference(cert, tmp_path)
    assert ssl.cert_time_to_seconds(ours["notBefore"]) == int(cert.not_valid_before_utc.timestamp())


def test_subject_alt_names_keep_their_order_and_ssl_spelling(tmp_path):
    cert = certificate(alt_names=[x509.IPAddress(ipaddress.ip_address("2001:db8::1")), x509.DNSName("localhost"),
                                  x509.RFC822Name("ops@example.org"),
                                  x509.UniformResourceIdentifier("https://example.org/"),
                                  x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    ours = x509_peer_dict(cert)
    assert ours == reference(cert, tmp_path)
    assert ours["subjectAltName"][0] == ("IP Address", "2001:DB8:0:0:0:0:0:1")


def test_subject_with_several_attributes_and_a_multi_valued_rdn(tmp_path):
    subject = x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]),
    ])
    cert = certificate(subject=subject, alt_names=[x509.DNSName("localhost")])
    assert x509_peer_dict(cert) == reference(cert, tmp_path)


def test_no_subject_alt_name_extension_means_no_key(tmp_path):
    cert = certificate()
    assert "subjectAltName" not in x509_peer_dict(cert)
    assert x509_peer_dict(cert) == reference(cert, tmp_path)
