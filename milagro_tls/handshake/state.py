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

#: (role, state, incoming message) -> state after it is processed.
TRANSITIONS: dict[tuple[Role, State, object], State] = {
    (Role.SERVER, State.WAIT_CLIENT_HELLO, HandshakeType.client_hello): State.WAIT_CLIENT_KEY_EXCHANGE,
    (Role.CLIENT, State.WAIT_SERVER_HELLO, HandshakeType.server_hello): State.WAIT_SERVER_KEY_EXCHANGE,
    (Role.CLIENT, State.WAIT_SERVER_KEY_EXCHANGE, HandshakeType.server_key_exchange): State.WAIT_SERVER_HELLO_DONE,
    (Role.CLIENT, State.WAIT_SERVER_HELLO_DONE, HandshakeType.server_hello_done): State.WAIT_CHANGE_CIPHER_SPEC,
    (Role.SERVER, State.WAIT_CLIENT_KEY_EXCHANGE, HandshakeType.client_key_exchange): State.WAIT_CHANGE_CIPHER_SPEC,
    (Role.CLIENT, State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC): State.WAIT_FINISHED,
    (Role.SERVER, State.WAIT_CHANGE_CIPHER_SPEC, CHANGE_CIPHER_SPEC): State.WAIT_FINISHED,
    (Role.CLIENT, State.WAIT_FINISHED, HandshakeType.finished): State.ESTABLISHED,
    (Role.SERVER, State.WAIT_FINISHED, HandshakeType.finished): State.ESTABLISHED,
}

#: Renegotiation requests we answer with a no_renegotiation warning (RFC 5746 §4.2 lets a
#: peer that does not renegotiate refuse this way) and otherwise ignore.
RENEGOTIATION_REQUESTS = {
    Role.CLIENT: HandshakeType.hello_request,
    Role.SERVER: HandshakeType.client_hello,
}


def next_state(role: Role, state: State, message: object) -> State | None:
    return TRANSITIONS.get((role, state, message))
