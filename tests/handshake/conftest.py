import pytest

from helpers.handshake import make_world

PARTIES = [("echo.example", "service"), ("alice", "pat"), ("idp.example", "idp"),
           ("mallory.example", "service")]


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    world = make_world(tmp_path_factory.mktemp("handshake-world"), PARTIES)
    yield world
    world.source.close()
