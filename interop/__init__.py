"""Interop harness: milagro-tls against the OpenSSL binary, Python ``ssl`` and vanilla tlslite-ng.

``python -m interop`` builds its own world (a temporary embedded regtest chain with anchored
parties), starts every peer itself on 127.0.0.1, runs the cases in ``cases.py`` and writes a
Markdown pass/fail table (``report.py``). ``run()`` is the same thing for an in-process caller.
"""
from __future__ import annotations

from .runner import run

__all__ = ["run"]
