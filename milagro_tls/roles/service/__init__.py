"""The relying service: checks M-Pin against SS = Σ SS_i fetched from its D-TAs.

    serversecret.py  SS on disk (0600) between the master that fetches it and the workers
    sessions.py  the pending pass-1 states, single use, in the roles' store
    app.py       the Flask app: POST /mpin/pass1, POST /mpin/pass2, GET /healthz, well-known
    service.py   prepare (gunicorn's master: identity, SS from each D-TA) and worker_app
    cli.py       ``milagro service init`` and ``milagro service serve``
"""
