"""The IdP for a gunicorn you run yourself: ``gunicorn 'milagro_tls.roles.idp.wsgi:application()'``
with the settings in the environment (``milagro idp serve`` passes them in-process instead):

    MILAGRO_IDP_HOME                     the role's home (identity, keys, secrets, state.db)
    MILAGRO_IDP_CHAIN                    chain spec (regtest://DIR, bitcoind://..., esplora+https://...)
    MILAGRO_IDP_ISSUER                   the issuer URL, e.g. https://idp.example
    MILAGRO_IDP_NAME                     the identity's name in the home (default idp)
    MILAGRO_IDP_DB                       database URL (default SQLite in the home)
    MILAGRO_IDP_PERIOD                   activity-log period in seconds (default 60)
    MILAGRO_IDP_REGISTRATION_TOKEN_FILE  a file holding the initial access token (default: open registration)

The identity must exist already (``milagro idp serve`` creates it on first start)."""
from __future__ import annotations

import os
from pathlib import Path

from .service import IdPSettings, worker_app


def settings_from_environment(environ=os.environ) -> IdPSettings:
    missing = [name for name in ("MILAGRO_IDP_HOME", "MILAGRO_IDP_CHAIN", "MILAGRO_IDP_ISSUER") if not environ.get(name)]
    if missing:
        raise RuntimeError(f"set {', '.join(missing)} (see milagro_tls.roles.idp.wsgi)")
    token_file = environ.get("MILAGRO_IDP_REGISTRATION_TOKEN_FILE")
    return IdPSettings(home=environ["MILAGRO_IDP_HOME"], chain=environ["MILAGRO_IDP_CHAIN"],
                       issuer=environ["MILAGRO_IDP_ISSUER"].rstrip("/"), name=environ.get("MILAGRO_IDP_NAME", "idp"),
                       db=environ.get("MILAGRO_IDP_DB") or None, period=int(environ.get("MILAGRO_IDP_PERIOD", "60")),
                       # A file, not the variable itself: environments leak into ps output and crash reports.
                       registration_token=Path(token_file).read_text().strip() if token_file else None)


def application():
    return worker_app(**settings_from_environment().to_kwargs())
