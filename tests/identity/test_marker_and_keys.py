from __future__ import annotations

import os
import stat

import pytest

from milagro_tls.chain.errors import MalformedAnchor, UnknownMarkerType
from milagro_tls.errors import IdentityError
from milagro_tls.identity.keys import FeeKey, IdentityKey, StatementType, read_key_file
from milagro_tls.identity.marker import Marker, MarkerType, find_markers

DIGEST = bytes(range(32))


@pytest.mark.parametrize("kind", list(MarkerType))
def test_marker_script_is_exactly_40_bytes_after_op_return(kind):
    script = Marker(kind, DIGEST).script()
    assert script[:2] == b"\x6a\x28" and len(script) == 42
    assert script[2:9] == b"MILAGRO" and script[9] == kind
    assert Marker.parse_script(script) == Marker(kind, DIGEST)


def test_marker_type_table_is_the_documented_one():
    assert {t.name: t.value for t in MarkerType} == {
        "BIRTH_CERTIFICATE": 1, "BATCH_ROOT": 2, "ACTIVITY_LOG_ROOT": 3, "REVOCATION_LIST_ROOT": 4}


def test_marker_parser_rejects_unknown_type():
    script = b"\x6a\x28MILAGRO\x05" + DIGEST
    with pytest.raises(UnknownMarkerType):
        Marker.parse_script(script)


@pytest.mark.parametrize("script", [
    b"\x6a\x27MILAGRO\x01" + DIGEST[:31],          # 39 bytes
    b"\x6a\x29MILAGRO\x01" + DIGEST + b"\x00",     # 41 bytes
    b"\x6a\x28MILAGRX\x01" + DIGEST,               # wrong magic
    b"\x51\x28MILAGRO\x01" + DIGEST,               # not OP_RETURN
])
def test_marker_parser_rejects_malformed(script):
    with pytest.raises(MalformedAnchor):
        Marker.parse_script(script)


def test_find_markers_ignores_foreign_op_returns_and_payments():
    outputs = [b"\x6a\x04abcd", b"\x00\x14" + DIGEST[:20], Marker(MarkerType.BIRTH_CERTIFICATE, DIGEST).script()]
    assert find_markers(outputs) == [(2, Marker(MarkerType.BIRTH_CERTIFICATE, DIGEST))]


def test_key_file_is_0600_and_never_overwritten(tmp_path):
    key = IdentityKey.generate()
    path = tmp_path / "identity.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        IdentityKey.generate().save(path)
    assert IdentityKey.load(path).public_key == key.public_key


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "fee.key"
    FeeKey.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        read_key_file(path)


def test_repr_never_shows_the_secret(tmp_path):
    key = IdentityKey.generate()
    secret = key._private.secret
    for text in (repr(key), str(key), f"{key}"):
        assert secret.hex() not in text and str(int.from_bytes(secret, "big")) not in text


def test_identity_key_signs_only_tagged_statements():
    key = IdentityKey.generate()
    signature = key.sign_statement(StatementType.LIVE_CERTIFICATE, b"digest")
    assert IdentityKey.verify_statement(key.public_key, StatementType.LIVE_CERTIFICATE, b"digest", signature)
    # The tag is part of the message: a statement of one type is not valid as another.
    assert not IdentityKey.verify_statement(key.public_key, StatementType.SHARE, b"digest", signature)
    with pytest.raises(TypeError):
        key.sign_statement("milagro/live-certificate", b"digest")
    assert not hasattr(key, "sign") and not hasattr(key, "sign_input")
