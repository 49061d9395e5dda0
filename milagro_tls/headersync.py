"""Keep a header chain at its source's tip in the background, so handshakes never wait.

One thread per Context, shared by its sync and asyncio users. Handshakes only read the
header chain (under its own lock); this thread is the only one that talks to the source.
A handshake that meets a block we do not know yet asks for a catch-up, and those requests
are rate-limited: an unauthenticated ClientHello can cause at most one sync per
``min_gap`` seconds, never a request per handshake.

A pre-fork server (gunicorn builds the Context in its config file, in the master, then forks
workers) leaves the child without the thread: it is started again in the child, and with
``source_factory`` the child's thread opens its own source first, instead of sharing the
parent's connections (an HTTP keep-alive socket used by two processes mixes their replies).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from .chain.source import ChainSource

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0       # a block comes every ~600 s on mainnet; 30 s keeps lag small
DEFAULT_MIN_GAP = 2.0


class HeaderSync:
    def __init__(self, headers, source: ChainSource, *, interval: float = DEFAULT_INTERVAL,
                 min_gap: float = DEFAULT_MIN_GAP, source_factory: Callable[[], ChainSource] | None = None) -> None:
        self.headers = headers
        self.source = source
        self.source_factory = source_factory
        self._reopen_source = False     # set in a forked child that has a source_factory
        self._opened_source: ChainSource | None = None
        self._fork_hook = False
        self.interval = interval
        self.min_gap = min_gap
        self.syncs = 0
        self.last_error: Exception | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_sync = 0.0
        self._thread: threading.Thread | None = None
        #: Called in the sync's thread after each sync that added headers (the Context
        #: refreshes its staple's freshness bound there); its errors are logged, not raised.
        self.on_new_headers: Callable[[int], None] | None = None

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
            if self.on_new_headers is not None:
                try:
                    self.on_new_headers(added)
                except Exception as exc:      # e.g. the source failed: the next sync tries again
                    log.warning("after header sync: %s: %s", type(exc).__name__, exc)
        return added

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="milagro-header-sync", daemon=True)
            self._thread.start()
        if not self._fork_hook:
            self._fork_hook = True
            this = weakref.ref(self)      # the hook must not keep a closed Context alive
            os.register_at_fork(after_in_child=lambda: (sync := this()) is not None and sync._after_fork_in_child())

    def _after_fork_in_child(self) -> None:
        """Only the forking thread survives fork(): start ours again, unless it was stopped.
        Fresh events: the parent's thread may have held their locks at the moment of fork."""
        if self._thread is None or self._stop.is_set():
            return
        self._thread = None
        self._wake, self._stop = threading.Event(), threading.Event()
        self._reopen_source = self.source_factory is not None
        self.start()

    def request(self) -> None:
        """Ask for a catch-up soon (rate-limited); never blocks the caller."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._opened_source is not None:
            self._opened_source.close()
            self._opened_source = None

    def _run(self) -> None:
        if self._reopen_source:
            self._reopen_source = False
            try:
                self.source = self._opened_source = self.source_factory()
            except Exception as exc:          # keep the inherited source: a sync may still work
                self.last_error = exc
                log.warning("header sync could not open its own source after fork: %s: %s",
                            type(exc).__name__, exc)
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            gap = self.min_gap - (time.monotonic() - self._last_sync)
            if gap > 0 and self._stop.wait(gap):
                return
            self.sync_once()
