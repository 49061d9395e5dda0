"""The PAT's connection to its TBS does not ask the TBS, mid-handshake, whether the TBS itself is
revoked: its chain source is that same TBS (tbs://), whose word about its own seal proves
nothing, and each such question takes a second worker thread of the server the PAT is shaking
hands with. Under a burst of enrolments every TBS thread then waited on another and each
handshake failed after the revocation timeout (the demo stalled at 50 PATs; 60 pass now)."""
from __future__ import annotations

from milagro_tls.roles.pat.flow import _Session
from milagro_tls.trust import TrustStore


class _State:
    tbs = "127.0.0.1:9"           # nothing listens: building the client must not need the TBS
    network = "regtest"
    checkpoint = None


class _Home:
    has_headers = False

    def headers(self, network, checkpoint=None):
        from milagro_tls.chain.headerchain import HeaderChain
        return HeaderChain(":memory:", network)


def test_the_tbs_connection_checks_no_revocation_through_the_tbs_itself():
    session = _Session(_Home(), _State())
    try:
        session.client(TrustStore(), min_confirmations=1)
        context = session.contexts[0]
        assert context.source is session.source                      # the TBS is the source...
        assert context._config.revocation_check is None              # ...so it is not asked about itself
    finally:
        session.close()
