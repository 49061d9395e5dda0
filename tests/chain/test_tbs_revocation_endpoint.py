"""GET /chain/revocation/<digest> and the tbs:// client of it: the TBS's answer round-trips,
a TBS without a list says so (404), bad digests are 400, a failing store is 502 (logged, not
sent), and a lying TBS's malformed or oversized answer is refused; the TBS's birth certificate
is fetched bounded."""
from __future__ import annotations

import hashlib
import logging

import httpx
import pytest
from flask import Flask, Response

from milagro_tls.chain.errors import SourceError
from milagro_tls.chain.revocation_list import RevocationAnswer, answer_for
from milagro_tls.chain.tbs_endpoints import chain_blueprint
from milagro_tls.chain.tbs_source import MAX_CERTIFICATE_ANSWER, TbsSource
from milagro_tls.roles.wellknown import wellknown_blueprint

BASE = "https://tbs.test"
REVOKED = hashlib.sha256(b"revoked").digest()
LISTED = [REVOKED, hashlib.sha256(b"also revoked").digest()]
TXID = bytes(range(32))


def _store(digest: bytes) -> RevocationAnswer:
    if digest == b"\xee" * 32:
        raise RuntimeError("database is locked: secret-ish detail")
    return answer_for(LISTED, set(LISTED), digest, (TXID, 1))


def _tbs(world, *, before=None, **options) -> tuple[TbsSource, httpx.Client]:
    app = Flask("tbs-revocation-test")
    if before:
        before(app)
    app.register_blueprint(chain_blueprint(world.source, **options))
    app.register_blueprint(wellknown_blueprint(world.parties["echo.example"]))
    transport = httpx.WSGITransport(app=app)
    return TbsSource(BASE, transport=transport), httpx.Client(base_url=BASE, transport=transport)


def test_answers_round_trip_through_the_tbs_source(world):
    tbs, http = _tbs(world, revocations=_store)
    with tbs, http:
        assert tbs.revocation_status(REVOKED) == RevocationAnswer(True)
        fine = hashlib.sha256(b"fine").digest()
        answer = tbs.revocation_status(fine)
        assert answer == _store(fine) and not answer.revoked
        assert http.get(f"/chain/revocation/{fine.hex().upper()}").json() == answer.to_json()
        assert tbs.birth_certificate() == world.parties["echo.example"].certificate.canonical_bytes()


def test_refusals(world, caplog):
    tbs, http = _tbs(world, revocations=_store)
    with tbs, http:
        for bad in ("00" * 31, "zz" * 32, "00" * 33):
            response = http.get(f"/chain/revocation/{bad}")
            assert response.status_code == 400 and response.json()["error"] == "bad_request"
        with caplog.at_level(logging.WARNING, logger="milagro_tls.chain.tbs_endpoints"):
            response = http.get(f"/chain/revocation/{'ee' * 32}")
        assert response.status_code == 502 and response.json() == {
            "error": "revocation_error", "error_description": "the TBS could not answer for this certificate"}
        assert "database is locked" in caplog.text                 # logged here, never sent
        with pytest.raises(SourceError, match="HTTP 502 revocation_error"):
            tbs.revocation_status(b"\xee" * 32)
    plain, http = _tbs(world)
    with plain, http:
        response = http.get(f"/chain/revocation/{REVOKED.hex()}")
        assert response.status_code == 404 and response.json()["error"] == "no_revocation_list"
        with pytest.raises(SourceError, match="no_revocation_list"):
            plain.revocation_status(REVOKED)


@pytest.mark.parametrize("body,match", [
    (b'{"revoked": true, "root": null}', "malformed answer"),
    (b'{"revoked": false}', "malformed answer"),
    (b'[true]', "malformed answer"),
    (b'not json', "not JSON"),
    (b'{"revoked": true, "pad": "' + b"x" * 20_000 + b'"}', "exceeds"),
], ids=["revoked-with-extras", "unrevoked-without-proof", "not-an-object", "not-json", "oversized"])
def test_a_lying_tbs_answer_is_refused(world, body, match):
    def lie(app):
        app.add_url_rule("/chain/revocation/<digest>", "lie", lambda digest: Response(body, mimetype="application/json"))
    tbs, http = _tbs(world, before=lie, revocations=_store)
    with tbs, http, pytest.raises(SourceError, match=match):
        tbs.revocation_status(REVOKED)


def test_the_birth_certificate_is_bounded(world):
    def huge(app):
        app.add_url_rule("/.well-known/milagro/birth-certificate", "huge",
                         lambda: Response(b"{" + b" " * MAX_CERTIFICATE_ANSWER + b"}"))
    tbs, http = _tbs(world, before=huge)
    with tbs, http, pytest.raises(SourceError, match="exceeds"):
        tbs.birth_certificate()
