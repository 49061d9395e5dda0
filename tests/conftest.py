"""Shared fixtures. This file's directory is on sys.path, so tests import ``helpers.*``."""

import pytest


@pytest.fixture
def regtest_node(tmp_path):
    """A fresh embedded regtest node (real kernel) in a temporary data directory."""
    from milagro_tls.chain.node import RegtestNode

    node = RegtestNode.open(tmp_path / "regtest")
    yield node
    node.close()
