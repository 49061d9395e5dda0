"""``milagro idp user add`` and the wsgi module's settings (no server started)."""
from __future__ import annotations

import json
import stat

import pytest

from milagro_tls.cli import main
from milagro_tls.roles.idp.config import TOKEN_LIFETIME
from milagro_tls.roles.idp.keys import KeyRing
from milagro_tls.roles.idp.service import keys_dir
from milagro_tls.roles.idp.users import authenticate
from milagro_tls.roles.idp.wsgi import settings_from_environment
from milagro_tls.roles.store import open_store


def test_user_add_stores_an_argon2_hash_and_refuses_a_duplicate(tmp_path, capsys):
    assert main(["idp", "user", "add", "--home", str(tmp_path), "bob", "--password", "s3cret pass"]) == 0
    assert '"username": "bob"' in capsys.readouterr().out
    assert main(["idp", "user", "add", "--home", str(tmp_path), "bob", "--password", "other"]) == 1
    assert capsys.readouterr().err.strip() == "UserError: user 'bob' already exists"
    store = open_store(None, tmp_path)
    try:
        assert authenticate(store, "bob", "s3cret pass").username == "bob"
        assert authenticate(store, "bob", "other") is None
        assert authenticate(store, "nobody", "s3cret pass") is None
        with store.read() as connection:
            stored = connection.exec_driver_sql("SELECT password_hash FROM idp_users").scalar()
        assert stored.startswith("$argon2id$") and "s3cret" not in stored
    finally:
        store.close()


def test_wsgi_settings_come_from_the_environment_and_the_token_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("initial-token\n")
    settings = settings_from_environment({
        "MILAGRO_IDP_HOME": str(tmp_path), "MILAGRO_IDP_CHAIN": "regtest:///x", "MILAGRO_IDP_ISSUER": "https://idp/",
        "MILAGRO_IDP_PERIOD": "30", "MILAGRO_IDP_REGISTRATION_TOKEN_FILE": str(token_file)})
    assert (settings.issuer, settings.period, settings.registration_token, settings.db) == \
        ("https://idp", 30, "initial-token", None)
    with pytest.raises(RuntimeError, match="set MILAGRO_IDP_CHAIN, MILAGRO_IDP_ISSUER"):
        settings_from_environment({"MILAGRO_IDP_HOME": str(tmp_path)})


def test_keys_rotate_makes_new_keys_and_keeps_serving_the_old_ones(tmp_path, capsys):
    ring = KeyRing(keys_dir(str(tmp_path)), token_lifetime=TOKEN_LIFETIME).ensure()
    before = {record.kid for record in ring.records}
    assert main(["idp", "keys", "rotate", "--home", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["new"]).isdisjoint(before) and len(printed["new"]) == len(before)
    # A running worker's ring sees the change: the new keys sign, the old ones are still served.
    served = {key["kid"] for key in ring.public_jwks()["keys"]}
    assert served == before | set(printed["new"])
    assert ring.signing_key("RS256").kid in printed["new"]
    assert stat.S_IMODE((keys_dir(str(tmp_path)) / f"{printed['new'][0]}.key").stat().st_mode) == 0o600
