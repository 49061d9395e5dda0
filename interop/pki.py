"""A throwaway X.509 PKI for the standard-suite fallback: roots and ECDSA P-256 leaves that pass
``cryptography``'s WebPKI profile, which our client's fallback verifier enforces."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertificateFiles:
    """PEM files of one leaf: ``ca`` is its root, ``cert`` the leaf, ``key`` its key."""
    ca: Path
    cert: Path
    key: Path
    sha256: str          # of the leaf's DER, to recognise it at a peer


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def issue(directory: Path, label: str, dns_names: tuple[str, ...], *, leaf_key_type: str = "ecdsa") -> CertificateFiles:
    """A fresh root and one server leaf for ``dns_names`` (ECDSA P-256, or RSA-2048 for the
    ECDHE_RSA suites), written under ``directory``."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if leaf_key_type == "rsa"
                else ec.generate_private_key(ec.SECP256R1()))
    root_name = _name(f"interop {label} root")
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name(dns_names[0])).issuer_name(root_name)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                           critical=False)
            .sign(root_key, hashes.SHA256()))
    files = CertificateFiles(ca=directory / f"{label}.ca.pem", cert=directory / f"{label}.cert.pem",
                             key=directory / f"{label}.key.pem",
                             sha256=leaf.fingerprint(hashes.SHA256()).hex())
    files.ca.write_bytes(_pem(root))
    files.cert.write_bytes(_pem(leaf))
    files.key.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    return files
