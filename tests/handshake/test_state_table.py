"""The transition table alone, driven by message types only (house style: h11's test_state)."""
from __future__ import annotations

from tlslite.constants import HandshakeType as H

from milagro_tls.handshake.state import CHANGE_CIPHER_SPEC, TRANSITIONS, Role, State, next_state, next_states

CLIENT_PATH = [(State.WAIT_SERVER_HELLO, H.server_hello), (State.WAIT_SERVER_KEY_EXCHANGE, H.server_key_exchange),
               (State.WAIT_SERVER_HELLO_DONE, H.server_hello_done),
               (State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC), (State.WAIT_FINISHED, H.finished)]
CLIENT_RESUMED = [(State.WAIT_SERVER_HELLO, H.server_hello), (State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC),
                  (State.WAIT_FINISHED, H.finished)]
CLIENT_X509_FALLBACK = [(State.WAIT_SERVER_HELLO, H.server_hello), (State.WAIT_CERTIFICATE, H.certificate),
                        (State.WAIT_SERVER_KEY_EXCHANGE, H.server_key_exchange),
                        (State.WAIT_SERVER_HELLO_DONE, H.certificate_request),
                        (State.WAIT_SERVER_HELLO_DONE, H.server_hello_done),
                        (State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC), (State.WAIT_FINISHED, H.finished)]
SERVER_RESUMED = [(State.WAIT_CLIENT_HELLO, H.client_hello), (State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC),
                  (State.WAIT_FINISHED, H.finished)]
SERVER_PATH = [(State.WAIT_CLIENT_HELLO, H.client_hello), (State.WAIT_CLIENT_KEY_EXCHANGE, H.client_key_exchange),
               (State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC), (State.WAIT_FINISHED, H.finished)]


def _walk(role, path):
    state = path[0][0]
    for index, (expected_state, message) in enumerate(path):
        assert state is expected_state
        allowed = next_states(role, state, message)
        following = path[index + 1][0] if index + 1 < len(path) else State.ESTABLISHED
        assert following in allowed
        state = following
    return state


def test_each_role_reaches_established_by_exactly_its_flight_orders():
    for path in (CLIENT_PATH, CLIENT_RESUMED, CLIENT_X509_FALLBACK):
        assert _walk(Role.CLIENT, path) is State.ESTABLISHED
    for path in (SERVER_PATH, SERVER_RESUMED):
        assert _walk(Role.SERVER, path) is State.ESTABLISHED


def test_the_usual_next_state_is_the_full_handshake():
    state = State.WAIT_SERVER_HELLO
    for _, message in CLIENT_PATH:
        state = next_state(Role.CLIENT, state, message)
    assert state is State.ESTABLISHED


def test_the_table_has_no_transition_off_the_known_paths():
    on_paths = {(Role.CLIENT, s, m) for path in (CLIENT_PATH, CLIENT_RESUMED, CLIENT_X509_FALLBACK) for s, m in path}
    on_paths |= {(Role.SERVER, s, m) for path in (SERVER_PATH, SERVER_RESUMED) for s, m in path}
    assert set(TRANSITIONS) == on_paths


def test_messages_of_the_other_role_are_never_accepted():
    client_messages = {H.client_hello, H.client_key_exchange}
    server_messages = {H.server_hello, H.server_key_exchange, H.server_hello_done, H.hello_request}
    for state in State:
        for message in client_messages:
            assert next_state(Role.CLIENT, state, message) is None
        for message in server_messages:
            assert next_state(Role.SERVER, state, message) is None


def test_certificates_reach_only_a_client_and_only_on_the_fallback_path():
    for role in Role:
        for state in State:
            for message in (H.certificate_verify, H.new_session_ticket):
                assert next_state(role, state, message) is None
            if role is Role.SERVER:
                assert next_state(role, state, H.certificate) is None


def test_nothing_is_accepted_after_the_end():
    for role in Role:
        for state in (State.ESTABLISHED, State.CLOSED, State.FAILED):
            assert not [k for k in TRANSITIONS if k[0] is role and k[1] is state]
