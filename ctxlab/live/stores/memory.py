"""`MemoryStore`: sessions in a dict; for notebooks, tests and single-process use."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ctxlab.live.stores.base import BaseStore, SessionInfo, SessionKey, utc
from ctxlab.messages import Message

__all__ = ["MemoryStore"]


@dataclass(kw_only=True)
class _Entry:
    system: Message | None = None
    state: str | None = None
    messages: list[Message] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)


class MemoryStore(BaseStore):
    """Sessions held in this process's memory; gone when the process ends.

    Guarantees:
        - a turn is appended under one lock: readers see all of it or none of it;
        - locks serialise turns across threads and event loops of this process (not across
          processes: use `SQLiteStore` or `RedisStore` for that);
        - messages are frozen values, so they are stored as given, without copying.
    """

    url = "memory"
    _blocking_io = False
    _renews_leases = False

    def __init__(self, *, lock_ttl: float = 30.0, lock_timeout: float = 300.0) -> None:
        super().__init__(lock_ttl=lock_ttl, lock_timeout=lock_timeout)
        self._mutex = threading.Lock()
        self._sessions: dict[SessionKey, _Entry] = {}
        self._leases: dict[SessionKey, str] = {}

    def append_turn(
        self,
        key: SessionKey,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Append one turn atomically; `system` and `state` replace the stored ones when given."""
        with self._mutex:
            self._append(key, messages, system, state)

    def _append(
        self,
        key: SessionKey,
        messages: Sequence[Message],
        system: Message | None,
        state: str | None,
    ) -> None:
        entry = self._sessions.setdefault(key, _Entry())
        entry.messages.extend(messages)
        if system is not None:
            entry.system = system
        if state is not None:
            entry.state = state
        entry.updated = time.time()

    def load(self, key: SessionKey) -> list[Message]:
        """The session's messages in order, its system message first; empty when unknown."""
        with self._mutex:
            entry = self._sessions.get(key)
            if entry is None:
                return []
            head = [entry.system] if entry.system is not None else []
            return head + entry.messages

    def load_state(self, key: SessionKey) -> str | None:
        """The strategy state stored with the session, or None."""
        with self._mutex:
            entry = self._sessions.get(key)
            return entry.state if entry is not None else None

    def list_sessions(self, owner: str) -> list[SessionInfo]:
        """The owner's sessions, most recently updated first."""
        with self._mutex:
            found = [
                SessionInfo(
                    key=k,
                    messages=len(e.messages),
                    created_at=utc(e.created),
                    updated_at=utc(e.updated),
                )
                for k, e in self._sessions.items()
                if k.owner == owner
            ]
        return sorted(found, key=lambda info: info.updated_at, reverse=True)

    def delete(self, key: SessionKey) -> bool:
        """Forget a session; True when it existed."""
        with self._mutex:
            return self._sessions.pop(key, None) is not None

    # Leases here never expire: their holder lives in this process and cannot crash alone.
    def _acquire_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        with self._mutex:
            return self._leases.setdefault(key, token) == token

    def _renew_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        with self._mutex:
            return self._leases.get(key) == token

    def _release_lease(self, key: SessionKey, token: str) -> None:
        with self._mutex:
            if self._leases.get(key) == token:
                del self._leases[key]

    def _append_and_release(
        self,
        key: SessionKey,
        token: str,
        messages: Sequence[Message],
        system: Message | None,
        state: str | None,
    ) -> bool:
        # One critical section: no reader sees the turn stored while the lock still looks held.
        with self._mutex:
            self._append(key, messages, system, state)
            if self._leases.get(key) != token:
                return False
            del self._leases[key]
            return True
