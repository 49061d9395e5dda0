"""Parsing hello messages safely, and the extension rules both sides share."""
from __future__ import annotations

import ipaddress
import logging

from tlslite.constants import ExtensionType
from tlslite.utils.codec import Parser

from .errors import HandshakeError, MalformedMessage

log = logging.getLogger(__name__)


def parse_message(message, raw: bytes, **options):
    """``message.parse`` on the body of ``raw``; any parser failure is decode_error.

    tlslite-ng's parsers raise DecodeError, but also ValueError, IndexError, AssertionError
    and their own TLS errors on hostile input: at this boundary all of them mean "could not
    be decoded" (RFC 5246 §7.2.2), and none may become a traceback to the peer."""
    try:
        return message.parse(Parser(bytearray(raw[1:])), **options)
    except HandshakeError:
        raise
    except Exception as exc:
        log.debug("cannot decode %s", type(message).__name__, exc_info=True)
        raise MalformedMessage(f"{type(message).__name__} does not decode: {type(exc).__name__}: {exc}") from None


def extensions_by_type(hello) -> dict[int, object]:
    """RFC 5246 §7.4.1.4: "There MUST NOT be more than one extension of the same type."""
    found: dict[int, object] = {}
    for extension in hello.extensions or ():
        if extension.extType in found:
            raise MalformedMessage(f"extension {extension.extType} appears twice")
        found[extension.extType] = extension
    return found


def extension_data(extension) -> bytes:
    return bytes(extension.extData)


def sni_hostname(hostname: str | None) -> str | None:
    """What goes in server_name: RFC 6066 §3 forbids IP literals there."""
    if not hostname:
        return None
    try:
        ipaddress.ip_address(hostname.strip("[]"))
        return None
    except ValueError:
        return hostname


#: renegotiation_info with an empty renegotiated_connection (RFC 5746 §3.2).
EMPTY_RENEGOTIATION_INFO = b"\x00"
RENEGOTIATION_INFO = ExtensionType.renegotiation_info
EXTENDED_MASTER_SECRET = ExtensionType.extended_master_secret
