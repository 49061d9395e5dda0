"""RoleHome: the identity through Party.create (once), the fallback certificate, secrets."""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509

from milagro_tls.identity.marker import MarkerType
from milagro_tls.identity.party import Party
from milagro_tls.roles.home import RoleHome, RoleHomeError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def serve_once(cert, key) -> int:
    """A one-connection TLS server on loopback with this certificate; returns its port."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def accept():
        with listener:
            raw, _ = listener.accept()
            try:
                with server_context.wrap_socket(raw, server_side=True) as tls:
                    tls.sendall(b"hello")
            except ssl.SSLError:         # the client refused the certificate: its side asserts that
                raw.close()
    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def test_fallback_certificate_is_generated_once_and_trusted_as_its_own_ca(tmp_path):
    home = RoleHome(tmp_path, "idp", "idp.example")
    cert, key = home.fallback_certificate(hostnames=("idp.example", "10.0.0.7"))
    assert (cert, key) == home.fallback_paths and mode(key) == 0o600
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "idp.example"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                        ipaddress.ip_address("10.0.0.7")]
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert datetime.timedelta(days=365) <= lifetime <= datetime.timedelta(days=366)
    # Same names (or fewer) next start: the same certificate.
    assert home.fallback_certificate(hostnames=("idp.example",)) == (cert, key)
    assert x509.load_pem_x509_certificate(cert.read_bytes()) == certificate
    # A standard client that takes the file as its CA verifies it, for a name and an IP.
    for hostname in ("localhost", "127.0.0.1", "idp.example"):
        client = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", serve_once(cert, key))) as raw, \
                client.wrap_socket(raw, server_hostname=hostname) as tls:
            assert tls.recv(5) == b"hello"
    client = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", serve_once(cert, key))) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            client.wrap_socket(raw, server_hostname="other.example")


def test_fallback_certificate_is_replaced_near_expiry_or_for_a_new_name(tmp_path):
    home = RoleHome(tmp_path, "idp", "idp.example")
    cert, key = home.fallback_certificate()
    first = x509.load_pem_x509_certificate(cert.read_bytes())
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=360)
    home.fallback_certificate(now=later)
    renewed = x509.load_pem_x509_certificate(cert.read_bytes())
    assert renewed.serial_number != first.serial_number and renewed.not_valid_after_utc > later
    home.fallback_certificate(hostnames=("new.example",), now=later)
    widened = x509.load_pem_x509_certificate(cert.read_bytes())
    assert "new.example" in widened.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    # A key that does not match the certificate (a crash between the two writes) is remade.
    key.write_bytes(b"garbage")
    home.fallback_certificate(hostnames=("new.example",), now=later)
    assert x509.load_pem_x509_certificate(cert.read_bytes()).serial_number != widened.serial_number
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)


def test_given_certificate_files_are_used_as_they_are(tmp_path):
    home = RoleHome(tmp_path / "home", "idp", "idp.example")
    mine, my_key = tmp_path / "c.pem", tmp_path / "k.pem"
    mine.write_text("x"), my_key.write_text("y")
    assert home.fallback_certificate(mine, my_key) == (mine, my_key)
    assert not home.fallback_paths[0].exists()
    with pytest.raises(ValueError, match="give both --cert and --key, or neither"):
        home.fallback_certificate(mine)
    with pytest.raises(FileNotFoundError, match="missing.pem does not exist"):
        home.fallback_certificate(tmp_path / "missing.pem", my_key)


def test_secrets_are_private_stable_and_agreed_by_concurrent_first_uses(tmp_path):
    home = RoleHome(tmp_path, "idp", "idp.example")
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: home.secret("session-cookie"), range(16)))
    assert len(set(values)) == 1 and len(values[0]) == 32
    assert mode(tmp_path / "secrets" / "session-cookie.key") == 0o600
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["session-cookie.key"]    # no temp files left
    assert RoleHome(tmp_path, "idp", "idp.example").secret("session-cookie") == values[0]
    assert home.secret("other") != values[0]
    with pytest.raises(ValueError, match="letters, digits"):
        home.secret("../escape")


def test_ensure_identity_creates_once_then_loads_and_checks(world, tmp_path):
    home = RoleHome(tmp_path, "idp", "idp-home.example")
    party = home.ensure_identity(world.source, urls=("https://localhost:1",))
    assert party.locator is not None and party.certificate.role == "idp"
    assert [entry.type for entry in party.certificate.root_chains] == [MarkerType.ACTIVITY_LOG_ROOT]
    again = home.ensure_identity(world.source, urls=("https://localhost:1",))
    assert again.certificate.digest() == party.certificate.digest() and again.locator == party.locator
    assert home.party().certificate.digest() == party.certificate.digest()
    with pytest.raises(RoleHomeError, match=r"is a 'idp', not a 'dta'"):
        RoleHome(tmp_path, "dta", "idp-home.example").ensure_identity(world.source)
    with pytest.raises(RoleHomeError, match="anchored without the root chain.*REVOCATION_LIST_ROOT"):
        home.ensure_identity(world.source, root_chains=(MarkerType.ACTIVITY_LOG_ROOT,
                                                        MarkerType.REVOCATION_LIST_ROOT))


def test_ensure_identity_confirms_a_pending_anchor(world, tmp_path):
    pending = Party.create(tmp_path, world.source, role="service", name="late.example", confirm_blocks=0,
                           root_chains=(MarkerType.ACTIVITY_LOG_ROOT,))
    assert pending.locator is None
    world.source.mine(1)
    party = RoleHome(tmp_path, "service", "late.example").ensure_identity(world.source)
    assert party.locator is not None and party.locator.txid == pending.anchor_txid
