"""The roles (IdP, D-TA, TBS, ...) and the shape they share.

    store        SQLAlchemy Core data access: SQLite WAL or PostgreSQL, versioned schemas, work claims
    home         a role's home directory: anchored identity, fallback X.509 certificate, secrets
    serving      a WSGI app under gunicorn with the milagro-tls Context as its ssl_context
    wellknown    /.well-known/milagro/{birth-certificate,metadata} and the client's check_role
    canary       the signed "no secret has been compelled" statement, re-signed every period
    activitylog  the anchored, private activity log: periods, Merkle roots, inclusion proofs

Each role is a sub-package (``roles.idp``, ...) built on these; none opens a chain directory,
writes a key or anchors a root any other way.
"""
