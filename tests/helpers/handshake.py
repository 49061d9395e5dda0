"""Anchored parties on the embedded chain, and two sans-IO connections joined in memory."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.chain.headerchain import HeaderChain
from milagro_tls.handshake import NEED_DATA, Connection, HandshakeConfig, Role
from milagro_tls.identity.local import LocalIdentity
from milagro_tls.identity.party import Party
from milagro_tls.trust import TrustEntry, TrustStore


@dataclass
class World:
    """One regtest chain with anchored identities, shared by a test session."""
    source: EmbeddedSource
    home: Path
    parties: dict[str, Party]
    identities: dict[str, LocalIdentity]

    def headers(self) -> HeaderChain:
        headers = HeaderChain(":memory:", self.source.network)
        headers.sync_from(self.source)
        return headers

    def entry(self, name: str, *, as_name: str | None = None, roles=None) -> TrustEntry:
        party = self.parties[name]
        doc = party.trust_entry(roles)
        if as_name:
            doc["name"] = as_name
        return TrustEntry.from_json(doc)

    def trust(self, *names: str, roles=None) -> TrustStore:
        return TrustStore([self.entry(n, roles=roles) for n in names])


def make_world(base: Path, names_and_roles: list[tuple[str, str]]) -> World:
    source = EmbeddedSource.open(base / "chain")
    source.mine(110)
    parties = {}
    for name, role in names_and_roles:
        parties[name] = Party.create(base / "home", source, role=role, name=name)
    identities = {name: LocalIdentity.from_party(p, source) for name, p in parties.items()}
    return World(source, base / "home", parties, identities)


def config(world: World, *, identity: str | None, trust: TrustStore, headers=None, **options) -> HandshakeConfig:
    return HandshakeConfig(headers=headers or world.headers(), trust=trust,
                           identity=world.identities[identity] if identity else None, **options)


def pump(client: Connection, server: Connection, *, max_rounds: int = 20) -> tuple[list, list]:
    """Move bytes both ways until neither side has anything to say; return each side's events."""
    client_events, server_events = [], []
    finished: set[int] = set()     # receivers that reported a terminal event
    for _ in range(max_rounds):
        moved = False
        for sender, receiver, events in ((client, server, server_events), (server, client, client_events)):
            data = sender.data_to_send()
            if id(receiver) in finished:
                continue
            if data:
                moved = True
                receiver.receive_data(data)
            while True:
                try:
                    event = receiver.next_event()
                except Exception:
                    break
                if event is NEED_DATA:
                    break
                events.append(event)
                if type(event).__name__ in ("ConnectionFailed", "ConnectionClosed"):
                    finished.add(id(receiver))
                    break
        if not moved:
            break
    return client_events, server_events


def connect(client_config: HandshakeConfig, server_config: HandshakeConfig, *,
            server_hostname: str | None = None):
    client = Connection(Role.CLIENT, client_config, server_hostname=server_hostname)
    server = Connection(Role.SERVER, server_config)
    client.start()
    client_events, server_events = pump(client, server)
    return client, server, client_events, server_events


def replace(cfg: HandshakeConfig, **changes) -> HandshakeConfig:
    return dataclasses.replace(cfg, **changes)
