"""The ``milagro`` command line. Each sub-command parses arguments, calls the library, prints."""
from __future__ import annotations

import argparse
import sys

from ..errors import MilagroError


def main(argv: list[str] | None = None) -> int:
    from . import chain_commands, identity_commands, ecosystem_demo
    from . import capture_command, tls_commands, wallet_commands

    parser = argparse.ArgumentParser(prog="milagro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    chain_commands.register(sub)
    identity_commands.register(sub)
    ecosystem_demo.register(sub)
    wallet_commands.register(sub)
    tls_commands.register(sub)
    capture_command.register(sub)
    from ..roles.idp import cli as idp_cli
    idp_cli.register(sub)
    from ..roles.dta import cli as dta_cli
    dta_cli.register(sub)
    from ..roles.service import cli as service_cli
    service_cli.register(sub)
    from ..roles.tbs import cli as tbs_cli
    tbs_cli.register(sub)
    from ..roles.pat import cli as pat_cli
    pat_cli.register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MilagroError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
