"""What ``getpeercert()`` returns: the verified peer as a dict (or its certificate's bytes)."""
from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..chain.hashes import to_display_hex
from ..trust import AuthenticatedPeer


def bitcoin_peer_dict(peer: AuthenticatedPeer) -> dict[str, Any]:
    identity = peer.identity
    shown_name = peer.name or identity.certificate.name
    return {
        # The trust store's name, never the certificate's: that one is self-asserted.
        "name": peer.name,
        "authenticated": peer.authenticated,
        "roles": sorted(peer.entry.roles) if peer.entry else [],
        "certificate": identity.certificate.to_json(),
        "certificate_sha256": identity.certificate.digest().hex(),
        "locator": identity.locator.to_json(),
        "confirmations": identity.confirmations,
        "height": identity.height,
        "block_hash": to_display_hex(identity.block_hash),
        "warnings": list(identity.warnings),
        # The shape ssl.getpeercert() gives, for code that reads the subject.
        "subject": ((("commonName", shown_name),),),
    }


#: OpenSSL prints certificate times with English month names whatever the locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _openssl_time(moment) -> str:
    """ASN1_TIME_print's form, which ssl.cert_time_to_seconds parses: 'Jan  5 03:04:05 2026 GMT'."""
    return (f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d} {moment.year} GMT")


def _openssl_serial(serial: int) -> str:
    """i2a_ASN1_INTEGER's form: the magnitude's bytes in upper-case hex (so an even length)."""
    magnitude = abs(serial).to_bytes(max(1, (abs(serial).bit_length() + 7) // 8), "big")
    return ("-" if serial < 0 else "") + magnitude.hex().upper()


def _alt_name(general_name) -> tuple[str, str] | None:
    """One subjectAltName entry as _ssl writes it (IPv6 in full upper-case groups)."""
    if isinstance(general_name, x509.DNSName):
        return "DNS", general_name.value
    if isinstance(general_name, x509.IPAddress):
        address = general_name.value
        if address.version == 6:
            packed = address.packed
            return "IP Address", ":".join(f"{int.from_bytes(packed[i:i + 2], 'big'):X}" for i in range(0, 16, 2))
        return "IP Address", str(address)
    if isinstance(general_name, x509.RFC822Name):
        return "email", general_name.value
    if isinstance(general_name, x509.UniformResourceIdentifier):
        return "URI", general_name.value
    return None


def x509_peer_dict(certificate: x509.Certificate) -> dict[str, Any]:
    """ssl's getpeercert() dict for a verified X.509 leaf, field for field as _ssl builds it
    (OCSP, caIssuers and crlDistributionPoints aside, which callers of getpeercert rarely read)."""
    def name(value: x509.Name):
        return tuple(tuple((attribute.oid._name, attribute.value) for attribute in rdn) for rdn in value.rdns)
    peer = {"subject": name(certificate.subject), "issuer": name(certificate.issuer),
            "version": certificate.version.value + 1,
            "serialNumber": _openssl_serial(certificate.serial_number),
            "notBefore": _openssl_time(certificate.not_valid_before_utc),
            "notAfter": _openssl_time(certificate.not_valid_after_utc)}
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return peer
    peer["subjectAltName"] = tuple(entry for entry in map(_alt_name, sans) if entry is not None)
    return peer


def peer_binary(peer: AuthenticatedPeer | None, certificate: x509.Certificate | None) -> bytes | None:
    """binary_form=True: the canonical birth certificate (our suites), or DER (fallback)."""
    if peer is not None:
        return peer.identity.certificate.canonical_bytes()
    if certificate is not None:
        return certificate.public_bytes(Encoding.DER)
    return None
