"""milagro-tls: TLS 1.2 whose peers are authenticated by Bitcoin anchors, not certificates.

The sans-IO connection (``Connection``) speaks the ECDH-BTC and YAK-BTC suites; ``Context``
is the drop-in ``ssl.SSLContext`` over it for sockets, asyncio and HTTP libraries; the
trust store says which anchored peers it accepts, under which names. Everything else
lives in the sub-packages (``chain``, ``identity``, ``ciphersuites``, ``handshake``).
"""
from .context import Context
from .errors import MilagroError
from .handshake import (NEED_DATA, ApplicationData, Connection, ConnectionClosed, ConnectionDead,
                        ConnectionFailed, HandshakeComplete, HandshakeConfig, HandshakeError, Role)
from .identity.local import LocalIdentity
from .trust import TrustEntry, TrustStore

__version__ = "0.1.0"

__all__ = ["ApplicationData", "Connection", "ConnectionClosed", "Context", "ConnectionDead", "ConnectionFailed",
           "HandshakeComplete", "HandshakeConfig", "HandshakeError", "LocalIdentity", "MilagroError",
           "NEED_DATA", "Role", "TrustEntry", "TrustStore", "__version__"]
