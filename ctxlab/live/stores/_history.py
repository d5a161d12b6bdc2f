"""Decoded histories kept between turns, so a turn decodes only the messages stored since.

A session's messages are append-only for as long as the session exists; deleting it and
storing a turn under the same key starts a new *epoch* (a random token the store writes with
the session's first turn). So a history decoded earlier is still a prefix of the stored one
when the epoch matches, the stored count has not shrunk and the system message is unchanged:
the store then reads only the rows after it, whoever stored them (another thread, another
process). Anything else (another epoch, a replaced system message, an entry evicted for space)
falls back to reading everything.

The cache is bounded by the stored text it holds (least recently used sessions go first), so
a proxy with many long sessions keeps the recent ones without growing without end.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ctxlab.live.stores._codec import decode
from ctxlab.live.stores.base import SessionKey
from ctxlab.messages import Message

__all__ = ["DEFAULT_CACHE_CHARS", "HistoryCache"]

#: Stored characters of history kept decoded per store by default: about 110 MB of objects
#: (measured on LoCoMo turns: 3.4 bytes per stored character).
DEFAULT_CACHE_CHARS = 32_000_000


@dataclass(frozen=True, slots=True)
class _Entry:
    epoch: str
    system: str | None  # the stored text of the system message
    history: tuple[Message, ...]  # the system message first, when there is one
    stored: int  # messages after the system message
    chars: int


class HistoryCache:
    """Per-store cache of decoded histories, validated by epoch, count and system text.

    Args:
        max_chars: stored characters kept in all (0 turns the cache off).
    """

    def __init__(self, max_chars: int = DEFAULT_CACHE_CHARS) -> None:
        self.max_chars = max_chars
        self._entries: OrderedDict[SessionKey, _Entry] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def read(
        self,
        key: SessionKey,
        epoch: str | None,
        system: str | None,
        stored: int,
        bodies_from: Callable[[int], Sequence[str]],
    ) -> list[Message]:
        """The history of a session whose stored state is (`epoch`, `system`, `stored`).

        `bodies_from(n)` returns the stored message texts from position n up to `stored`, as
        in the snapshot the other arguments come from.
        """
        entry = self._get(key) if epoch is not None else None
        if entry is None or entry.epoch != epoch or entry.system != system or entry.stored > stored:
            head = [decode(system)] if system else []
            bodies = bodies_from(0)
            history = head + [decode(body) for body in bodies]
            chars = (len(system) if system else 0) + sum(len(b) for b in bodies)
        else:
            bodies = bodies_from(entry.stored) if stored > entry.stored else ()
            history = [*entry.history, *(decode(body) for body in bodies)]
            chars = entry.chars + sum(len(b) for b in bodies)
        if epoch is not None:
            stored_now = len(history) - bool(system)
            self._put(key, _Entry(epoch, system, tuple(history), stored_now, chars))
        return history

    def hint(self, key: SessionKey) -> tuple[str, int]:
        """(epoch, stored messages) of the history kept for `key`, or ("", 0).

        A store that reads in one round trip asks for the rows after it (when the epoch
        still matches) and passes the reply to `read`.
        """
        with self._lock:
            entry = self._entries.get(key)
        return (entry.epoch, entry.stored) if entry is not None else ("", 0)

    def forget(self, key: SessionKey) -> None:
        """Drop a session's entry (it was deleted)."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._chars -= entry.chars

    def _get(self, key: SessionKey) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def _put(self, key: SessionKey, entry: _Entry) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._chars -= old.chars
            if entry.chars > self.max_chars:
                return
            self._entries[key] = entry
            self._chars += entry.chars
            while self._chars > self.max_chars:
                _, evicted = self._entries.popitem(last=False)
                self._chars -= evicted.chars
