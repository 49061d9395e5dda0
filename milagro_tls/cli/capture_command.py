"""``milagro capture``: run ``milagro connect`` through a recording proxy and write a pcap.

    milagro capture --out FILE.pcap [--keylog FILE] [--pcap-port N] -- <milagro connect arguments>

The connection goes through a loopback proxy (``capture.recorder``) that records its bytes,
which are then framed as Ethernet/IP/TCP (``capture.pcap``): no capture privileges needed.
``--keylog`` is ``SSLKEYLOGFILE`` for the connect it runs (NSS format, what Wireshark and
scapy read). Wireshark names our suites "Unknown (0xff..)" and cannot decrypt them even with
the key log; interop/wireshark/ has the Lua dissector and the decryptable demo copy.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

#: Wireshark decodes TCP port 443 as TLS without ``-d tcp.port==N,tls``.
DEFAULT_PCAP_PORT = 443


def register(sub: argparse._SubParsersAction) -> None:
    capture = sub.add_parser(
        "capture", help="run `milagro connect` through a recording proxy and write a pcap (and a key log)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    capture.add_argument("--out", required=True, type=Path, metavar="FILE.pcap", help="the pcap to write")
    capture.add_argument("--keylog", type=Path, default=None, metavar="FILE",
                         help="append the connection's NSS key log line (CLIENT_RANDOM) to FILE")
    capture.add_argument("--pcap-port", type=int, default=DEFAULT_PCAP_PORT, metavar="N",
                         help="the server's TCP port as written in the pcap (default %(default)s, where "
                              "Wireshark looks for TLS; 0: the real port)")
    capture.add_argument("connect", nargs=argparse.REMAINDER, metavar="-- CONNECT-ARGS",
                         help="the arguments of `milagro connect` (after --)")
    capture.set_defaults(func=_capture)


def _connect_arguments(words: list[str]) -> argparse.Namespace:
    """Parse ``words`` exactly as ``milagro connect`` would."""
    from . import tls_commands
    if words[:1] == ["--"]:
        words = words[1:]
    parser = argparse.ArgumentParser(prog="milagro capture --out FILE.pcap --")
    tls_commands.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["connect", *words])


@contextlib.contextmanager
def _keylog_environment(path: Path | None):
    """``SSLKEYLOGFILE`` for the connect we run, which builds its Context from it."""
    if path is None:
        yield
        return
    previous = os.environ.get("SSLKEYLOGFILE")
    os.environ["SSLKEYLOGFILE"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SSLKEYLOGFILE"]
        else:
            os.environ["SSLKEYLOGFILE"] = previous


def _capture(args) -> int:
    from ..capture.recorder import RecordingProxy
    from ..echo_server import describe_address
    from .tls_commands import _split_address

    if not args.connect or args.connect == ["--"]:
        print("milagro capture: give the `milagro connect` arguments after --", file=sys.stderr)
        return 2
    connect = _connect_arguments(args.connect)
    host, port = _split_address(connect.address)
    keylog = args.keylog or (Path(os.environ["SSLKEYLOGFILE"]) if os.environ.get("SSLKEYLOGFILE") else None)
    if keylog is not None:
        print(f"WARNING: writing TLS master secrets to {keylog}: anyone who can read it can decrypt "
              f"the captured traffic", file=sys.stderr)
    try:
        proxy = RecordingProxy((host, port))
    except OSError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    with proxy:
        print(f"recording through {describe_address(proxy.address)} -> {describe_address((host, port))}")
        connect.address = describe_address(proxy.address)
        connect.server_name = connect.server_name or host      # the name the user meant, not the proxy's
        with _keylog_environment(args.keylog):
            status = connect.func(connect)
    packets = proxy.write_pcap(args.out, server_port=args.pcap_port or None)
    shown_port = args.pcap_port or port
    print(f"wrote {args.out}: {len(proxy.conversations)} connection(s), {packets} packets, "
          f"server port {shown_port}")
    if keylog is not None:
        print(f"key log {keylog}: tshark -r {args.out} -o tls.keylog_file:{keylog}"
              + ("" if shown_port == 443 else f" -d tcp.port=={shown_port},tls"))
    return status
