"""Passphrase-encrypted key files (scrypt + AES-256-GCM): every kind of key file the package
writes is encrypted when MILAGRO_KEY_PASSPHRASE is set, reads back to the same secret with it,
and is refused without it, with a wrong one, or when its header was altered."""
from __future__ import annotations

import json
import stat

import pytest

from milagro_tls.errors import IdentityError
from milagro_tls.identity import keys as keymod
from milagro_tls.identity.batch import BatchKey
from milagro_tls.identity.keys import (ChainKey, IdentityKey, PASSPHRASE_ENV, encrypt_key_file,
                                       is_encrypted_key_file, read_key_file, write_key_file)
from milagro_tls.identity.wallet import load_fee_key
from milagro_tls.mpin.shares import MasterSecret
from milagro_tls.roles.dta.idps import _read_secret
from milagro_tls.roles.home import RoleHome
from milagro_tls.roles.idp.keys import KeyRing
from milagro_tls.roles.pat.state import AES_KEY_FILE, PatHome

PASSPHRASE = "correct horse battery staple"


def _secp_secret(key) -> bytes:
    return key._private.secret


def _make_identity(home):
    key = IdentityKey.generate()
    key.save(home / "identity.key")
    return [home / "identity.key"], [_secp_secret(key)], lambda: [_secp_secret(IdentityKey.load(home / "identity.key"))]


def _make_chain(home):
    key = ChainKey.generate()
    key.save(home / "chain.key")
    return [home / "chain.key"], [_secp_secret(key)], lambda: [_secp_secret(ChainKey.load(home / "chain.key"))]


def _make_fee(home):
    key = load_fee_key(home)
    return [home / "fee.key"], [_secp_secret(key)], lambda: [_secp_secret(load_fee_key(home))]


def _make_batch(home):
    key = BatchKey.load_or_create(home)
    return [home / "batch.key"], [_secp_secret(key)], lambda: [_secp_secret(BatchKey.load_or_create(home))]


def _make_master(home):
    secret = MasterSecret.create(home / "master.key")
    value = secret._scalar.to_be_bytes()
    return [home / "master.key"], [value], lambda: [MasterSecret.load(home / "master.key")._scalar.to_be_bytes()]


def _make_role_secret(home):
    role = RoleHome(home, "tbs", "t")
    value = role.secret("session")
    return [home / "secrets" / "session.key"], [value], lambda: [RoleHome(home, "tbs", "t").secret("session")]


def _make_pat_aes(home):
    value = PatHome(home).aes_key()
    return [home / AES_KEY_FILE], [value], lambda: [PatHome(home).aes_key()]


def _make_client_secret(home):
    path = home / "client.key"
    write_key_file(path, b"an OIDC client secret")
    return [path], [b"an OIDC client secret"], lambda: [_read_secret(path).encode()]


def _make_idp_signing(home):
    ring = KeyRing(home / "jwks", token_lifetime=600).ensure()
    files = sorted((home / "jwks").glob("*.key"))

    def secrets(r):
        return [r.signing_key(alg).as_der(private=True) for alg in ("RS256", "ES256")]
    return files, secrets(ring), lambda: secrets(KeyRing(home / "jwks", token_lifetime=600).ensure())


KINDS = {"identity": _make_identity, "chain": _make_chain, "fee": _make_fee, "batch": _make_batch,
         "dta-master-secret": _make_master, "role-secret": _make_role_secret, "pat-aes": _make_pat_aes,
         "oidc-client-secret": _make_client_secret, "idp-signing": _make_idp_signing}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_key_file_kind_is_encrypted_under_a_passphrase(kind, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    files, secrets, reload = KINDS[kind](tmp_path)
    assert files and len(secrets) >= 1
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert is_encrypted_key_file(path)
        text = path.read_text()
        doc = json.loads(text)
        assert doc["format"] == keymod.ENCRYPTED_FORMAT and doc["kdf"] == "scrypt" and doc["n"] == 2 ** 15
        for secret in secrets:
            # the secret appears nowhere in the file, in hex or in decimal
            assert secret.hex() not in text.lower()
            assert str(int.from_bytes(secret, "big")) not in text
    assert sorted(reload()) == sorted(secrets)

    keymod._derive.cache_clear()                      # no derived key kept from the writes
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(IdentityError, match="is encrypted: set MILAGRO_KEY_PASSPHRASE"):
        reload()
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong " + PASSPHRASE)
    with pytest.raises(IdentityError, match="wrong passphrase"):
        reload()


def test_plain_when_no_passphrase_and_explicit_empty_passphrase_overrides_env(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    secret = bytes(range(32))
    write_key_file(tmp_path / "a.key", secret)
    assert (tmp_path / "a.key").read_text() == secret.hex() + "\n"
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    write_key_file(tmp_path / "b.key", secret, passphrase="")
    assert (tmp_path / "b.key").read_text() == secret.hex() + "\n"
    assert read_key_file(tmp_path / "a.key") == secret       # plain files still read with the env set


def test_explicit_passphrase_argument_beats_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "from the environment")
    secret = bytes(range(1, 33))
    write_key_file(tmp_path / "k.key", secret, passphrase=PASSPHRASE)
    assert read_key_file(tmp_path / "k.key", passphrase=PASSPHRASE) == secret
    with pytest.raises(IdentityError, match="wrong passphrase"):
        read_key_file(tmp_path / "k.key")


@pytest.mark.parametrize("field, value", [("n", 2 ** 14), ("r", 4), ("salt", "00" * 16), ("nonce", "00" * 12)])
def test_altered_header_fails_like_a_wrong_passphrase(tmp_path, field, value):
    path = tmp_path / "k.key"
    write_key_file(path, bytes(32), passphrase=PASSPHRASE)
    doc = json.loads(path.read_text())
    doc[field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match="wrong passphrase, or the file was altered"):
        read_key_file(path, passphrase=PASSPHRASE)


def test_flipped_ciphertext_bit_is_refused(tmp_path):
    path = tmp_path / "k.key"
    write_key_file(path, bytes(32), passphrase=PASSPHRASE)
    doc = json.loads(path.read_text())
    blob = bytearray(bytes.fromhex(doc["ciphertext"]))
    blob[0] ^= 1
    doc["ciphertext"] = blob.hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match="wrong passphrase, or the file was altered"):
        read_key_file(path, passphrase=PASSPHRASE)


@pytest.mark.parametrize("field, value", [("n", 2 ** 24), ("n", 1000), ("r", 64), ("p", 16), ("nonce", "00" * 8)])
def test_costly_or_odd_parameters_are_refused_before_deriving(tmp_path, field, value):
    path = tmp_path / "k.key"
    write_key_file(path, bytes(32), passphrase=PASSPHRASE)
    doc = json.loads(path.read_text())
    doc[field] = value
    path.write_text(json.dumps(doc))
    keymod._derive.cache_clear()
    with pytest.raises(IdentityError, match="parameters out of bounds"):
        read_key_file(path, passphrase=PASSPHRASE)
    assert keymod._derive.cache_info().misses == 0


def test_garbage_and_unknown_format(tmp_path):
    path = tmp_path / "k.key"
    write_key_file(path, b"x", passphrase="")
    path.write_text('{"format": "x"')
    with pytest.raises(IdentityError, match="not a readable encrypted key file"):
        read_key_file(path, passphrase=PASSPHRASE)
    write_key_file(tmp_path / "j.key", bytes(32), passphrase=PASSPHRASE)
    doc = json.loads((tmp_path / "j.key").read_text())
    doc["format"] = "other/9"
    (tmp_path / "j.key").write_text(json.dumps(doc))
    with pytest.raises(IdentityError, match="unknown format"):
        read_key_file(tmp_path / "j.key", passphrase=PASSPHRASE)


def test_encrypted_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "k.key"
    write_key_file(path, bytes(32), passphrase=PASSPHRASE)
    path.chmod(0o640)
    with pytest.raises(IdentityError, match="readable by others"):
        read_key_file(path, passphrase=PASSPHRASE)


def test_encrypt_an_existing_plain_key_file_in_place(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    key = IdentityKey.generate()
    key.save(tmp_path / "identity.key")
    encrypt_key_file(tmp_path / "identity.key", PASSPHRASE)
    assert is_encrypted_key_file(tmp_path / "identity.key")
    assert stat.S_IMODE((tmp_path / "identity.key").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["identity.key"]       # no temporary left
    with pytest.raises(IdentityError, match="already encrypted"):
        encrypt_key_file(tmp_path / "identity.key", PASSPHRASE)
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    assert IdentityKey.load(tmp_path / "identity.key").public_key == key.public_key


def test_prompt_when_stdin_is_a_terminal(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    write_key_file(tmp_path / "k.key", bytes(range(32)), passphrase=PASSPHRASE)
    asked = []

    class Tty:
        def isatty(self):
            return True
    monkeypatch.setattr(keymod.sys, "stdin", Tty())
    monkeypatch.setattr(keymod.getpass, "getpass", lambda prompt: asked.append(prompt) or PASSPHRASE)
    assert read_key_file(tmp_path / "k.key") == bytes(range(32))
    assert asked == [f"passphrase for {tmp_path / 'k.key'}: "]


def test_a_party_created_and_anchored_under_a_passphrase_keeps_every_key_encrypted(tmp_path, monkeypatch):
    """The real path: Party.create on a regtest chain (fee key, identity key, chain key), then a
    handshake identity loaded from the encrypted files."""
    from milagro_tls.chain.embedded import EmbeddedSource
    from milagro_tls.identity.local import LocalIdentity
    from milagro_tls.identity.marker import MarkerType
    from milagro_tls.identity.party import Party

    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    with EmbeddedSource.open(tmp_path / "chain") as source:
        source.mine(101)
        party = Party.create(tmp_path / "home", source, role="service", name="sealed.example",
                             root_chains=(MarkerType.ACTIVITY_LOG_ROOT,))
        key_files = sorted((tmp_path / "home").rglob("*.key"))
        assert {p.name for p in key_files} == {"fee.key", "identity.key", "chain.key"}
        secrets = [party.key._private.secret, party.nonce_key().secret]
        for path in key_files:
            assert is_encrypted_key_file(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
            assert not any(s.hex() in path.read_text() for s in secrets)
        loaded = Party.load(tmp_path / "home", "sealed.example")
        assert loaded.key.public_key == party.key.public_key
        assert LocalIdentity.from_party(loaded, source).locator == party.locator
        monkeypatch.delenv(PASSPHRASE_ENV)
        keymod._derive.cache_clear()
        with pytest.raises(IdentityError, match="is encrypted"):
            Party.load(tmp_path / "home", "sealed.example")
