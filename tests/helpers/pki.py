"""Throwaway X.509 PKIs for the standard-suite fallback: a root, an intermediate and leaves
that pass ``cryptography``'s WebPKI profile (the CA/Browser Forum baseline it enforces)."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    key: object                      # the private key
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def ec_key(curve: ec.EllipticCurve = ec.SECP256R1()):
    return ec.generate_private_key(curve)


def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key, not_before, not_after) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def _sign(builder: x509.CertificateBuilder, signer) -> x509.Certificate:
    return builder.sign(signer, hashes.SHA256())


def make_root(common_name: str = "Throwaway Root CA") -> Issued:
    key = ec_key()
    builder = (_builder(common_name, _name(common_name), key, NOW - DAY, NOW + 3650 * DAY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_ca_usage(), critical=True))
    return Issued(key, _sign(builder, key))


def make_intermediate(issuer: Issued, common_name: str = "Throwaway Intermediate CA") -> Issued:
    key = ec_key()
    builder = (_builder(common_name, issuer.certificate.subject, key, NOW - DAY, NOW + 1825 * DAY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_ca_usage(), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    return Issued(key, _sign(builder, issuer.key))


def make_leaf(issuer: Issued | None, key, *, dns_names=("server.example",), ip_addresses=(),
              not_before=None, not_after=None) -> Issued:
    """A TLS server certificate; ``issuer=None`` makes it self-signed."""
    names = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    signer_key = key if issuer is None else issuer.key
    issuer_name = _name("self-signed leaf") if issuer is None else issuer.certificate.subject
    rsa_leaf = isinstance(key, rsa.RSAPrivateKey)
    subject = "self-signed leaf" if issuer is None else "leaf"
    builder = (_builder(subject, issuer_name, key, not_before or NOW - DAY, not_after or NOW + 90 * DAY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=rsa_leaf, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                              critical=False))
    return Issued(key, _sign(builder, signer_key))


def write_chain(directory: Path, name: str, leaf: Issued, *intermediates: Issued) -> tuple[Path, Path]:
    """PEM files for ``ssl.SSLContext.load_cert_chain``: (leaf + intermediates, key)."""
    certfile, keyfile = directory / f"{name}.chain.pem", directory / f"{name}.key.pem"
    certfile.write_bytes(leaf.pem + b"".join(i.pem for i in intermediates))
    keyfile.write_bytes(leaf.key_pem())
    return certfile, keyfile


def make_ca_and_leaf(directory: Path, hostname: str = "localhost") -> tuple[Path, Path, Path]:
    """(CA PEM, leaf certificate PEM, leaf key PEM): a root and an ECDSA P-256 leaf for ``hostname``."""
    root = make_root()
    leaf = make_leaf(root, ec_key(), dns_names=(hostname,))
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(root.pem)
    certfile, keyfile = write_chain(directory, hostname, leaf)
    return ca_path, certfile, keyfile
