"""Who is asking: the milagro-tls peer of a WSGI request under gunicorn.

gunicorn puts the accepted socket in ``environ["gunicorn.socket"]``; with the role's Context it
is a MilagroSocket whose ``getpeercert()`` gives the client's locator, verified from the chain
by the handshake (the client proved it holds the anchored key). The D-TA's Context uses
``accept_anchored_clients=True``: any anchored party may connect and is known by that locator,
with no name. A browser on the X.509 fallback has no such peer: ``peer_locator`` is None.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from ...errors import MalformedInput
from ...identity.locator import Locator

ENVIRON_SOCKET = "gunicorn.socket"


def peer_locator(environ: dict[str, Any]) -> Locator | None:
    """The verified locator of the request's milagro-tls peer, or None (plain HTTPS, an
    anonymous milagro-tls client, or no gunicorn socket)."""
    sock = environ.get(ENVIRON_SOCKET)
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        peer = getpeercert()
    except (OSError, ValueError):
        return None
    if not isinstance(peer, dict) or not isinstance(peer.get("locator"), dict):
        return None          # an X.509 peer's dict has no locator
    try:
        return Locator.from_json(peer["locator"])
    except MalformedInput:
        return None


def locator_key(locator: Locator) -> str:
    """SHA256 hex of the locator with its block hash zeroed: what names an anchor. The block
    hash is left out, as the trust store does: a reorg may mine the same anchor in another
    block, and it is still the same party."""
    return hashlib.sha256(dataclasses.replace(locator, block_hash=bytes(32)).encode()).hexdigest()
