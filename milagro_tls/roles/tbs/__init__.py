"""The Trusted Bitcoin Server (TBS): enrols thin-client PATs in taproot batches, tells them whom
to trust, and updates them in the field (issue 17).

Modules:

    tables.py       the store's tables (component "tbs") and ``migrate(store)``
    groups.py       device groups, their D-TA URLs and trust entries, instruction-set versions
                    (``push``), the default group: the admin API (CLI and web UI call it)
    enrolments.py   the enrolment queue: enrol (ECIES), poll MACs, signing requests and
                    signatures, status, sealed instructions, listing for the admin
    batcher.py      the batch worker: claim queued enrolments, open (fund) a batch, collect
                    signatures, finish (broadcast), settle once confirmed, requeue empty slots
    revocations.py  revoking batch PATs (issue 18): the revoked digests, their lists anchored
                    on the 0x04 chain from the batch thread, the answer served at
                    /chain/revocation/<digest>, the trust entries' seal status in instructions,
                    and OwnPatRevocations: the TBS's own Context refuses its revoked PATs'
                    handshakes (certificate_revoked) from the worker's store
    app.py          the Flask app on the main port (milagro-tls; anonymous PATs may enrol)
    service.py      ``prepare`` (gunicorn's master: identity, keys, schema) and ``worker_app``
    cli.py          ``milagro tbs serve`` and ``milagro tbs admin ...``
    admin/          the admin web UI and JSON API (helper O; contract below)

One gunicorn, two ports. ``milagro tbs serve --admin-port P2`` binds a second socket in the same
gunicorn (same workers, same milagro-tls Context, whose X.509 fallback certificate is what a
browser sees). The worker's WSGI app dispatches on the listener's port
(``environ["SERVER_PORT"]``, which gunicorn sets from the listening socket, never from the Host
header): the main port gets ``app.create_app``, the admin port gets the admin app. The admin app
is never reachable on the main port and vice versa (404 JSON).

The admin contract (``milagro_tls.roles.tbs.admin``, written by helper O):

    create_admin_app(tbs: TbsContext) -> WSGI app       called once per worker, after the fork
    migrate(store) -> None                              its own tables (admin users, sessions)
    add_admin_user(store, name, password) -> None       ``milagro tbs admin user add``;
                                                        raises TbsError(409, "user_exists", ...)

``TbsContext`` (service.py) carries what the admin needs: ``store`` (roles.store.Store),
``home`` (RoleHome), ``party`` (the TBS's anchored identity), ``source`` (the worker's chain
source), ``headers`` (a HeaderChain the worker keeps current from that source),
``secret_key`` (32 bytes, HOME/secrets/tbs-admin-session.key) and ``settings`` (TbsSettings).
The admin's store functions are those admin/backend.py's REQUIRED_FROM_TBS names, all in
groups.py: list_groups, get_group, add_group, set_group_dta_urls, set_group_trust,
set_default_group, list_enrolments, get_enrolment, push_instructions (and enrolment_counts).
Refusals raise ``groups.TbsError(status, error, description)``.

State lives in the store only (SQLite in HOME or ``--db postgresql://...``); every state change
of an enrolment or a batch is a committed write, so any worker (or a restart) resumes from it.
"""
