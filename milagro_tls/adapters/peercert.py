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


def x509_peer_dict(certificate: x509.Certificate) -> dict[str, Any]:
    """The subset of ssl's getpeercert() dict that callers read, from a verified X.509 leaf."""
    def name(value: x509.Name):
        return tuple(((attribute.oid._name, attribute.value),) for attribute in value)
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        alt_names = tuple(("DNS", n) for n in sans.get_values_for_type(x509.DNSName)) + tuple(
            ("IP Address", str(ip)) for ip in sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        alt_names = ()
    return {"subject": name(certificate.subject), "issuer": name(certificate.issuer),
            "serialNumber": format(certificate.serial_number, "X"),
            "notBefore": certificate.not_valid_before_utc.strftime("%b %d %H:%M:%S %Y GMT"),
            "notAfter": certificate.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT"),
            "subjectAltName": alt_names}


def peer_binary(peer: AuthenticatedPeer | None, certificate: x509.Certificate | None) -> bytes | None:
    """binary_form=True: the canonical birth certificate (our suites), or DER (fallback)."""
    if peer is not None:
        return peer.identity.certificate.canonical_bytes()
    if certificate is not None:
        return certificate.public_bytes(Encoding.DER)
    return None
