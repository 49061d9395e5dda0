"""The harness's own world: a temporary embedded regtest chain with anchored parties, the
throwaway X.509 PKIs, and contexts over them (built only through the library's public API)."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from milagro_tls import LocalIdentity, TrustStore
from milagro_tls.chain.embedded import EmbeddedSource
from milagro_tls.context import Context
from milagro_tls.identity.party import Party

from .pki import CertificateFiles, issue

#: The anchored parties: a service our server plays, and a person our client plays.
SERVER_NAME, CLIENT_NAME = "echo.example", "alice"
PARTIES = ((SERVER_NAME, "service"), (CLIENT_NAME, "pat"))
#: Regtest coinbase outputs mature after 100 blocks; the faucet spends one of them.
_PREMINE = 110
#: The fallback certificate's names: "localhost" is what unpinned clients dial; the pinned
#: name is in it too, so that refusing to fall back for that name is the only possible reason.
FALLBACK_NAMES = ("localhost", SERVER_NAME)


class World:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.source = EmbeddedSource.open(directory / "chain")
        self.source.mine(_PREMINE)
        self.parties = {name: Party.create(directory / "home", self.source, role=role, name=name)
                        for name, role in PARTIES}
        self.identities = {name: LocalIdentity.from_party(party, self.source)
                           for name, party in self.parties.items()}
        pki = directory / "pki"
        pki.mkdir()
        #: The fallback certificate our server and the standard servers present.
        self.x509 = issue(pki, "trusted", FALLBACK_NAMES)
        #: An RSA leaf under its own root, for the ECDHE_RSA suites.
        self.rsa_x509 = issue(pki, "rsa", FALLBACK_NAMES, leaf_key_type="rsa")
        #: A leaf from a root nobody trusts: the fallback must refuse it.
        self.stranger_x509 = issue(pki, "stranger", FALLBACK_NAMES)
        self._contexts: list[Context] = []

    def trust_entries(self, *names: str) -> list[dict]:
        return [self.parties[name].trust_entry() for name in names]

    def context(self, *, identity: str | None = None, trust: tuple[str, ...] = (), ca: Path | None = None,
                **options) -> Context:
        """A Context over this world's chain; ``ca`` loads an X.509 root for the client's fallback."""
        context = Context(identity=self.identities[identity] if identity else None,
                          trust=TrustStore.from_json(self.trust_entries(*trust)),
                          chain=self.source, headers=":memory:", **options)
        self._contexts.append(context)
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
        return context

    def server_context(self, *, fallback: bool) -> Context:
        """Our server as ``SERVER_NAME``; ``fallback``: it also serves standard clients with
        ``self.x509`` through Python ssl.

        The certificate goes in through ``load_cert_chain`` (the ssl.SSLContext way), not the
        constructor's ``fallback_certificate=``: in this revision the constructor calls
        load_cert_chain before it sets ``_alpn``, and raises AttributeError
        (tests/interop/test_harness.py pins that defect)."""
        context = self.context(identity=SERVER_NAME, trust=(CLIENT_NAME,))
        if fallback:
            context.load_cert_chain(str(self.x509.cert), str(self.x509.key))
        return context

    def close_contexts(self) -> None:
        """Stop the header-sync threads of the contexts made so far (after each case)."""
        while self._contexts:
            self._contexts.pop().close()

    def close(self) -> None:
        self.close_contexts()
        self.source.close()


@contextlib.contextmanager
def temporary_world():
    directory = Path(tempfile.mkdtemp(prefix="milagro-interop-"))
    world = None
    try:
        world = World(directory)
        yield world
    finally:
        if world is not None:
            world.close()
        shutil.rmtree(directory, ignore_errors=True)
