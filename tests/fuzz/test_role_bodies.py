"""Property tests of the roles' HTTP request bodies: any body a peer can POST (random bytes, any
JSON value, near-valid JSON objects with wrong types, huge numbers, deep nesting or odd unicode,
the wrong content type, an oversized body) to every JSON/octet endpoint of the D-TA, the TBS
(/enrol, signatures, /pat/instructions, its /chain endpoints over a fake source), the relying
service's M-Pin passes and the IdP's dynamic registration gets a 4xx with a JSON body
{"error", "error_description"} (or a documented 2xx), never a 500 and never a traceback; and a
refused request changes no state (no enrolment, login, share, session or client row). The
embedded chain's Esplora REST routes (esplora_rest) answer any path and any POST /tx body with a
status they mean (400, 404, 503), never an unforeseen exception (the server's 500).

Apps are built the way their unit tests build them (role_apps.py); the milagro-tls peer is
the fake gunicorn socket in the WSGI environ, as tests/roles/dta does."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milagro_tls.chain.esplora_rest import EsploraRest, HttpError
from milagro_tls.chain.hashes import to_display_hex
from milagro_tls.enrolment import poll_mac
from milagro_tls.mpin import encode_g1, encode_identity
from milagro_tls.mpin.curve import g1_generator

from roles.dta.fakes import ISSUER, fake_locator

from . import role_apps
from .role_apps import KNOWN_BLOCK, KNOWN_TXID, RAW_TX, count, party_client
from .support import fuzz, hex_of, json_scalars, json_values, mutated, mutated_json

#: Bounded: the whole file runs in well under a minute on the shared 2-core machine
#: (MILAGRO_FUZZ_EXAMPLES raises it, as for every fuzz test).
bodies_fuzz = settings(fuzz, max_examples=max(100, fuzz.max_examples))

CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "application/json; charset=utf-16",
                 "application/json; charset=bogus", "text/plain", "application/octet-stream",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "multipart/form-data",
                 "application/merge-patch+json", "image/png"]
HUGE = [b"1" * 5000, b"1e999999", b"-1e999999", b"NaN", b"Infinity", b"-0", b"9" * 400 + b".5e-9999"]


def _deep(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


def _deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


#: Values that break naive handlers: wrong types, huge or non-finite numbers, odd unicode.
hostile_scalars = st.one_of(
    json_scalars, st.integers(min_value=-2**4000, max_value=2**4000), st.sampled_from(
        [10**400, -(10**400), 2**63, 2**64, -1, 0, 1e308, -1e308, 5e-324, "", " ", "\x00", "\ud800", "\u202e",
         "ÿ" * 50, "０", "١٢", "𝟙", "0x10", "1_000", "1e3", " 7 ", "a" * 5000, True, False, None, [], {}]),
    hex_of(32), hex_of(16), hex_of())


def objects_with(keys: list[str], seeds: list[str]):
    """JSON objects over ``keys`` (and a few others) with hostile or plausible values."""
    values = st.one_of(hostile_scalars, st.sampled_from(seeds) if seeds else st.nothing(), json_values)
    return st.dictionaries(st.sampled_from(keys + ["", "x", "__proto__", "ünï"]), values, max_size=len(keys) + 2)


@st.composite
def bodies(draw, keys: list[str] = (), seeds: list[str] = (), valid: list[dict] = (), raw_seeds: list[bytes] = ()):
    """(data, content type): any bytes, any JSON, near-valid objects, deep nesting, huge bodies."""
    keys, seeds = list(keys), list(seeds)
    kind = draw(st.sampled_from(["bytes", "json", "object", "object", "mutated", "deep", "huge", "raw"]))
    if kind == "bytes":
        data = draw(st.binary(max_size=300))
    elif kind == "json":
        data = json.dumps(draw(json_values)).encode()
    elif kind == "object":
        data = json.dumps(draw(objects_with(keys, seeds)), ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass")
    elif kind == "mutated" and valid:
        data = json.dumps(draw(st.sampled_from(list(valid)).flatmap(mutated_json))).encode()
    elif kind == "deep":
        depth = draw(st.sampled_from([100, 1000, 5000, 50_000]))
        data = draw(st.sampled_from([_deep(depth), _deep_object(min(depth, 20_000)),
                                     b'{"' + (keys or ["x"])[0].encode() + b'":' + _deep(depth) + b"}"]))
    elif kind == "huge":
        data = draw(st.sampled_from(HUGE + [b" " * 70_000 + b"{}", b'{"x":"' + b"a" * 100_000 + b'"}',
                                            b'{"' + (keys or ["x"])[0].encode() + b'":' + b"1" * 4400 + b"}"]))
    elif raw_seeds:
        data = draw(st.sampled_from(list(raw_seeds)).flatmap(mutated))
    else:
        data = draw(st.binary(max_size=64))
    content_type = draw(st.sampled_from(CONTENT_TYPES if kind != "object" else CONTENT_TYPES[:3] + CONTENT_TYPES[:3]
                                        + CONTENT_TYPES))
    return data, content_type


def post(client, path: str, body, headers: dict | None = None):
    data, content_type = body
    headers = dict(headers or {})
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(path, data=data, headers=headers)


def check(response, ok: set[int] = frozenset()):
    """A documented 2xx (``ok``), or a 4xx (502 for an IdP failure) with a JSON error body."""
    text = response.get_data().decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    status = response.status_code
    assert status != 500, f"500: {text[:300]}"
    if status in ok:
        return
    assert 400 <= status < 500 or status == 502, f"undocumented {status}: {text[:300]}"
    doc = response.get_json(silent=True)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], text[:300]
    assert isinstance(doc.get("error_description"), str), text[:300]


# --- the D-TA ---------------------------------------------------------------------------------
@pytest.fixture
def dta(tmp_path):
    rig = role_apps.dta_rig(tmp_path)
    yield rig
    rig.close()


DTA_PATHS = ["/login/start", "/login/poll", "/shares/client", "/shares/server"]
DTA_KEYS = ["idp", "method", "login_nonce"]
DTA_VALID = [{"idp": ISSUER, "method": "code"}, {"idp": ISSUER, "method": "device"}, {"login_nonce": "x" * 43}]


@bodies_fuzz
@given(st.sampled_from(DTA_PATHS), st.sampled_from([fake_locator(1), fake_locator(3), None, "none"]),
       bodies(DTA_KEYS, [ISSUER, "code", "device", ISSUER + "/"], DTA_VALID))
def test_dta_endpoints_refuse_any_body_with_a_json_4xx(dta, path, peer, body):
    tables = dta.tables
    before = {"logins": count(dta.store, tables.logins), "issued": count(dta.store, tables.issued)}
    response = post(party_client(dta.app, peer), path, body)
    # Documented 2xx: a login started (any body naming the IdP and a method), or SS_i to the
    # registered service (its body is not read).
    started = path == "/login/start" and response.status_code == 200
    served = path == "/shares/server" and peer == fake_locator(3)
    check(response, ok={200} if started or served else set())
    after = {"logins": count(dta.store, tables.logins), "issued": count(dta.store, tables.issued)}
    if started:
        assert after == {**before, "logins": before["logins"] + 1}
        assert set(response.get_json()) >= {"login_nonce", "expires_in"}
    elif served:
        assert response.status_code == 200 and after == {**before, "issued": before["issued"] + 1}
    else:
        assert after == before


@bodies_fuzz
@given(st.dictionaries(st.sampled_from(["state", "code", "iss", "error", "error_description", "x"]),
                       st.text(max_size=40), max_size=5), st.text(max_size=60))
def test_dta_browser_routes_refuse_any_query_with_a_json_4xx(dta, params, nonce):
    browser = party_client(dta.app, None)
    check(browser.get("/callback", query_string=params))
    response = browser.get("/login/browser/" + nonce.replace("/", "").replace("?", "").replace("#", ""))
    assert response.status_code != 500


def test_dta_deeply_nested_bodies_are_400_not_500(dta):
    # Finding: request.get_json(silent=True) swallows ValueError only; a deeply nested body
    # raised RecursionError out of json.loads, and the D-TA answered 500.
    for path in DTA_PATHS[:3]:
        for data in (_deep(50_000), _deep_object(20_000)):
            response = party_client(dta.app, fake_locator(1)).post(path, data=data, content_type="application/json")
            assert response.status_code == 400, response.get_data(as_text=True)[:200]
            assert response.get_json() == {"error": "invalid_request", "error_description": "the body is a JSON object"}


# --- the TBS ----------------------------------------------------------------------------------
@pytest.fixture
def tbs(tmp_path):
    rig = role_apps.tbs_rig(tmp_path)
    yield rig
    rig.close()


SIGNATURE_KEYS = ["version", "position", "signature", "batch_txid", "txid", "sighash", "pubkey"]


@bodies_fuzz
@given(st.data())
def test_tbs_enrol_refuses_any_body_and_adds_no_enrolment(tbs, data):
    body = data.draw(bodies(raw_seeds=[tbs.sealed]))
    before = count(tbs.store, tbs.tables.enrolments)
    response = post(party_client(tbs.app, None), "/enrol", body)
    check(response, ok={202})
    after = count(tbs.store, tbs.tables.enrolments)
    if response.status_code == 202:
        assert response.get_json()["status"] in ("queued", "requeued")
        assert after - before in (0, 1)
    else:
        assert after == before


def test_tbs_deeply_nested_signature_bodies_are_400_not_500(tbs):
    # Finding (as the D-TA's): RecursionError from json.loads past get_json(silent=True): a 500.
    for data in (_deep(30_000), _deep_object(10_000)):          # within the TBS's 64 KiB bound
        response = party_client(tbs.app, None).post(f"/enrolments/{tbs.enrolled}/signature", data=data,
                                                     content_type="application/json")
        assert response.status_code == 400, response.get_data(as_text=True)[:200]
        assert response.get_json()["error"] == "invalid_request"


@bodies_fuzz
@given(st.data(), st.sampled_from(["own", "random", "short", "unicode"]))
def test_tbs_signature_refuses_any_body(tbs, data, which):
    enrolment_id = {"own": tbs.enrolled, "random": data.draw(hex_of(16)), "short": "ab",
                    "unicode": "é" * 32}[which]
    body = data.draw(bodies(SIGNATURE_KEYS, [tbs.enrolled]))
    before = count(tbs.store, tbs.tables.signatures)
    check(post(party_client(tbs.app, None), f"/enrolments/{enrolment_id}/signature", body))
    assert count(tbs.store, tbs.tables.signatures) == before


@bodies_fuzz
@given(st.one_of(st.text(max_size=30), st.sampled_from(["1" * 5000, "-1", "4294967296", "1e3", "١", " 3 ", "0x1"])),
       st.sampled_from([fake_locator(1), None, "none"]), st.data())
def test_tbs_polls_and_pat_instructions_refuse_any_query(tbs, since, peer, data):
    client = party_client(tbs.app, peer)
    check(client.get("/pat/instructions", query_string={"since": since}), ok={204})
    mac = data.draw(st.one_of(st.text(max_size=70), hex_of(32), st.just(poll_mac(tbs.aes_key, tbs.enrolled))))
    enrolment_id = data.draw(st.sampled_from([tbs.enrolled, "0" * 32, "x", "é" * 32]))
    for route in ("signing-request", "status", "instructions"):
        check(client.get(f"/enrolments/{enrolment_id}/{route}", query_string={"mac": mac}), ok={200, 204})


@bodies_fuzz
@given(bodies(raw_seeds=[RAW_TX]))
def test_tbs_chain_broadcast_refuses_any_body(tbs, body):
    response = post(party_client(tbs.app, None), "/chain/broadcast", body)
    check(response, ok={200})
    if response.status_code == 200:
        assert len(response.get_json()["txid"]) == 64


path_parts = st.one_of(st.text(max_size=70).map(lambda t: t.replace("/", "").replace("?", "").replace("#", "")),
                       hex_of(32), st.just(to_display_hex(KNOWN_TXID)), st.just(to_display_hex(KNOWN_BLOCK)))
query_values = st.one_of(st.text(max_size=20), st.sampled_from(["1" * 20, "-1", "2000", "0", "5", "١", "²"]),
                         hex_of(32), st.just(to_display_hex(KNOWN_BLOCK)))


@bodies_fuzz
@given(st.sampled_from(["tip", "headers", "proof", "tx", "status", "outspend"]), path_parts, path_parts,
       st.dictionaries(st.sampled_from(["start", "count", "txid", "block"]), query_values, max_size=4))
def test_tbs_chain_reads_refuse_any_parameter(tbs, route, first, second, query):
    path = {"tip": "/chain/tip", "headers": "/chain/headers", "proof": "/chain/proof", "tx": f"/chain/tx/{first}",
            "status": f"/chain/status/{first}", "outspend": f"/chain/outspend/{first}/{second}"}[route]
    check(party_client(tbs.app, None).get(path, query_string=query), ok={200})


# --- the relying service ----------------------------------------------------------------------
@pytest.fixture
def service(tmp_path):
    rig = role_apps.service_rig(tmp_path)
    yield rig
    rig.close()


G1_HEX = encode_g1(g1_generator()).hex()
MPIN_VALID = [{"id": encode_identity("https://idp.example", "alice").hex(), "date": 20000, "u": G1_HEX},
              {"session": "s" * 43, "v": G1_HEX}]


@bodies_fuzz
@given(st.sampled_from(["/mpin/pass1", "/mpin/pass2"]),
       bodies(["id", "date", "u", "session", "v"], [G1_HEX, MPIN_VALID[0]["id"]], MPIN_VALID))
def test_service_mpin_passes_refuse_any_body(service, path, body):
    before = count(service.store, service.sessions.pending)
    response = post(party_client(service.app, None), path, body)
    check(response, ok={200} if path == "/mpin/pass1" else set())
    if not (path == "/mpin/pass1" and response.status_code == 200):
        assert count(service.store, service.sessions.pending) == before


def test_service_deeply_nested_bodies_are_400_not_500(service):
    # Finding (as the D-TA's): RecursionError from json.loads past get_json(silent=True): a 500.
    for path in ("/mpin/pass1", "/mpin/pass2"):
        for data in (_deep(50_000), _deep_object(20_000)):
            response = party_client(service.app, None).post(path, data=data, content_type="application/json")
            assert response.status_code == 400, response.get_data(as_text=True)[:200]
            assert response.get_json()["error"] == "malformed-message"


# --- the IdP's dynamic registration -----------------------------------------------------------
REGISTRATION_KEYS = ["client_name", "redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method",
                     "id_token_signed_response_alg", "scope", "jwks", "jwks_uri", "contacts", "client_uri",
                     "logo_uri", "software_id", "subject_type", "default_max_age", "require_auth_time"]
REGISTRATION_VALID = [{"client_name": "App", "redirect_uris": ["https://client.example/callback"]},
                      {"client_name": "Thing", "token_endpoint_auth_method": "none",
                       "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]},
                      {"client_name": "App", "redirect_uris": ["https://client.example/callback"],
                       "grant_types": ["authorization_code", "refresh_token"], "scope": "openid profile",
                       "response_types": ["code"], "id_token_signed_response_alg": "RS256",
                       "default_max_age": 60, "contacts": ["a@example.com"]}]


@pytest.fixture(params=[None, "initial-access-token"], ids=["open", "protected"])
def idp(tmp_path, request):
    rig = role_apps.idp_rig(tmp_path, registration_token=request.param)
    rig.token = request.param
    yield rig
    rig.close()


@bodies_fuzz
@given(bodies(REGISTRATION_KEYS, ["https://client.example/callback", "authorization_code", "none", "RS256",
                                  "openid", "code", "client_secret_basic"], REGISTRATION_VALID),
       st.sampled_from([None, "Bearer initial-access-token", "Bearer wrong", "Basic x"]))
def test_idp_registration_refuses_any_body_with_a_json_4xx(idp, body, authorization):
    client = party_client(idp.app, None)
    before = count(idp.store, idp.tables.clients)
    response = post(client, "/register", body, {"Authorization": authorization} if authorization else None)
    check(response, ok={201})
    if response.status_code == 201:
        assert count(idp.store, idp.tables.clients) == before + 1 and response.get_json()["client_id"]
    else:
        assert count(idp.store, idp.tables.clients) == before


def test_idp_registration_of_a_non_object_is_a_described_400(idp):
    # Findings: a JSON array or scalar body raised AttributeError in extract_client_metadata (a
    # 500), an empty object got a bare {"error": "invalid_request"} with no description, and a
    # deeply nested body raised RecursionError out of get_json (a 500).
    headers = {"Authorization": f"Bearer {idp.token}"} if idp.token else {}
    for data in (b"[]", b"[1]", b"1.5", b'"x"', b"{}", b"null", _deep(50_000)):
        response = idp.app.test_client().post("/register", data=data, content_type="application/json",
                                               headers=headers)
        assert response.status_code == 400, (data[:10], response.get_data(as_text=True)[:200])
        doc = response.get_json()
        assert doc["error"] in ("invalid_request", "bad_request") and doc["error_description"], doc
    assert count(idp.store, idp.tables.clients) == 0


@pytest.mark.parametrize("field, value", [("redirect_uris", [None]), ("redirect_uris", True), ("client_name", None),
                                          ("client_name", ["x"]), ("scope", 5), ("response_types", [5]),
                                          ("logo_uri", 5), ("jwks", 5), ("jwks", {"keys": 5}), ("client_name#ja", 5),
                                          ("default_max_age", True)])
def test_idp_registration_of_wrongly_typed_metadata_is_invalid_client_metadata(idp, field, value):
    # Findings: Authlib's claims raised TypeError / AttributeError (a 500) on a null redirect URI,
    # a boolean list, a number for a URI or scope, a non-list jwks "keys"; and a list was kept
    # as the client's name.
    metadata = {**REGISTRATION_VALID[0], field: value}
    headers = {"Authorization": f"Bearer {idp.token}"} if idp.token else {}
    response = idp.app.test_client().post("/register", json=metadata, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.get_json()["error"] == "invalid_client_metadata" and response.get_json()["error_description"]
    assert count(idp.store, idp.tables.clients) == 0


# --- the embedded chain's Esplora REST routes ---------------------------------------------------
@pytest.fixture(scope="module")
def esplora(tmp_path_factory):
    from milagro_tls.chain.chainview import ChainView
    from milagro_tls.chain.node import RegtestNode

    node = RegtestNode.open(tmp_path_factory.mktemp("esplora-fuzz") / "regtest")
    node.mine(3)
    coinbase = next(iter(__import__("milagro_tls.chain.block", fromlist=["Block"]).Block.parse(
        node.block(node.block_hash(1))).txids()))
    yield EsploraRest(ChainView(node)), node, coinbase
    node.close()


segments = st.one_of(st.text(max_size=20).map(lambda t: t.replace("/", "").replace("?", "")),
                     st.sampled_from(["tx", "block", "blocks", "tip", "height", "hash", "header", "raw", "status",
                                      "txids", "hex", "merkle-proof", "outspend", "outspends", "scripthash", "utxo",
                                      "block-height", "fee-estimates", "0", "1", "-1", "99999999999", "4294967296"]),
                     hex_of(32))


@bodies_fuzz
@given(st.lists(segments, min_size=1, max_size=4), st.booleans(), st.data())
def test_esplora_rest_answers_any_path_with_a_status(esplora, parts, known, data):
    rest, node, coinbase = esplora
    if known and len(parts) >= 2:
        parts[1] = data.draw(st.sampled_from([to_display_hex(coinbase), to_display_hex(node.block_hash(1))]))
    path = "/" + "/".join(parts) + data.draw(st.sampled_from(["", "/", "?x=1"]))
    try:
        status, ctype, body = rest.get(path)
    except HttpError as error:
        assert error.status in (400, 404, 503), (path, error.status, error.text)
    else:
        assert status == 200 and isinstance(body, bytes)


@bodies_fuzz
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: b.hex().encode()),
                 st.sampled_from([RAW_TX.hex().encode()]).flatmap(mutated), st.text(max_size=50).map(
                     lambda t: t.encode("utf-8", "surrogatepass"))))
def test_esplora_rest_broadcast_refuses_any_body_with_a_400(esplora, body):
    rest, node, _ = esplora
    try:
        rest.post("/tx", body)
    except HttpError as error:
        assert error.status == 400 and error.text.startswith("sendrawtransaction RPC error: "), error.text
