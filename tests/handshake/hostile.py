"""Driving one handshake flight by flight, with a chance to rewrite each flight on the wire.

Flights: 0 ClientHello; 1 ServerHello..ServerHelloDone; 2 ClientKeyExchange, CCS, Finished;
3 CCS, Finished. A tamper function gets a flight's bytes and returns what is delivered.
The key-exchange bodies are split here by a parser written from the draft's structures,
not by the code under test.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from milagro_tls.handshake import NEED_DATA, Connection, ConnectionFailed, Role

from helpers.tls_records import handshake, plaintext_flight, reframe

SERVER_FLIGHTS = (1, 3)


@dataclass
class Outcome:
    failed: Connection | None           # the side that refused
    event: ConnectionFailed | None
    sent: bytes                         # what the refusing side put on the wire
    other: Connection
    transcript: list = field(default_factory=list)   # (flight, delivered bytes)


@dataclass(frozen=True)
class Plan:
    """One hostile handshake: both sides' configs and the rewriting of flights on the wire.

    A scenario returns a plan rather than running it, so that the same table runs in memory
    (``in_memory``) and over TCP against a real server (tests/helpers/wire.py replays the
    client's side of a plan to a socket)."""
    client_config: object
    server_config: object
    tamper: dict = field(default_factory=dict)
    server_hostname: str | None = None

    def in_memory(self) -> Outcome:
        client = Connection(Role.CLIENT, self.client_config, server_hostname=self.server_hostname)
        server = Connection(Role.SERVER, self.server_config)
        client.start()
        transcript = []
        for flight in range(4):
            sender, receiver = (server, client) if flight in SERVER_FLIGHTS else (client, server)
            data = sender.data_to_send()
            if flight in self.tamper:
                data = self.tamper[flight](data)
            transcript.append((flight, data))
            receiver.receive_data(data)
            while True:
                event = receiver.next_event()
                if isinstance(event, ConnectionFailed):
                    return Outcome(receiver, event, receiver.data_to_send(), sender, transcript)
                if event is NEED_DATA or flight == 3 or type(event).__name__ == "HandshakeComplete":
                    break
        return Outcome(None, None, b"", client, transcript)


def plan(client_config, server_config, *, tamper=None, server_hostname=None) -> Plan:
    return Plan(client_config, server_config, tamper or {}, server_hostname)


def rewrite_message(index: int, change):
    """Tamper function: apply ``change(body) -> body`` to the index-th handshake message."""
    def tamper(data: bytes) -> bytes:
        messages, rest = plaintext_flight(data)
        message = messages[index]
        messages[index] = handshake(message[0], change(message[4:]))
        return reframe(messages) + rest
    return tamper


def replace_message(index: int, raw: bytes):
    def tamper(data: bytes) -> bytes:
        messages, rest = plaintext_flight(data)
        messages[index] = raw
        return reframe(messages) + rest
    return tamper


# --- key-exchange bodies, from the draft's structures ---------------------------------------
@dataclass
class KeyExchangeBody:
    point: bytes
    commitment: bytes | None = None
    response: bytes | None = None
    certificate: bytes | None = None
    proof: bytes | None = None

    @classmethod
    def parse(cls, body: bytes, *, yak: bool, staple: bool) -> "KeyExchangeBody":
        n = body[0]
        parts = cls(body[1:1 + n])
        pos = 1 + n
        if yak:
            m = body[pos]
            parts.commitment = body[pos + 1:pos + 1 + m]
            pos += 1 + m
            parts.response = body[pos:pos + 32]
            pos += 32
        if staple:
            length = int.from_bytes(body[pos:pos + 2], "big")
            parts.certificate = body[pos + 2:pos + 2 + length]
            pos += 2 + length
            length = int.from_bytes(body[pos:pos + 2], "big")
            parts.proof = body[pos + 2:pos + 2 + length]
            pos += 2 + length
        assert pos == len(body)
        return parts

    def encode(self) -> bytes:
        out = bytes([len(self.point)]) + self.point
        if self.commitment is not None:
            out += bytes([len(self.commitment)]) + self.commitment + self.response
        if self.certificate is not None:
            out += len(self.certificate).to_bytes(2, "big") + self.certificate
            out += len(self.proof).to_bytes(2, "big") + self.proof
        return out


def rewrite_key_exchange(index: int, *, yak: bool, staple: bool, change):
    """Tamper function: ``change(KeyExchangeBody)`` edits the parts in place."""
    def edit(body: bytes) -> bytes:
        parts = KeyExchangeBody.parse(body, yak=yak, staple=staple)
        change(parts)
        return parts.encode()
    return rewrite_message(index, edit)
