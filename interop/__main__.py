"""``python -m interop [--out FILE] [-k TEXT]``: run the interop cases, print the Markdown table
(and write it to FILE), exit 0 only if every row passed."""
from __future__ import annotations

import argparse
import sys
import time

from .report import markdown
from .runner import DEFAULT_OUT, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop", description=__doc__)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the Markdown table "
                        "(default: %(default)s)")
    parser.add_argument("-k", dest="select", help="only the cases whose peers or name contain this text")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = run(args.out, select=args.select)
    sys.stdout.write(markdown(rows))
    failed = [row for row in rows if not row.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} passed in {time.monotonic() - started:.1f} s; "
          f"table written to {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
