"""Shared fixtures. This file's directory is on sys.path, so tests import ``helpers.*``."""

import pytest


@pytest.fixture
def regtest_node(tmp_path):
    """A fresh embedded regtest node (real kernel) in a temporary data directory."""
    from milagro_tls.chain.node import RegtestNode

    node = RegtestNode.open(tmp_path / "regtest")
    yield node
    node.close()


#: The parties every handshake and Context test shares: anchored once per session.
WORLD_PARTIES = [("echo.example", "service"), ("alice", "pat"), ("idp.example", "idp"),
                 ("mallory.example", "service")]


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """One embedded regtest chain with anchored identities (see helpers.handshake.World)."""
    from helpers.handshake import make_world

    world = make_world(tmp_path_factory.mktemp("handshake-world"), WORLD_PARTIES)
    yield world
    world.source.close()
