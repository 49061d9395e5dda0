"""Hostile and malformed handshakes: each case asserts the exact alert record the refusing
side puts on the wire, and that the refused connection object cannot be used again.
(The drop-in Context issue re-runs this table over real sockets.)"""
from __future__ import annotations

import os

import pytest
from tlslite.constants import AlertDescription as A
from tlslite.constants import CipherSuite, ExtensionType, HandshakeType
from tlslite.extensions import TLSExtension
from tlslite.messages import ClientHello

from milagro_tls.chain.tx import parse_tx
from milagro_tls.ciphersuites import nizk, yak_btc
from milagro_tls.ciphersuites.points import generate_scalar
from milagro_tls.ciphersuites.registry import select_suites
from milagro_tls.handshake import ConnectionDead
from milagro_tls.handshake.messages import LOCATOR_EXTENSION

from helpers.handshake import config, replace
from helpers.tls_records import (APPLICATION_DATA, CCS, HANDSHAKE, alert_record, frame, handshake,
                                 plaintext_flight, records, reframe)
from .hostile import KeyExchangeBody, plan, replace_message, rewrite_key_exchange, rewrite_message

ECDH, YAK = select_suites("ecdh")[0], select_suites("yak")[0]
SERVER, CLIENT = "server", "client"


def _pair(world, suite, *, client="alice", server="echo.example", client_trust=("echo.example",),
          server_trust=("alice",), **server_options):
    c = config(world, identity=client, trust=world.trust(*client_trust), suites=(suite,))
    s = config(world, identity=server, trust=world.trust(*server_trust), **server_options)
    return c, s


def _hello(world, *, suites=(YAK.code,), ems=True, locator: bytes | None = b"", version=(3, 3),
           compression=(0,), duplicate=False) -> bytes:
    extensions = []
    if ems:
        extensions.append(TLSExtension(extType=ExtensionType.extended_master_secret).create(bytearray()))
    if locator is not None:
        extensions.append(TLSExtension(extType=LOCATOR_EXTENSION).create(bytearray(locator)))
    if duplicate:
        extensions.append(extensions[0])
    hello = ClientHello().create(version, bytearray(os.urandom(32)), bytearray(), list(suites),
                                 extensions=extensions)
    hello.compression_methods = list(compression)
    return frame(HANDSHAKE, bytes(hello.write()))


def _flipped_witness(world, name: str, proof: bytes) -> bytes:
    signature = bytes(parse_tx(world.parties[name].anchor_tx).vin[0].witness.items[0])
    at = proof.index(signature) + 10
    return proof[:at] + bytes([proof[at] ^ 1]) + proof[at + 1:]


def _not_on_curve() -> bytes:
    x = 5   # x³ + 7 is not a square mod p for x = 5
    return b"\x02" + x.to_bytes(32, "big")


def _foreign_proof(body: KeyExchangeBody, *, user_id: bytes, other_info: bytes) -> None:
    """Swap in an ephemeral whose proof is valid but bound to the wrong identity or session."""
    x = generate_scalar()
    proof = nizk.prove(x, user_id, other_info)
    body.point, body.commitment, body.response = x.public_key.format(), proof.commitment, proof.response


# Each case: (id, fails, alert, scenario(world) -> Plan)
def _case(name, fails, alert):
    def register(scenario):
        CASES.append(pytest.param(fails, alert, scenario, id=name))
        return scenario
    return register


CASES: list = []


# --- ClientHello ----------------------------------------------------------------------------
@_case("client-hello-unknown-suites-only", SERVER, A.handshake_failure)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda _: _hello(world, suites=(0xC02B, 0xFF99))})


@_case("client-hello-without-locator-extension", SERVER, A.handshake_failure)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda _: _hello(world, locator=None)})


@_case("client-hello-without-extended-master-secret", SERVER, A.handshake_failure)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda _: _hello(world, ems=False)})


@_case("client-hello-tls-1-0", SERVER, A.protocol_version)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda _: _hello(world, version=(3, 1))})


@_case("client-hello-duplicate-extension", SERVER, A.decode_error)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda _: _hello(world, duplicate=True)})


@_case("client-hello-without-null-compression", SERVER, A.illegal_parameter)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda _: _hello(world, compression=(1,))})


@_case("client-hello-truncated", SERVER, A.decode_error)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: rewrite_message(0, lambda body: body[:-3])})


@_case("client-hello-malformed-locator", SERVER, A.decode_error)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda _: _hello(world, locator=b"\x01\x04\x01garbage")})


@_case("anonymous-client-to-server-requiring-identity", SERVER, A.handshake_failure)
def _(world):
    c, s = _pair(world, YAK, client=None, require_client_identity=True)
    return plan(c, s)


# --- ClientKeyExchange ----------------------------------------------------------------------
@_case("client-key-exchange-truncated", SERVER, A.decode_error)
def _(world):
    return plan(*_pair(world, YAK), tamper={2: rewrite_message(0, lambda body: body[:40])})


@_case("client-key-exchange-oversized", SERVER, A.decode_error)
def _(world):
    huge = handshake(HandshakeType.client_key_exchange, b"\x00" * 0)[:1] + (20000).to_bytes(3, "big")
    return plan(*_pair(world, YAK), tamper={2: lambda _: frame(HANDSHAKE, huge + b"\x00" * 100)})


@_case("client-ephemeral-not-on-curve", SERVER, A.illegal_parameter)
def _(world):
    def change(body):
        body.point = _not_on_curve()
    return plan(*_pair(world, ECDH, client=None),
               tamper={2: rewrite_key_exchange(0, yak=False, staple=False, change=change)})


@_case("client-ephemeral-infinity", SERVER, A.illegal_parameter)
def _(world):
    def change(body):
        body.point = b"\x00"
    return plan(*_pair(world, ECDH, client=None),
               tamper={2: rewrite_key_exchange(0, yak=False, staple=False, change=change)})


@_case("client-ecdh-point-not-the-anchor-nonce", SERVER, A.illegal_parameter)
def _(world):
    def change(body):
        body.point = generate_scalar().public_key.format()
    return plan(*_pair(world, ECDH), tamper={2: rewrite_key_exchange(0, yak=False, staple=True, change=change)})


@_case("client-nizk-zero-response", SERVER, A.illegal_parameter)
def _(world):
    def change(body):
        body.response = bytes(32)
    return plan(*_pair(world, YAK), tamper={2: rewrite_key_exchange(0, yak=True, staple=True, change=change)})


@_case("client-nizk-tampered-commitment", SERVER, A.decrypt_error)
def _(world):
    def change(body):
        body.commitment = generate_scalar().public_key.format()
    return plan(*_pair(world, YAK), tamper={2: rewrite_key_exchange(0, yak=True, staple=True, change=change)})


@_case("client-nizk-bound-to-another-identity", SERVER, A.decrypt_error)
def _(world):
    other = world.identities["mallory.example"].certificate.digest()

    def tamper(data):
        client_random = outcome_randoms["client"]
        server_random = outcome_randoms["server"]
        return rewrite_key_exchange(0, yak=True, staple=True, change=lambda body: _foreign_proof(
            body, user_id=yak_btc.user_id(other),
            other_info=yak_btc.other_info(client_random, server_random)))(data)
    outcome_randoms = {}
    return _with_randoms(world, _pair(world, YAK), tamper, outcome_randoms)


@_case("client-nizk-bound-to-other-randoms", SERVER, A.decrypt_error)
def _(world):
    own = world.identities["alice"].certificate.digest()

    def tamper(data):
        return rewrite_key_exchange(0, yak=True, staple=True, change=lambda body: _foreign_proof(
            body, user_id=yak_btc.user_id(own), other_info=os.urandom(64)))(data)
    return plan(*_pair(world, YAK), tamper={2: tamper})


@_case("client-nizk-valid-but-foreign-ephemeral-fails-at-finished", SERVER, A.bad_record_mac)
def _(world):
    """Control for the two cases above: a correctly bound proof passes the NIZK check, and
    the key confirmation (Finished) is what then refuses the substituted ephemeral."""
    own = world.identities["alice"].certificate.digest()

    def tamper(data):
        return rewrite_key_exchange(0, yak=True, staple=True, change=lambda body: _foreign_proof(
            body, user_id=yak_btc.user_id(own),
            other_info=yak_btc.other_info(randoms["client"], randoms["server"])))(data)
    randoms = {}
    return _with_randoms(world, _pair(world, YAK), tamper, randoms)


@_case("client-not-in-trust-store", SERVER, A.bad_certificate)
def _(world):
    return plan(*_pair(world, YAK, client="mallory.example"))


@_case("client-role-not-allowed", SERVER, A.bad_certificate)
def _(world):
    return plan(*_pair(world, YAK, allowed_client_roles=frozenset({"dta"})))


@_case("client-staple-modified-witness", SERVER, A.bad_certificate)
def _(world):
    def change(body):
        body.proof = _flipped_witness(world, "alice", body.proof)
    return plan(*_pair(world, YAK), tamper={2: rewrite_key_exchange(0, yak=True, staple=True, change=change)})


@_case("client-staple-certificate-does-not-match-anchor", SERVER, A.bad_certificate)
def _(world):
    def change(body):
        body.certificate = world.identities["mallory.example"].certificate_bytes
    return plan(*_pair(world, YAK), tamper={2: rewrite_key_exchange(0, yak=True, staple=True, change=change)})


@_case("client-staple-for-another-block", SERVER, A.bad_certificate)
def _(world):
    def change(body):
        body.proof = world.identities["idp.example"].proof_bytes
    return plan(*_pair(world, ECDH), tamper={2: rewrite_key_exchange(0, yak=False, staple=True, change=change)})


@_case("client-staple-oversized", SERVER, A.decode_error)
def _(world):
    c, s = _pair(world, YAK)
    size = len(world.identities["alice"].proof_bytes) + len(world.identities["alice"].certificate_bytes)
    return plan(c, replace(s, max_staple_size=size - 1))


@_case("client-anchor-too-shallow", SERVER, A.certificate_unknown)
def _(world):
    return plan(*_pair(world, YAK, min_confirmations=10_000))


@_case("client-key-exchange-replayed-from-another-session", SERVER, A.decrypt_error)
def _(world):
    first = plan(*_pair(world, YAK)).in_memory()
    old_cke = plaintext_flight(first.transcript[2][1])[0][0]
    return plan(*_pair(world, YAK), tamper={2: replace_message(0, old_cke)})


@_case("client-ecdh-flight-replayed-from-another-session", SERVER, A.bad_record_mac)
def _(world):
    first = plan(*_pair(world, ECDH)).in_memory()
    old_flight = first.transcript[2][1]
    return plan(*_pair(world, ECDH), tamper={2: lambda _: old_flight})


@_case("client-finished-tampered", SERVER, A.bad_record_mac)
def _(world):
    def tamper(data):
        *head, last = records(data)
        return b"".join(frame(t, p) for t, p in head) + frame(last[0], last[1][:-1] + bytes([last[1][-1] ^ 1]))
    return plan(*_pair(world, YAK), tamper={2: tamper})


# --- record layer and order -----------------------------------------------------------------
@_case("change-cipher-spec-before-key-exchange", SERVER, A.unexpected_message)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda data: frame(CCS, b"\x01") + data})


@_case("application-data-before-handshake", SERVER, A.unexpected_message)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda data: frame(APPLICATION_DATA, b"hi") + data})


@_case("record-of-unknown-content-type", SERVER, A.unexpected_message)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda data: b"GET / HTTP/1.1\r\n\r\n"})


@_case("record-over-2-to-the-14", SERVER, A.record_overflow)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda data: frame(HANDSHAKE, b"\x01" * (16384 + 1))})


@_case("server-hello-done-out-of-order", SERVER, A.unexpected_message)
def _(world):
    return plan(*_pair(world, YAK), tamper={0: lambda data: frame(HANDSHAKE, handshake(HandshakeType.server_hello_done, b""))})


# --- ServerHello and ServerKeyExchange ------------------------------------------------------
@_case("server-hello-picks-a-suite-not-offered", CLIENT, A.illegal_parameter)
def _(world):
    def change(body):
        at = 2 + 32 + 1 + body[34]
        return body[:at] + CipherSuite.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.to_bytes(2, "big") + body[at + 2:]
    return plan(*_pair(world, YAK), tamper={1: rewrite_message(0, change)})


@_case("server-hello-without-extended-master-secret", CLIENT, A.handshake_failure)
def _(world):
    return plan(*_pair(world, YAK), tamper={1: rewrite_message(0, _drop_extension(ExtensionType.extended_master_secret))})


@_case("server-hello-without-locator", CLIENT, A.illegal_parameter)
def _(world):
    return plan(*_pair(world, YAK), tamper={1: rewrite_message(0, _drop_extension(LOCATOR_EXTENSION))})


@_case("server-hello-unsolicited-extension", CLIENT, A.unsupported_extension)
def _(world):
    def change(body):
        return _add_extension(body, ExtensionType.supports_npn, b"")
    return plan(*_pair(world, YAK), tamper={1: rewrite_message(0, change)})


@_case("server-key-exchange-truncated", CLIENT, A.decode_error)
def _(world):
    return plan(*_pair(world, YAK), tamper={1: rewrite_message(1, lambda body: body[:-7])})


@_case("server-key-exchange-oversized", CLIENT, A.decode_error)
def _(world):
    def tamper(data):
        messages, _ = plaintext_flight(data)
        huge = bytes([HandshakeType.server_key_exchange]) + (40000).to_bytes(3, "big")
        return reframe(messages[:1]) + frame(HANDSHAKE, huge + b"\x00" * 64)
    return plan(*_pair(world, YAK), tamper={1: tamper})


@_case("server-ephemeral-not-on-curve", CLIENT, A.illegal_parameter)
def _(world):
    def change(body):
        body.point = _not_on_curve()
    return plan(*_pair(world, YAK), tamper={1: rewrite_key_exchange(1, yak=True, staple=True, change=change)})


@_case("server-ephemeral-infinity", CLIENT, A.illegal_parameter)
def _(world):
    def change(body):
        body.point = b"\x00"
    return plan(*_pair(world, YAK), tamper={1: rewrite_key_exchange(1, yak=True, staple=True, change=change)})


@_case("server-ecdh-point-not-the-anchor-nonce", CLIENT, A.illegal_parameter)
def _(world):
    def change(body):
        body.point = generate_scalar().public_key.format()
    return plan(*_pair(world, ECDH), tamper={1: rewrite_key_exchange(1, yak=False, staple=True, change=change)})


@_case("server-nizk-tampered-response", CLIENT, A.decrypt_error)
def _(world):
    def change(body):
        body.response = (int.from_bytes(body.response, "big") + 1).to_bytes(32, "big")
    return plan(*_pair(world, YAK), tamper={1: rewrite_key_exchange(1, yak=True, staple=True, change=change)})


@_case("server-staple-modified-witness", CLIENT, A.bad_certificate)
def _(world):
    def change(body):
        body.proof = _flipped_witness(world, "echo.example", body.proof)
    return plan(*_pair(world, YAK), tamper={1: rewrite_key_exchange(1, yak=True, staple=True, change=change)})


@_case("server-staple-digest-mismatch", CLIENT, A.bad_certificate)
def _(world):
    def change(body):
        body.certificate = world.identities["mallory.example"].certificate_bytes
    return plan(*_pair(world, YAK), tamper={1: rewrite_key_exchange(1, yak=True, staple=True, change=change)})


@_case("server-not-in-trust-store", CLIENT, A.bad_certificate)
def _(world):
    return plan(*_pair(world, YAK, server="mallory.example"))


@_case("server-name-does-not-match-its-entry", CLIENT, A.bad_certificate)
def _(world):
    return plan(*_pair(world, YAK), server_hostname="bank.example")


@_case("server-self-asserted-name-is-not-trusted", CLIENT, A.bad_certificate)
def _(world):
    """mallory.example's certificate is anchored and valid; only the pin is missing."""
    return plan(*_pair(world, ECDH, server="mallory.example"), server_hostname="mallory.example")


@_case("server-anchor-too-shallow", CLIENT, A.certificate_unknown)
def _(world):
    c, s = _pair(world, YAK)
    return plan(replace(c, min_confirmations=10_000), s)


@_case("server-staple-oversized", CLIENT, A.decode_error)
def _(world):
    c, s = _pair(world, YAK)
    size = len(world.identities["echo.example"].proof_bytes) + len(world.identities["echo.example"].certificate_bytes)
    return plan(replace(c, max_staple_size=size - 1), s)


@_case("server-finished-tampered", CLIENT, A.bad_record_mac)
def _(world):
    def tamper(data):
        *head, last = records(data)
        return b"".join(frame(t, p) for t, p in head) + frame(last[0], last[1][:-1] + bytes([last[1][-1] ^ 1]))
    return plan(*_pair(world, YAK), tamper={3: tamper})


# --- helpers for ServerHello surgery ------------------------------------------------------------
def _split_server_hello(body: bytes):
    session_length = body[34]
    fixed_end = 2 + 32 + 1 + session_length + 2 + 1
    total = int.from_bytes(body[fixed_end:fixed_end + 2], "big")
    extensions, pos, blob = [], fixed_end + 2, body[fixed_end + 2:fixed_end + 2 + total]
    pos = 0
    while pos < len(blob):
        ext_type = int.from_bytes(blob[pos:pos + 2], "big")
        length = int.from_bytes(blob[pos + 2:pos + 4], "big")
        extensions.append((ext_type, blob[pos + 4:pos + 4 + length]))
        pos += 4 + length
    return body[:fixed_end], extensions


def _join_server_hello(head: bytes, extensions) -> bytes:
    blob = b"".join(t.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d for t, d in extensions)
    return head + len(blob).to_bytes(2, "big") + blob


def _drop_extension(ext_type: int):
    def change(body):
        head, extensions = _split_server_hello(body)
        return _join_server_hello(head, [(t, d) for t, d in extensions if t != ext_type])
    return change


def _add_extension(body: bytes, ext_type: int, data: bytes) -> bytes:
    head, extensions = _split_server_hello(body)
    return _join_server_hello(head, extensions + [(ext_type, data)])


def _with_randoms(world, pair, tamper_with, randoms: dict):
    """A flight-2 tamper that needs this session's randoms (read from the hellos as they pass)."""
    def capture_client(data):
        randoms["client"] = plaintext_flight(data)[0][0][4 + 2:4 + 34]
        return data

    def capture_server(data):
        randoms["server"] = plaintext_flight(data)[0][0][4 + 2:4 + 34]
        return data
    return plan(*pair, tamper={0: capture_client, 1: capture_server, 2: tamper_with})


# --- the test -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fails, alert, scenario", CASES)
def test_refused_with_exact_alert(world, fails, alert, scenario):
    outcome = scenario(world).in_memory()
    assert outcome.failed is not None, "the handshake was expected to fail"
    assert outcome.failed.role.value == fails
    assert outcome.event.alert_sent and outcome.event.error.alert == alert
    if outcome.failed.role.value == CLIENT and outcome.transcript[-1][0] == 3:
        # The client had switched to encryption: its alert is a protected record. The
        # server, which holds the keys, must read exactly this alert from it.
        outcome.other.receive_data(outcome.sent)
        event = outcome.other.next_event()
        assert event.error.alert == alert and not event.alert_sent
    else:
        assert outcome.sent == alert_record(alert)
    with pytest.raises(ConnectionDead):
        outcome.failed.next_event()
    with pytest.raises(ConnectionDead):
        outcome.failed.receive_data(b"\x16\x03\x03")


def test_the_table_covers_forty_cases():
    assert len(CASES) >= 40
