"""The TLS 1.2 handshake of our suites as data: one table serves client and server.

    Client                                          Server
    ClientHello  (locator ext, EMS)  -------->
                                                    ServerHello (locator ext, EMS)
                                                    ServerKeyExchange (point [NIZK] staple)
                                     <--------      ServerHelloDone
    ClientKeyExchange (point [NIZK] [staple])
    [ChangeCipherSpec]
    Finished                         -------->
                                                    [ChangeCipherSpec]
                                     <--------      Finished
    Application Data                 <------->      Application Data

    Resumption by session ID (RFC 5246 §7.3), with the session's master secret (EMS):
    ClientHello (session_id)         -------->
                                                    ServerHello (same session_id)
                                                    [ChangeCipherSpec]
                                     <--------      Finished
    [ChangeCipherSpec]
    Finished                         -------->

    Standard-suite fallback (opt-in, client side; only toward peers that are not pinned):
    ServerHello picks ECDHE -> Certificate -> ServerKeyExchange -> [CertificateRequest]
    -> ServerHelloDone, verified against X.509 trust anchors.

A message that the table has no entry for, in the state we are in, is unexpected_message
(RFC 5246 §7.2.2); the handshake header alone decides that, before its body is buffered.
"""
from __future__ import annotations

import enum

from tlslite.constants import HandshakeType


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    #: The client has not sent its ClientHello yet.
    START = "start"
    WAIT_CLIENT_HELLO = "wait ClientHello"
    WAIT_SERVER_HELLO = "wait ServerHello"
    #: Standard-suite fallback only: the server's X.509 Certificate message.
    WAIT_CERTIFICATE = "wait Certificate"
    WAIT_SERVER_KEY_EXCHANGE = "wait ServerKeyExchange"
    WAIT_SERVER_HELLO_DONE = "wait ServerHelloDone"
    WAIT_CLIENT_KEY_EXCHANGE = "wait ClientKeyExchange"
    WAIT_CHANGE_CIPHER_SPEC = "wait ChangeCipherSpec"
    WAIT_FINISHED = "wait Finished"
    ESTABLISHED = "established"
    #: close_notify sent or received: no more application data either way.
    CLOSED = "closed"
    #: A fatal alert was sent or received: every later call raises ConnectionDead.
    FAILED = "failed"


#: Not a handshake type: ChangeCipherSpec is its own content type, but it is a step of the
#: same state machine.
CHANGE_CIPHER_SPEC = "ChangeCipherSpec"

#: (role, state, incoming message) -> the states it may lead to; the first is the usual one,
#: and the message's handler names another when the message chose it (resumption, fallback).
TRANSITIONS: dict[tuple[Role, State, object], tuple[State, ...]] = {
    (Role.SERVER, State.WAIT_CLIENT_HELLO, HandshakeType.client_hello):
        (State.WAIT_CLIENT_KEY_EXCHANGE, State.WAIT_CHANGE_CIPHER_SPEC),
    (Role.CLIENT, State.WAIT_SERVER_HELLO, HandshakeType.server_hello):
        (State.WAIT_SERVER_KEY_EXCHANGE, State.WAIT_CHANGE_CIPHER_SPEC, State.WAIT_CERTIFICATE),
    (Role.CLIENT, State.WAIT_CERTIFICATE, HandshakeType.certificate): (State.WAIT_SERVER_KEY_EXCHANGE,),
    (Role.CLIENT, State.WAIT_SERVER_KEY_EXCHANGE, HandshakeType.server_key_exchange):
        (State.WAIT_SERVER_HELLO_DONE,),
    (Role.CLIENT, State.WAIT_SERVER_HELLO_DONE, HandshakeType.certificate_request): (State.WAIT_SERVER_HELLO_DONE,),
    (Role.CLIENT, State.WAIT_SERVER_HELLO_DONE, HandshakeType.server_hello_done): (State.WAIT_CHANGE_CIPHER_SPEC,),
    (Role.SERVER, State.WAIT_CLIENT_KEY_EXCHANGE, HandshakeType.client_key_exchange):
        (State.WAIT_CHANGE_CIPHER_SPEC,),
    (Role.CLIENT, State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC): (State.WAIT_FINISHED,),
    (Role.SERVER, State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC): (State.WAIT_FINISHED,),
    (Role.CLIENT, State.WAIT_FINISHED, HandshakeType.finished): (State.ESTABLISHED,),
    (Role.SERVER, State.WAIT_FINISHED, HandshakeType.finished): (State.ESTABLISHED,),
}

#: Renegotiation requests we answer with a no_renegotiation warning (RFC 5746 §4.2 lets a
#: peer that does not renegotiate refuse this way) and otherwise ignore.
RENEGOTIATION_REQUESTS = {
    Role.CLIENT: HandshakeType.hello_request,
    Role.SERVER: HandshakeType.client_hello,
}


def next_states(role: Role, state: State, message: object) -> tuple[State, ...]:
    """The states ``message`` may lead to; empty when it is unexpected here."""
    return TRANSITIONS.get((role, state, message), ())


def next_state(role: Role, state: State, message: object) -> State | None:
    """The usual state after ``message``, or None when it is unexpected here."""
    states = next_states(role, state, message)
    return states[0] if states else None
