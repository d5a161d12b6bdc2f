"""Keeping lock leases alive: one daemon thread per store renews every lease it holds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ctxlab.live.stores.base import SessionKey

__all__ = ["Renewer"]

log = logging.getLogger("ctxlab.live.stores")


class Renewer:
    """Renews the leases registered with `hold` every third of their TTL until `drop`.

    One thread serves every lock of a store, so taking a lock costs no thread start. A lease
    that cannot be renewed (it expired, or the store is unreachable) is reported in the log:
    the turn goes on, but another process may then take the session meanwhile.
    """

    def __init__(self, renew: Callable[[SessionKey, str, float], bool], ttl: float) -> None:
        self._renew = renew
        self._ttl = ttl
        self._held: dict[str, SessionKey] = {}
        self._closing: set[str] = set()  # leases being released by a commit
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, key: SessionKey, token: str) -> None:
        """Keep this lease alive from now on."""
        with self._mutex:
            self._held[token] = key
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ctxlab-lease-renewer", daemon=True
                )
                self._thread.start()

    def closing(self, token: str) -> None:
        """Keep renewing, but a failed renewal is now expected: a commit is releasing it."""
        with self._mutex:
            self._closing.add(token)

    def drop(self, token: str) -> None:
        """Stop renewing this lease (call before releasing it, or once a commit released it)."""
        with self._mutex:
            self._held.pop(token, None)
            self._closing.discard(token)

    def stop(self) -> None:
        """End the thread (the store is closing)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            with self._mutex:
                held = list(self._held.items())
            for token, key in held:
                self._renew_one(key, token)

    def _renew_one(self, key: SessionKey, token: str) -> None:
        try:
            ok = self._renew(key, token, self._ttl)
        except Exception as exc:  # the store went away for a moment: try again next tick
            log.warning("could not renew the lock of session %s: %s", key, exc)
            return
        with self._mutex:
            still_held = token in self._held and token not in self._closing
            if not ok and still_held:
                del self._held[token]
        if not ok and still_held:
            log.warning("lost the lock of session %s; its turns may interleave", key)
