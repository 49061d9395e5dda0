"""The D-TA (issue 15): a distributed trusted authority that issues M-Pin key shares on
BLS12-381 after an OpenID Connect login, over milagro-tls, with an anchored activity log.

    tables     SQLAlchemy Core tables and migrations (component "dta")
    peer       the milagro-tls peer's verified locator from a WSGI environ (gunicorn.socket)
    rp         the relying party: discovery, registration, code flow + PKCE + RFC 9207 iss,
               ID-token validation (joserfc), the device grant
    idps       how each IdP is reached (pinned Context or X.509) and its kept registration
    logins     login nonces bound to locators: start, browser callback, poll, claim once
    issuance   CS_i / TP_i / SS_i signed by the D-TA's key, recorded, logged
    app        create_app(Dta) -> Flask
    service    the D-TA from a role home (prepare in gunicorn's master, worker_app per worker)
    cli        ``milagro dta serve``, ``milagro dta service add``, ``milagro dta user revoke``
    client     the party's side (DtaClient)
"""
