"""The PAT (a thin client: no node, no chain download) and its home directory.

    state    the PAT's home: its keys and certificate (identity.batchpat), its AES key (0600),
             its header chain from a checkpoint, its TBS (locator, verified certificate), its
             trust store and installed instruction version
    flow     enrol (first contact through anchoring and the first instructions), update (field
             updates over milagro-tls with the anchored identity), connect (a request to a
             trusted peer with the PAT's identity)
    cli      ``milagro pat enrol|update|connect``
"""
from .flow import EnrolResult, PatError, PatRefused, PatTimeout, connect, enrol, install_instructions, update
from .state import PatHome

__all__ = ["EnrolResult", "PatError", "PatHome", "PatRefused", "PatTimeout", "connect", "enrol", "install_instructions", "update"]
