"""The OpenID Connect provider (issue 14): Authlib + Flask + joserfc over the roles' store.

    config    IdPConfig: what one app is made of (issuer, store, keys, secrets, lifetimes)
    tables    SQLAlchemy Core tables and migrations (component "idp")
    users     argon2id password hashes; add_user, authenticate
    clients   registered clients, RFC 7591 registration (open or with an initial access token)
    keys      ID-token signing keys (RS256 default, ES256), rotation, the public JWKS
    server    Authlib's AuthorizationServer: code + PKCE S256, device grant, refresh tokens
    views     login, consent, device page, userinfo, discovery, WebFinger, JWKS
    app       create_app(config) -> Flask
    service   the IdP built from a role home (identity, fallback certificate, activity log)
    wsgi      the gunicorn worker's app factory (settings from the environment)
    cli       ``milagro idp serve`` and ``milagro idp user add``

Each login appends a private receipt leaf to the role's activity log (roles.activitylog); the
person sees their receipts at /milagro/receipts.
"""
