"""A header chain used in a forked child (gunicorn forks workers after building the Context)."""
from __future__ import annotations

import os

from milagro_tls.chain.headerchain import HeaderChain


def test_a_forked_child_reopens_a_file_backed_chain_and_keeps_working(regtest_node, tmp_path):
    from milagro_tls.chain.embedded import EmbeddedSource

    source = EmbeddedSource(regtest_node)
    source.mine(5)
    headers = HeaderChain(str(tmp_path / "headers.sqlite"), source.network)
    headers.sync_from(source)
    parent_connection = headers._db
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: report and leave without cleanup
        ok = headers._db is not parent_connection and headers.tip() == headers.tip()
        os.write(write, str(headers.tip()[0] if ok else -1).encode())
        os._exit(0)
    os.close(write)
    answer = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    assert answer == str(headers.tip()[0]) == "5"
