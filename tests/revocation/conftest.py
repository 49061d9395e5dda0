"""A chain of its own per module: revocation spends seals and reorgs rewrite the chain, so
nothing here may touch the session-wide ``world``."""
from __future__ import annotations

import pytest

from helpers.handshake import make_world


@pytest.fixture(scope="module")
def own_world(tmp_path_factory):
    world = make_world(tmp_path_factory.mktemp("revocation-world"),
                       [("server.example", "service"), ("client.example", "pat"),
                        ("other.example", "service")])
    yield world
    world.source.close()
