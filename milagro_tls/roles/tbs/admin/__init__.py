"""The TBS's admin web UI and JSON API (issue 17), served on ``--admin-port``.

    app       create_admin_app(AdminConfig) -> Flask (cookies, CSP, error pages)
    auth      the login session, bearer tokens on /api/, the per-session CSRF token
    accounts  admin users (argon2id, the IdP's hasher) and API tokens (stored as SHA256)
    tables    the admin's own tables (component "tbs_admin")
    backend   TbsBackend: the one interface to the TBS's groups, enrolments and pushes
    trust     trust entries pasted or fetched from a role's normative URL, checked on the chain
    views     the HTML pages (templates/, static/: Jinja and one plain script, no build step)
    api       the JSON API under /api/
"""
from .accounts import add_admin, add_admin_user, create_token
from .app import AdminConfig, create_admin_app
from .backend import StoreBackend, TbsBackend
from .tables import migrate
from .trust import ChainAccess

__all__ = ["AdminConfig", "ChainAccess", "StoreBackend", "TbsBackend", "add_admin", "add_admin_user",
           "create_admin_app", "create_token", "migrate"]
