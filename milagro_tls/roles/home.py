"""A role's home directory: its anchored identity, its fallback X.509 certificate, its secrets.

    HOME/fee.key, HOME/wallet.json, HOME/identities/NAME/...   the party (identity.party)
    HOME/state.db                                              the default store (roles.store)
    HOME/tls/fallback-cert.pem, fallback-key.pem (0600)        the generated fallback certificate
    HOME/secrets/NAME.key (0600)                               32-byte role secrets (cookie keys, ...)

The identity is created by ``Party.create`` on first start (there is no second implementation);
everything here is idempotent, so every start (and every gunicorn worker) calls the same code.
"""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..chain.source import ChainSource
from ..errors import IdentityError
from ..identity.keys import read_key_file, write_key_file
from ..identity.marker import MarkerType
from ..identity.party import Party
from .store import Store, open_store

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
CERT_LIFETIME = datetime.timedelta(days=365)
#: A certificate this close to expiry is replaced at start, so a long-running server does not
#: serve an expired one the next day.
RENEW_BEFORE = datetime.timedelta(days=7)


class RoleHomeError(IdentityError):
    """The home directory holds something that contradicts what the role asks for."""


def _san_entries(hostnames: Iterable[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys((*DEFAULT_HOSTNAMES, *hostnames)):     # ordered, unique
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with a 0600 file (a temporary file created 0600, renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)     # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class RoleHome:
    def __init__(self, path: str | os.PathLike, role: str, name: str) -> None:
        self.path = Path(path)
        self.role = role
        self.name = name
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return f"<RoleHome {self.role} {self.name} at {self.path}>"

    # --- identity -----------------------------------------------------------------------
    def party(self) -> Party:
        """The identity as stored (IdentityError if it was never created)."""
        return Party.load(self.path, self.name)

    def has_identity(self) -> bool:
        return (self.path / "identities" / self.name / "anchor.json").exists()

    def ensure_identity(self, source: ChainSource, *, urls: Sequence[str] = (), role_data: dict | None = None,
                        root_chains: Sequence[MarkerType] = (MarkerType.ACTIVITY_LOG_ROOT,),
                        confirm_blocks: int = 6, batch_key: bytes | None = None) -> Party:
        """The role's anchored identity: created (and anchored) on first start, confirmed if it
        was left pending, and checked against what the role asks for. An anchored certificate
        cannot change: a different role or a missing root chain is a RoleHomeError, never a
        silent second identity. AnchorNotMined (identity.party) while the anchor waits for a block."""
        if not self.has_identity():
            return Party.create(self.path, source, role=self.role, name=self.name, urls=tuple(urls),
                                role_data=role_data, root_chains=tuple(root_chains),
                                confirm_blocks=confirm_blocks, batch_key=batch_key)
        party = self.party()
        certificate = party.certificate
        if certificate.role != self.role:
            raise RoleHomeError(f"identity {self.name!r} in {self.path} is a {certificate.role!r}, not a {self.role!r}")
        anchored = {entry.type for entry in certificate.root_chains}
        missing = [MarkerType(kind).name for kind in root_chains if MarkerType(kind) not in anchored]
        if batch_key is not None and certificate.batch_key != batch_key:
            raise RoleHomeError(f"identity {self.name!r} in {self.path} does not name this batch key")
        if missing:
            raise RoleHomeError(f"identity {self.name!r} was anchored without the root chain(s) {', '.join(missing)}; "
                                "a new identity (another name or home) is needed")
        if party.locator is None:
            party.confirm(source)
        return party

    # --- the X.509 fallback certificate ---------------------------------------------------
    @property
    def fallback_paths(self) -> tuple[Path, Path]:
        return self.path / "tls" / "fallback-cert.pem", self.path / "tls" / "fallback-key.pem"

    def fallback_certificate(self, cert: str | os.PathLike | None = None, key: str | os.PathLike | None = None,
                             hostnames: Iterable[str] = DEFAULT_HOSTNAMES, *,
                             now: datetime.datetime | None = None) -> tuple[Path, Path]:
        """The certificate gunicorn serves to standard clients (and which makes it call the
        ssl_context hook at all): ``cert``/``key`` when given, else a self-signed EC P-256
        certificate for localhost, 127.0.0.1 and ``hostnames``, generated once and regenerated
        when it nears expiry or does not cover a name asked for."""
        if (cert is None) != (key is None):
            raise ValueError("give both --cert and --key, or neither")
        if cert is not None:
            cert_path, key_path = Path(cert), Path(key)
            for path in (cert_path, key_path):
                if not path.is_file():
                    raise FileNotFoundError(f"fallback certificate file {path} does not exist")
            return cert_path, key_path
        now = now or datetime.datetime.now(datetime.timezone.utc)
        cert_path, key_path = self.fallback_paths
        wanted = _san_entries(hostnames)
        if cert_path.exists() and key_path.exists() and self._still_good(cert_path, wanted, now):
            return cert_path, key_path
        cert_path.parent.mkdir(mode=0o700, exist_ok=True)
        private = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} ({self.role})"[:64])])
        ski = x509.SubjectKeyIdentifier.from_public_key(private.public_key())
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CERT_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(private, hashes.SHA256()))
        # Key first: a crash between the two leaves a certificate that does not match it,
        # which _still_good notices, and the pair is made again.
        _write_private(key_path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
        _write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
        return cert_path, key_path

    @staticmethod
    def _still_good(cert_path: Path, wanted: list[x509.GeneralName], now: datetime.datetime) -> bool:
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(cert_path.with_name("fallback-key.pem").read_bytes(), None)
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, x509.ExtensionNotFound, OSError):
            return False
        same_key = key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo) == \
            certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return (same_key and certificate.not_valid_after_utc - RENEW_BEFORE > now
                and all(entry in san for entry in wanted))

    # --- secrets and the store --------------------------------------------------------------
    def secret(self, name: str) -> bytes:
        """32 random bytes kept in HOME/secrets/NAME.key (0600), made on first use. Concurrent
        first uses (workers) agree: the file appears complete or not at all (hard link)."""
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"secret name {name!r}: letters, digits, - and _ only")
        directory = self.path / "secrets"
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / f"{name}.key"
        if not path.exists():
            tmp = directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            write_key_file(tmp, os.urandom(32))
            try:
                os.link(tmp, path)             # fails if another worker got there first
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return read_key_file(path)

    def open_store(self, url: str | None = None) -> Store:
        """The role's store: ``url`` (``--db``) or SQLite in this home."""
        return open_store(url, self.path)
