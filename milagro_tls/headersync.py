"""Keep a header chain at its source's tip in the background, so handshakes never wait.

One thread per Context, shared by its sync and asyncio users. Handshakes only read the
header chain (under its own lock); this thread is the only one that talks to the source.
A handshake that meets a block we do not know yet asks for a catch-up, and those requests
are rate-limited: an unauthenticated ClientHello can cause at most one sync per
``min_gap`` seconds, never a request per handshake.
"""
from __future__ import annotations

import logging
import threading
import time

from .chain.source import ChainSource

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0       # a block comes every ~600 s on mainnet; 30 s keeps lag small
DEFAULT_MIN_GAP = 2.0


class HeaderSync:
    def __init__(self, headers, source: ChainSource, *, interval: float = DEFAULT_INTERVAL,
                 min_gap: float = DEFAULT_MIN_GAP) -> None:
        self.headers = headers
        self.source = source
        self.interval = interval
        self.min_gap = min_gap
        self.syncs = 0
        self.last_error: Exception | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_sync = 0.0
        self._thread: threading.Thread | None = None

    def sync_once(self) -> int:
        """Sync now, in the calling thread; return how many headers were new."""
        self._last_sync = time.monotonic()
        try:
            added = self.headers.sync_from(self.source)
        except Exception as exc:          # the source's trouble must not kill the thread
            self.last_error = exc
            log.warning("header sync from %s failed: %s: %s", type(self.source).__name__,
                        type(exc).__name__, exc)
            return 0
        self.syncs += 1
        self.last_error = None
        if added:
            log.debug("header sync: %d new headers, tip %d", added, self.headers.tip()[0])
        return added

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="milagro-header-sync", daemon=True)
            self._thread.start()

    def request(self) -> None:
        """Ask for a catch-up soon (rate-limited); never blocks the caller."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            gap = self.min_gap - (time.monotonic() - self._last_sync)
            if gap > 0 and self._stop.wait(gap):
                return
            self.sync_once()
