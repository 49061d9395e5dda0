"""The draft in rfc/ says what the code does: its vectors, tables and constants are the code's.

Each test reads a table or a number from the draft's markdown and compares it with the
value the code uses, so that a change on either side without the other fails here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import coincurve
import pytest
from tlslite.constants import AlertDescription, GroupName, HandshakeType, SignatureScheme

from milagro_tls import context
from milagro_tls.capture import keylog
from milagro_tls.chain.network import Network
from milagro_tls.chain.proof import MAX_DEPTH
from milagro_tls.chain.verify import DEFAULT_MIN_CONFIRMATIONS
from milagro_tls.ciphersuites import nizk, yak_btc
from milagro_tls.ciphersuites.points import G
from milagro_tls.ciphersuites.registry import DEFAULT_SUITES, SUITES, BulkCipher, KeyExchangeKind
from milagro_tls.handshake import client as handshake_client
from milagro_tls.handshake import connection, errors, standard_server, state, x509_fallback
from milagro_tls.handshake.messages import DEFAULT_MAX_STAPLE_SIZE, LOCATOR_EXTENSION
from milagro_tls.handshake.peer import VerifiedStapleCache
from milagro_tls.handshake.server import ServerHandshake
from milagro_tls.handshake.session import DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_LIFETIME, Session, SessionCache
from milagro_tls.identity import certificate, locator, marker
from milagro_tls.identity.anchor import SEAL_VALUE
from milagro_tls.identity.keys import StatementType

ROOT = Path(__file__).resolve().parents[2]
DRAFT_PATH = ROOT / "rfc" / "draft-milagro-tls-bitcoin-ake-00.md"
DRAFT = DRAFT_PATH.read_text()


def _render_module():
    spec = importlib.util.spec_from_file_location("render_vectors", ROOT / "rfc" / "render_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(anchor: str) -> list[list[str]]:
    """The body rows of the markdown table that ``{: #anchor ...}`` closes, cells stripped."""
    end = DRAFT.index("{: #" + anchor + " ")
    lines = DRAFT[:end].rstrip("\n").split("\n")
    rows = []
    for line in reversed(lines):
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    rows.reverse()
    assert len(rows) > 2 and set(rows[1]) <= {"---"}, f"no table before #{anchor}"
    return rows[2:]


def section(anchor: str) -> str:
    """The text from the heading ``{#anchor}`` to the next heading of any level."""
    start = DRAFT.index(f"{{#{anchor}}}")
    end = DRAFT.find("\n#", start)
    return DRAFT[start:end if end != -1 else len(DRAFT)]


def flat(text: str) -> str:
    return " ".join(text.split())


def vector_records() -> list[dict[str, str]]:
    """The appendix's ``name: value`` records (a value may continue on lines indented by two)."""
    block = DRAFT[DRAFT.index("<!-- BEGIN GENERATED VECTORS -->"):DRAFT.index("<!-- END GENERATED VECTORS -->")]
    records = []
    for body in re.findall(r"^~~~~\n(.*?)^~~~~$", block, re.M | re.S):
        record, name = {}, None
        for line in body.splitlines():
            if line.startswith("  "):
                record[name] += line.strip()
            else:
                name, _, value = line.partition(":")
                record[name] = value.strip()
        records.append(record)
    return records


# ---------------------------------------------------------------- (a) the vectors are generated

def test_vectors_appendix_is_exactly_what_the_renderer_makes_of_tests_vectors():
    render = _render_module()
    assert render.splice(DRAFT, render.render()) == DRAFT, \
        "the draft's vectors differ from tests/vectors: run .venv/bin/python rfc/render_vectors.py"


def test_renderer_check_mode_agrees():
    assert _render_module().main(["--check"]) == 0


def test_the_generated_block_covers_every_suite_in_both_modes():
    block = DRAFT[DRAFT.index("<!-- BEGIN GENERATED VECTORS -->"):DRAFT.index("<!-- END GENERATED VECTORS -->")]
    found = set(re.findall(r"^suite: ([0-9a-f]{4})\n(?:.*\n)*?mode: (\S+)$", block, re.M))
    assert found == {(f"{code:04x}", mode) for code in SUITES for mode in ("full", "server-only")}


# ---------------------------------------------------------------- (b) tables and code points

def test_suite_table_is_the_registry():
    assert {int(code, 16): name for code, name in table("tab-suites")} == \
        {code: suite.name for code, suite in SUITES.items()}


def test_each_suite_name_spells_its_key_exchange_cipher_and_prf_hash():
    kinds = {KeyExchangeKind.ECDH_BTC: "ECDH_BTC", KeyExchangeKind.YAK_BTC: "YAK_BTC"}
    for suite in SUITES.values():
        assert suite.name == f"TLS_{kinds[suite.key_exchange]}_WITH_{suite.cipher.name}_{suite.prf_hash.upper()}"


def test_preference_order_in_the_text_is_the_registry_order():
    text = " ".join(section("suite-table").split())
    listed = re.search(r"ChaCha20-Poly1305: ((?:0x[0-9A-F]{4}(?:, |\.))+)", text).group(1)
    assert [int(code, 16) for code in re.findall(r"0x[0-9A-F]{4}", listed)] == [s.code for s in DEFAULT_SUITES]


def test_key_length_table_is_the_ciphers():
    rows = {cipher: tuple(int(cell) for cell in rest) for cipher, *rest in table("tab-key-lengths")}
    assert rows == {c.name: (c.key_length, c.fixed_iv_length, c.record_iv_length,
                             2 * (c.key_length + c.fixed_iv_length)) for c in BulkCipher}


def test_locator_extension_number_is_the_code_point():
    assert f"bitcoin_locator(0x{LOCATOR_EXTENSION:04X})" in DRAFT
    assert f"0x{LOCATOR_EXTENSION:04X} ({LOCATOR_EXTENSION})" in DRAFT
    assert 0xFF00 <= LOCATOR_EXTENSION <= 0xFFFF and LOCATOR_EXTENSION != 0xFF01


def _error_class(name: str) -> type[errors.HandshakeError]:
    for module in (errors, handshake_client):
        if isinstance(getattr(module, name, None), type):
            return getattr(module, name)
    raise AssertionError(f"the draft names {name}, which the handshake does not define")


def test_every_alert_in_the_error_table_is_the_one_the_code_sends():
    rows = table("tab-alerts")
    for _failure, alert, exception in rows:
        name, code = re.fullmatch(r"(\w+) \((\d+)\)", alert).groups()
        assert getattr(AlertDescription, name) == int(code), alert
        assert _error_class(exception).alert == int(code), f"{exception} sends {name} in the draft"
    # every concrete alert-carrying class the handshake raises has its row
    named = {exception for *_, exception in rows}
    assert {"UnexpectedMessage", "BadRecordMac", "RecordOverflow", "NoCommonSuite", "PeerNotAuthenticated",
            "AnchorNotYetVerifiable", "IllegalParameter", "MalformedMessage", "ProofFailed",
            "UnsupportedVersion", "InternalError", "UnsupportedExtension"} <= named


def test_negative_case_table_is_the_test_suites_table():
    from handshake.test_negative_cases import CASES

    expected = [[case.id, case.values[0], AlertDescription.toRepr(case.values[1])] for case in CASES]
    assert table("tab-negative") == expected
    assert f"{{{{negative-cases}}}} lists {len(CASES)} hostile handshakes" in DRAFT


_MESSAGES = {"ClientHello": HandshakeType.client_hello, "ServerHello": HandshakeType.server_hello,
             "Certificate": HandshakeType.certificate,
             "ServerKeyExchange": HandshakeType.server_key_exchange,
             "CertificateRequest": HandshakeType.certificate_request,
             "ServerHelloDone": HandshakeType.server_hello_done,
             "ClientKeyExchange": HandshakeType.client_key_exchange,
             "ChangeCipherSpec": state.CHANGE_CIPHER_SPEC, "Finished": HandshakeType.finished}


def test_transition_tables_are_the_state_machine():
    """Every (role, state, message) row group lists exactly the code's next states, in its
    order: the first row is the usual next state (state.next_state), as the draft says."""
    drawn: dict[tuple, list] = {}
    for role, anchor in ((state.Role.CLIENT, "tab-client-transitions"),
                         (state.Role.CLIENT, "tab-client-fallback-transitions"),
                         (state.Role.SERVER, "tab-server-transitions")):
        for current, message, after in table(anchor):
            drawn.setdefault((role, state.State[current], _MESSAGES[message]), []).append(state.State[after])
    coded = {key: list(after if isinstance(after, tuple) else (after,)) for key, after in state.TRANSITIONS.items()}
    assert drawn == coded


def test_state_figure_names_every_state():
    figure = DRAFT[DRAFT.index("~~~~\n client\n START"):DRAFT.index("{: #fig-server-states ")]
    assert "{: #fig-client-states " in figure
    drawn = set(re.findall(r"\b(?:START|WAIT_[A-Z_]+|ESTABLISHED|CLOSED|FAILED)\b", figure))
    assert drawn == {s.name for s in state.State}


def test_handshake_message_bounds_are_the_connections():
    text = " ".join(section("state-machine").split())
    assert f"ClientHello and ServerHello at {connection._MAX_HELLO} bytes" in text
    assert f"plus {connection._KEY_EXCHANGE_OVERHEAD} bytes" in text
    assert f"Certificate and CertificateRequest (fallback only) at {connection._MAX_CERTIFICATE_CHAIN} bytes" in text
    assert f"more than {'four' if connection._MAX_WARNINGS == 4 else connection._MAX_WARNINGS} consecutive" in text


def test_fallback_rows_are_open_only_on_the_clients_fallback_path_and_certificate_request_once():
    """connection._accepts: what the draft says is refused from the header alone."""
    accepts = connection.Connection._accepts
    ours = SimpleNamespace(_x509=None)
    fallback = SimpleNamespace(_x509=object())
    requested = SimpleNamespace(_x509=object(), _certificate_requested=True)
    cert, request = HandshakeType.certificate, HandshakeType.certificate_request
    assert not accepts(ours, cert) and not accepts(ours, request)
    assert accepts(fallback, cert) and accepts(fallback, request)
    assert accepts(requested, cert) and not accepts(requested, request)
    assert all(accepts(ours, message) for message in _MESSAGES.values() if message not in (cert, request))
    text = flat(section("state-machine"))
    assert "accepts Certificate and CertificateRequest only on that path, and CertificateRequest at most once" in text
    assert "treated as messages without a row, and so is a second CertificateRequest: the header alone refuses " \
           "them with unexpected_message" in text
    assert "exception" not in text and "reads it and then refuses it" not in text
    assert "A second CertificateRequest is refused with unexpected_message from its header" in \
        flat(section("fallback-client"))
    failure = next(row[0] for row in table("tab-alerts") if row[1] == "unexpected_message (10)")
    assert "Certificate or CertificateRequest outside the client's fallback, a second CertificateRequest" in failure


# ---------------------------------------------------------------- resumption and the standard-suite fallback

def test_standard_suite_table_is_the_fallback_registry_in_preference_order():
    rows = [tuple(row) for row in table("tab-standard-suites")]
    assert rows == [(f"0x{suite.code:04X}", suite.name, suite.authentication)
                    for suite in x509_fallback.STANDARD_SUITES.values()]
    # none collides with our own private-use suites, which the draft's other table lists
    assert not {int(code, 16) for code, *_ in rows} & set(SUITES)


def test_fallback_client_hello_extensions_are_the_codes():
    text = " ".join(section("fallback-client").split())
    groups = re.search(r"supported_groups: (.*?);", text).group(1)
    assert [(name, int(value)) for name, value in re.findall(r"(\w+)\((\d+)\)", groups)] == \
        [(GroupName.toRepr(group), group) for group in x509_fallback._GROUPS]
    schemes = re.search(r"signature_algorithms: (.*?)\.", text).group(1)
    assert [name.strip() for name in schemes.split(",")] == \
        [SignatureScheme.toRepr(scheme) for scheme in x509_fallback._SIGNATURE_SCHEMES]
    assert "ec_point_formats: uncompressed only" in text


def test_session_defaults_are_the_codes():
    text = " ".join(section("resumption").split())
    assert f"default lifetime is {DEFAULT_SESSION_LIFETIME:g} seconds" in text
    assert f"holds at most {DEFAULT_MAX_SESSIONS} sessions" in text



def _session(server_locator: bytes) -> Session:
    suite = DEFAULT_SUITES[0]
    return Session(id=b"\x01" * 32, suite=suite, master_secret=bytes(48), peer=None, client_locator=b"",
                   server_locator=server_locator, created=time.time())


def test_a_server_that_moved_to_another_anchor_resumes_none_of_its_old_sessions():
    assert "server_locator" in Session.__dataclass_fields__
    cache = SessionCache()
    cache.put(_session(b"old anchor"))
    suite = DEFAULT_SUITES[0]

    def resumable(own_locator: bytes):
        server = SimpleNamespace(config=SimpleNamespace(
            session_cache=cache, suites=DEFAULT_SUITES,
            identity=SimpleNamespace(locator=SimpleNamespace(encode=lambda: own_locator))),
            _offered_suites=[suite.code])
        return ServerHandshake._resumable_session(server, b"\x01" * 32, b"")

    assert resumable(b"old anchor") is not None
    assert resumable(b"new anchor") is None
    text = flat(section("resumption"))
    assert "the server's bitcoin_locator extension (the server's own locator)" in text
    assert "5. The session's server locator is, byte for byte, the server's locator now." in text
    assert "SHOULD discard" not in text


def test_a_client_fallback_completes_with_no_suite_of_the_draft_and_the_standard_cipher():
    suite = next(iter(x509_fallback.STANDARD_SUITES.values()))
    fake = SimpleNamespace(peer_x509=object(), suite=suite, peer=None, alpn_protocol=None,
                           session_reused=False, _events=[])
    connection.Connection._complete(fake)
    (event,) = fake._events
    assert event.suite is None and event.peer is None
    assert event.standard_cipher == (suite.short_name, "TLSv1.2", suite.cipher.bits)
    text = flat(section("fallback"))
    assert "completes a fallback handshake, in either role, with no suite of this document and no anchored peer" in text
    assert "HandshakeComplete event carries suite None" in text and "standard_cipher" in text


def test_the_server_fallbacks_reported_alerts_are_the_codes():
    text = flat(section("alerts"))
    sentence = re.search(r"reports locally the alert that OpenSSL's reason for the failure implies: (.*?)\.", text)
    pairs = re.findall(r"(\w+) for ([A-Z_]+)", sentence.group(1))
    assert len(pairs) >= 6
    for alert, reason in pairs:
        assert standard_server._ALERT_FOR_REASON[reason] == getattr(AlertDescription, alert), (alert, reason)
    assert sentence.group(1).endswith("and handshake_failure for a reason it does not know")
    assert "UNKNOWN_REASON" not in standard_server._ALERT_FOR_REASON


def test_marker_table_and_format_are_the_codes():
    rows = {int(t, 16): name for t, name, _ in table("tab-marker") if "-" not in t and name != "reserved"}
    assert rows == {int(t): t.name.lower() for t in marker.MarkerType}
    assert marker.MAGIC.hex(" ") in DRAFT and marker.PAYLOAD_SIZE == 40
    assert f"0x{marker.OP_RETURN:02x} (OP_RETURN), the byte 0x{marker.PAYLOAD_SIZE:02x}" in DRAFT


def test_locator_structure_is_the_codes():
    networks = dict(re.findall(r"(\w+)\((\d+)\)", DRAFT[DRAFT.index("enum {\n    mainnet"):
                                                        DRAFT.index("} BitcoinNetwork;")]))
    assert {name: int(value) for name, value in networks.items() if name != "255"} == \
        {n.label: n.value for n in Network}
    kinds = dict(re.findall(r"(\w+)\((\d+)\)", re.search(r"enum \{ p2wpkh.*?\} LocatorKind;", DRAFT).group(0)))
    assert {name: int(value) for name, value in kinds.items() if name != "255"} == \
        {k.name.lower(): k.value for k in locator.LocatorKind}
    assert f"body<0..{locator.MAX_BODY}>" in DRAFT
    assert f"The fixed part is {locator._FIXED.size} bytes" in DRAFT


def test_certificate_members_and_limits_are_the_codes():
    members = {name: presence for name, presence, _ in table("tab-certificate")}
    assert {m for m, p in members.items() if p == "REQUIRED"} == certificate._REQUIRED
    assert {m for m, p in members.items() if p == "OPTIONAL"} == certificate._OPTIONAL
    roles = re.findall(r'"(\w+)"', next(value for name, _, value in table("tab-certificate") if name == "role"))
    assert tuple(roles) == certificate.ROLES
    assert f"at most {certificate.MAX_CERTIFICATE_SIZE} bytes" in " ".join(section("birth-certificate").split())


def test_statement_tags_are_the_identity_keys():
    tags = set(re.findall(r'"(milagro/[a-z-]+)"', section("identity-key")))
    assert tags == {kind.value for kind in StatementType}


def test_nizk_constants_are_the_codes():
    text = section("nizk")
    generator = "".join(re.search(r"G is\s+([0-9a-f]+)\s+([0-9a-f]+)", text).groups())
    assert bytes.fromhex(generator) == G
    assert f'{len(yak_btc.ANONYMOUS_USER_ID)} ASCII bytes\n                "{yak_btc.ANONYMOUS_USER_ID.decode()}"' in text


def test_defaults_in_the_text_are_the_codes():
    flat = " ".join(DRAFT.split())
    assert f"default is {DEFAULT_MAX_STAPLE_SIZE} bytes" in flat
    assert f"implementation's default is {DEFAULT_MIN_CONFIRMATIONS}" in flat
    assert f"default of {DEFAULT_MIN_CONFIRMATIONS} confirmations" in flat
    assert f"the seal ({SEAL_VALUE} satoshis" in flat
    assert f"Merkle depth, <= {MAX_DEPTH}" in DRAFT and f"depth of at most {MAX_DEPTH}" in flat



# ---------------------------------------------------------------- verification cache, scalar arithmetic, key log

def test_verified_staple_cache_is_described_as_the_code_keeps_it():
    text = flat(section("verification-procedure"))
    cache = VerifiedStapleCache()
    assert f"holds at most {cache.max_entries} staples, dropping the least recently used first" in text
    assert "keyed by SHA-256 over the encoded locator and the certificate and proof bundle, each prefixed by its " \
           "4-byte length" in text
    staple = SimpleNamespace(certificate=b"certificate", proof=b"proof")
    locator_ = SimpleNamespace(encode=lambda: b"locator")
    expected = hashlib.sha256(b"locator" + (11).to_bytes(4, "big") + b"certificate" + (5).to_bytes(4, "big")
                              + b"proof").digest()
    assert cache.key(locator_, staple) == expected
    for _ in range(cache.max_entries + 1):
        cache.put(os.urandom(32), None)
    assert len(cache._entries) == cache.max_entries


def test_the_yak_vectors_are_reproduced_by_the_codes_scalar_arithmetic():
    """NIZK responses and k + x now come from libsecp256k1's seckey tweaks: byte for byte the appendix."""
    records = [r for r in vector_records() if r.get("record") == "handshake" and r["suite_name"].startswith("TLS_YAK")]
    assert len(records) == 6

    def key(value: str | None):
        return coincurve.PrivateKey(bytes.fromhex(value)) if value else None

    for record in records:
        other_info = yak_btc.other_info(bytes.fromhex(record["client_random"]), bytes.fromhex(record["server_random"]))
        for side in ("client", "server"):
            proof = nizk.prove(key(record[f"{side}_ephemeral"]), bytes.fromhex(record[f"{side}_nizk_user_id"]),
                               other_info, nonce=key(record[f"{side}_nizk_nonce"]))
            assert (proof.commitment.hex(), proof.response.hex()) == \
                (record[f"{side}_nizk_commitment"], record[f"{side}_nizk_response"]), (record["suite"], side)
        full = record["mode"] == "full"
        client = yak_btc.premaster(long_term=key(record.get("client_nonce_k")) if full else None,
                                   ephemeral=key(record["client_ephemeral"]),
                                   peer_nonce_point=bytes.fromhex(record["server_nonce_point"]),
                                   peer_ephemeral=bytes.fromhex(record["server_ephemeral_point"]))
        server = yak_btc.premaster(long_term=key(record["server_nonce_k"]), ephemeral=key(record["server_ephemeral"]),
                                   peer_nonce_point=bytes.fromhex(record["client_nonce_point"]) if full else None,
                                   peer_ephemeral=bytes.fromhex(record["client_ephemeral_point"]))
        assert client.hex() == server.hex() == record["premaster"], record["suite"]
    assert r"r = v - a\*c (as a\*(n - c) + v) and YAK-BTC's k + x are computed with its secret-key tweak functions" in \
        flat(section("implementation-status"))


def test_key_log_is_described_as_the_code_writes_it(tmp_path, monkeypatch, caplog):
    text = flat(section("key-log"))
    line = keylog.keylog_line(bytes(range(32)), bytes(48))
    assert re.fullmatch(r"CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}\n", line)
    assert "CLIENT_RANDOM <client_random, hex> <master_secret, hex>" in text
    # off unless asked: an empty SSLKEYLOGFILE is off
    monkeypatch.setenv("SSLKEYLOGFILE", "")
    assert keylog.keylog_path_from_environment() is None
    assert "Key logging MUST be off unless it is explicitly configured" in text
    assert "an empty value is off, and python -E ignores it" in text
    # created 0600 whatever the umask allows, then appended to
    path = tmp_path / "keys.log"
    previous = os.umask(0)
    try:
        log = keylog.KeyLog(path)
    finally:
        os.umask(previous)
    assert f"created with mode {os.stat(path).st_mode & 0o777:04o}" in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    log.write(bytes(range(32)), bytes(48))
    log.write(bytes(range(32)), bytes(48))
    assert keylog.parse_keylog(path.read_text()) == {bytes(range(32)): bytes(48)}
    assert path.read_text().count("CLIENT_RANDOM") == 2
    # a warning when it is turned on (the Context's keylog_filename setter, on a stand-in)
    stand_in = SimpleNamespace()
    with caplog.at_level(logging.WARNING, logger=context.__name__):
        context.Context.keylog_filename.fset(stand_in, tmp_path / "other.log")
    assert stand_in._keylog.path == str(tmp_path / "other.log")
    assert any(r.levelno == logging.WARNING and "KEY LOG" in r.getMessage() for r in caplog.records)
    assert "Turning it on logs a warning" in text


# ---------------------------------------------------------------- (c) the sections the issue requires

REQUIRED_SECTIONS = [
    "terminology", "birth-certificate", "marker", "single-anchor", "identity-key", "locator",
    "nonce-keys", "exact-r", "owner-k", "suite-table", "ecdh-btc", "yak-btc", "nizk",
    "handshake", "message-flow", "state-machine", "client-hello", "server-hello", "locator-extension",
    "wire-formats", "staple", "ske", "cke", "proof-bundle", "premaster",
    "key-schedule", "ems", "key-block", "record-protection", "finished",
    "verification", "verification-procedure", "spv", "header-chain", "reorgs", "trust-store", "revocation",
    "alerts", "roles", "future-work", "iana", "security", "k-is-the-key", "fs-kci", "privacy", "pinning",
    "depth-vs-reorg", "thin-clients", "no-io", "test-vectors", "negative-cases",
    "resumption", "fallback", "fallback-server", "fallback-client", "resumption-security", "downgrade",
    "implementation-status", "key-log",
]


@pytest.mark.parametrize("anchor", REQUIRED_SECTIONS)
def test_draft_has_required_section(anchor):
    assert re.search(rf"^#+ .*\{{#{re.escape(anchor)}\}}$", DRAFT, re.M), f"no section {{#{anchor}}}"


def test_front_matter_names_the_required_references():
    front = DRAFT[:DRAFT.index("--- abstract")]
    for ref in ("RFC2119", "RFC8174", "RFC5246", "RFC7627", "RFC8235", "RFC8785", "RFC5288", "RFC7905",
                "RFC8422", "RFC5746", "RFC6066", "RFC7301", "BIP-0141", "BIP-0143", "BIP-0340", "BIP-0341",
                "McCorry2015", "Hao2010", "RFC5289", "RFC5280", "RFC5077", "RFC9525"):
        assert re.search(rf"^  {ref}:$", front, re.M), ref
    assert "docname: draft-milagro-tls-bitcoin-ake-00" in front
    assert re.search(r"^category: (info|exp)$", front, re.M)


def test_every_cross_reference_has_a_target():
    anchors = set(re.findall(r"\{#([\w-]+)\}", DRAFT)) | set(re.findall(r"\{: #([\w-]+)", DRAFT))
    references = set(re.findall(r"^  ([\w-]+):$", DRAFT[:DRAFT.index("--- abstract")], re.M))
    for target in re.findall(r"\{\{(?:(?:Section|Appendix) [\w.]+ of )?([\w-]+)\}\}", DRAFT):
        assert target in anchors | references, target
