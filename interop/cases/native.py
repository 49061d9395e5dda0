"""Our client against our server over TCP, for every Bitcoin suite (the sanity rows)."""
from __future__ import annotations

from milagro_tls.ciphersuites.registry import SUITES

from ..peers import EXPECTED_REPLY, REQUEST, connect, exchange, our_server
from ..world import CLIENT_NAME, SERVER_NAME
from . import case


def _suite_row(suite):
    @case("ours ↔ ours", f"0x{suite.code:04X} {suite.name}",
          f"{suite.short_name}; each side authenticates the other's anchor; the line comes back reversed")
    def native(world, row):
        server_context = world.context(identity=SERVER_NAME, trust=(CLIENT_NAME,))
        client_context = world.context(identity=CLIENT_NAME, trust=(SERVER_NAME,), suites=suite.name)
        with our_server(server_context) as log:
            with connect(client_context, log.port, SERVER_NAME) as tls:
                negotiated, version, _ = tls.cipher()
                peer = tls.getpeercert()
                reply = exchange(tls)
            served = log.first()
        row.note(f"{negotiated} {version}; client sees {peer.get('name')!r}, "
                 f"server sees {(served.peer or {}).get('name')!r}; reply {reply!r}")
        row.check(negotiated == suite.short_name and version == "TLSv1.2", f"negotiated {negotiated} {version}")
        row.check(peer.get("name") == SERVER_NAME and peer.get("authenticated"), "server not authenticated")
        row.check(reply == EXPECTED_REPLY, f"reply {reply!r}")
        if row.check(served.error is None, f"our server: {served.error!r}"):
            row.check(served.cipher[0] == suite.short_name, f"our server reports {served.cipher}")
            row.check((served.peer or {}).get("name") == CLIENT_NAME, "client not authenticated")
            row.check(served.received == REQUEST, f"our server received {served.received!r}")
    return native


for _suite in SUITES.values():
    _suite_row(_suite)
