"""What every session store shares: `SessionKey`, `SessionInfo`, the `Store` protocol, `BaseStore`.

A store keeps, per session, an append-only list of messages plus the session's current system
message. Sessions are keyed by ``(owner, id)``: the proxy uses the client key's name as the owner,
so one client can never name another client's session. A turn (the new messages and the reply)
is written with one `append_turn` call, atomically: a reader sees all of it or none of it.

Locks serialise turns on one session across threads, event loops and processes. They are leases
(token + expiry) that one renewer thread per store keeps alive while held, so a crashed holder
frees the session after `lock_ttl` seconds instead of blocking it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar, ParamSpec, Protocol, TypeVar, runtime_checkable

from ctxlab.errors import CtxlabError, UsageError
from ctxlab.messages import Message

if TYPE_CHECKING:
    from ctxlab.stores._lease import Renewer

__all__ = ["BaseStore", "SessionBusyError", "SessionInfo", "SessionKey", "Store", "utc"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class SessionBusyError(CtxlabError, TimeoutError):
    """Another turn held the session's lock for longer than the caller was willing to wait."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionKey:
    """Identifies one session in a store.

    Attributes:
        owner: whose session it is (the proxy uses the client key's name).
        id: the session id, unique per owner.
    """

    owner: str = "default"
    id: str

    def __post_init__(self) -> None:
        for name in ("owner", "id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise UsageError(f"SessionKey.{name} must be a non-empty string, got {value!r}")

    def __str__(self) -> str:
        return f"{self.owner}/{self.id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionInfo:
    """A stored session, as listed by `Store.list_sessions`.

    Attributes:
        key: the session's key.
        messages: number of stored messages (the system message not included).
        created_at: when its first turn was stored (UTC).
        updated_at: when its latest turn was stored (UTC).
    """

    key: SessionKey
    messages: int
    created_at: datetime
    updated_at: datetime


@runtime_checkable
class Store(Protocol):
    """Where sessions persist. Every method is safe to call from several threads at once."""

    url: str

    def append_turn(
        self, key: SessionKey, messages: Sequence[Message], *, system: Message | None = None
    ) -> None:
        """Append the messages of one turn atomically; `system` replaces the system message."""
        ...

    def load(self, key: SessionKey) -> list[Message]:
        """The session's messages in order, its system message first; empty when unknown."""
        ...

    def list_sessions(self, owner: str) -> list[SessionInfo]:
        """The owner's sessions, most recently updated first."""
        ...

    def delete(self, key: SessionKey) -> bool:
        """Forget a session; True when it existed."""
        ...

    def lock(
        self, key: SessionKey, *, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the session's lock (across processes for SQLite and Redis)."""
        ...

    def alock(
        self, key: SessionKey, *, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """`lock` for coroutines: waits without blocking the event loop."""
        ...

    async def aappend_turn(
        self, key: SessionKey, messages: Sequence[Message], *, system: Message | None = None
    ) -> None:
        """Async `append_turn`."""
        ...

    async def aload(self, key: SessionKey) -> list[Message]:
        """Async `load`."""
        ...

    async def alist_sessions(self, owner: str) -> list[SessionInfo]:
        """Async `list_sessions`."""
        ...

    async def adelete(self, key: SessionKey) -> bool:
        """Async `delete`."""
        ...

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...


_MIN_POLL, _MAX_POLL = 0.001, 0.02


class BaseStore:
    """Shared machinery: lease locks kept alive while held, async methods over threads.

    Subclasses implement the sync methods and three lease primitives. Async methods run the
    sync ones in a worker thread unless the store does no blocking I/O (`_blocking_io`).

    Args:
        lock_ttl: seconds a lock lease lasts without renewal (a crashed holder blocks the
            session at most this long); renewed every third of it while held.
        lock_timeout: default seconds to wait for a lock before `SessionBusyError`.
    """

    url: str = ""
    _blocking_io: ClassVar[bool] = True
    # False where a lease cannot outlive its holder (in-process stores): nothing to renew.
    _renews_leases: ClassVar[bool] = True

    def __init__(self, *, lock_ttl: float = 30.0, lock_timeout: float = 300.0) -> None:
        if lock_ttl <= 0 or lock_timeout <= 0:
            raise UsageError("lock_ttl and lock_timeout must be positive numbers of seconds")
        self.lock_ttl = lock_ttl
        self.lock_timeout = lock_timeout
        self._renewer: Renewer | None = None

    # -- lease primitives (subclasses) ---------------------------------------------------------

    def _acquire_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        raise NotImplementedError

    def _renew_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        raise NotImplementedError

    def _release_lease(self, key: SessionKey, token: str) -> None:
        raise NotImplementedError

    # -- sync API (subclasses) -----------------------------------------------------------------

    def append_turn(
        self, key: SessionKey, messages: Sequence[Message], *, system: Message | None = None
    ) -> None:
        """Append the messages of one turn atomically; `system` replaces the system message."""
        raise NotImplementedError

    def load(self, key: SessionKey) -> list[Message]:
        """The session's messages in order, its system message first; empty when unknown."""
        raise NotImplementedError

    def list_sessions(self, owner: str) -> list[SessionInfo]:
        """The owner's sessions, most recently updated first."""
        raise NotImplementedError

    def delete(self, key: SessionKey) -> bool:
        """Forget a session; True when it existed."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
        self._stop_renewing()

    # -- locks ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: SessionKey, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the session's lock; raises `SessionBusyError` after `timeout` seconds."""
        token, wait = uuid.uuid4().hex, self.lock_timeout if timeout is None else timeout
        deadline, delay = time.monotonic() + wait, _MIN_POLL
        while not self._acquire_lease(key, token, self.lock_ttl):
            if time.monotonic() >= deadline:
                raise _busy(key, wait)
            time.sleep(delay)
            delay = _next_delay(delay)
        self._hold(key, token)
        try:
            yield
        finally:
            self._release(key, token)

    @contextlib.asynccontextmanager
    async def alock(self, key: SessionKey, *, timeout: float | None = None) -> AsyncIterator[None]:
        """`lock` for coroutines: polls without blocking the event loop."""
        token, wait = uuid.uuid4().hex, self.lock_timeout if timeout is None else timeout
        deadline, delay = time.monotonic() + wait, _MIN_POLL
        while not await self._try_acquire(key, token):
            if time.monotonic() >= deadline:
                raise _busy(key, wait)
            await asyncio.sleep(delay)
            delay = _next_delay(delay)
        self._hold(key, token)
        try:
            yield
        finally:
            # Shielded so a cancelled turn still frees the session at once, not after the TTL.
            await asyncio.shield(self._io(self._release, key, token))

    async def _try_acquire(self, key: SessionKey, token: str) -> bool:
        attempt = asyncio.ensure_future(self._io(self._acquire_lease, key, token, self.lock_ttl))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The waiter is gone (a client hung up) but the attempt runs on in its thread:
            # should it win the lease, give it back rather than block the session for a TTL.
            attempt.add_done_callback(lambda done: self._give_back(done, key, token))
            raise

    def _give_back(self, done: asyncio.Future[bool], key: SessionKey, token: str) -> None:
        if not done.cancelled() and done.exception() is None and done.result():
            # In a worker thread: the release may wait on the database, the loop must not.
            asyncio.get_running_loop().run_in_executor(None, self._release_lease, key, token)

    def _hold(self, key: SessionKey, token: str) -> None:
        if self._renews_leases:
            if self._renewer is None:
                from ctxlab.stores._lease import Renewer

                self._renewer = Renewer(self._renew_lease, self.lock_ttl)
            self._renewer.hold(key, token)

    def _release(self, key: SessionKey, token: str) -> None:
        if self._renewer is not None:
            self._renewer.drop(token)
        self._release_lease(key, token)

    def _stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer = None

    # -- async API -----------------------------------------------------------------------------

    async def _io(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if not self._blocking_io:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def aappend_turn(
        self, key: SessionKey, messages: Sequence[Message], *, system: Message | None = None
    ) -> None:
        """Async `append_turn`."""
        await self._io(self.append_turn, key, messages, system=system)

    async def aload(self, key: SessionKey) -> list[Message]:
        """Async `load`."""
        return await self._io(self.load, key)

    async def alist_sessions(self, owner: str) -> list[SessionInfo]:
        """Async `list_sessions`."""
        return await self._io(self.list_sessions, owner)

    async def adelete(self, key: SessionKey) -> bool:
        """Async `delete`."""
        return await self._io(self.delete, key)

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def _next_delay(delay: float) -> float:
    # Jitter, so waiters polling one lock do not wake in lockstep.
    return min(delay * 2, _MAX_POLL) * random.uniform(0.5, 1.0)


def utc(seconds: float) -> datetime:
    """A Unix time as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _busy(key: SessionKey, waited: float) -> SessionBusyError:
    return SessionBusyError(
        f"session {key} stayed locked by another turn for {waited:g} s; retry later, or raise "
        "the store's lock_timeout if turns are legitimately that slow"
    )
