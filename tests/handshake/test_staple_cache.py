"""The verified-staple cache skips the SPV work for a repeat peer, never the chain check."""
from __future__ import annotations

from milagro_tls.ciphersuites.registry import select_suites
from milagro_tls.handshake import ConnectionFailed, HandshakeComplete
from milagro_tls.handshake.peer import VerifiedStapleCache

from helpers.handshake import config, connect, replace


class ReorgedHeaders:
    """The verifier's view of a header chain in which one block has left the best chain."""

    def __init__(self, inner, orphaned: bytes):
        self.inner, self.network, self.orphaned = inner, inner.network, orphaned

    def tip(self):
        return self.inner.tip()

    def height_of(self, block_hash):
        return None if block_hash == self.orphaned else self.inner.height_of(block_hash)

    def header_by_hash(self, block_hash):
        return self.inner.header_by_hash(block_hash)


def _configs(world, cache):
    client = config(world, identity=None, trust=world.trust("echo.example"), suites=select_suites("yak")[:1],
                    staple_cache=cache)
    server = config(world, identity="echo.example", trust=world.trust())
    return client, server


def test_a_repeat_staple_is_served_from_the_cache(world):
    cache = VerifiedStapleCache()
    client, server = _configs(world, cache)
    for _ in range(3):
        _, _, events, _ = connect(client, server, server_hostname="echo.example")
        assert isinstance(events[0], HandshakeComplete)
    assert (cache.misses, cache.hits) == (1, 2)


def test_a_cached_staple_whose_block_left_the_best_chain_is_refused(world):
    cache = VerifiedStapleCache()
    client, server = _configs(world, cache)
    connect(client, server, server_hostname="echo.example")
    orphaned = world.parties["echo.example"].locator.block_hash
    after_reorg = replace(client, headers=ReorgedHeaders(client.headers, orphaned))
    _, _, events, _ = connect(after_reorg, server, server_hostname="echo.example")
    failure, = events
    assert isinstance(failure, ConnectionFailed) and failure.error.alert == 42    # bad_certificate
    assert cache.hits == 1


def test_a_cached_staple_is_checked_for_depth_again(world):
    cache = VerifiedStapleCache()
    client, server = _configs(world, cache)
    connect(client, server, server_hostname="echo.example")
    _, _, events, _ = connect(replace(client, min_confirmations=10_000), server, server_hostname="echo.example")
    failure, = events
    assert failure.error.alert == 46 and cache.hits == 1                        # certificate_unknown
