"""TLS 1.2 with the ECDH-BTC and YAK-BTC suites, sans-IO, on tlslite-ng's messages."""
from .config import HandshakeConfig
from .connection import Connection, LocalProtocolError
from .errors import ConnectionDead, HandshakeError
from .events import NEED_DATA, ApplicationData, ConnectionClosed, ConnectionFailed, HandshakeComplete
from .state import Role, State

__all__ = ["ApplicationData", "Connection", "ConnectionClosed", "ConnectionDead", "ConnectionFailed",
           "HandshakeComplete", "HandshakeConfig", "HandshakeError", "LocalProtocolError", "NEED_DATA",
           "Role", "State"]
