"""What every session store shares: `SessionKey`, `SessionInfo`, the `Store` protocol, `BaseStore`.

A store keeps, per session, an append-only list of messages, the session's current system
message and the strategy's state: an opaque text (JSON) that a stateful strategy such as
`summarize` resumes from at the next turn instead of recomputing (its running summary and how
far it has folded). The store never reads it; the strategy checks it before trusting it.

Sessions are keyed by ``(owner, id)``: the proxy uses the client key's name as the owner, so one
client can never name another client's session. A turn (the new messages and the reply)
is written with one `append_turn` call, atomically, together with the strategy state it left:
a reader sees all of it or none of it.

Locks serialise turns on one session across threads, event loops and processes. They are leases
(token + expiry) that one renewer thread per store keeps alive while held, so a crashed holder
frees the session after `lock_ttl` seconds instead of blocking it forever.

`BaseStore.begin_turn` (and `abegin_turn`) is the fast path of a whole turn: it takes the lock
and loads the history in one step, and `HeldSession.commit` stores the turn and releases the
lock in one transaction. A plain `Store` gets the same through `hold_session`, step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    ParamSpec,
    Protocol,
    TypeAlias,
    TypeVar,
    cast,
    runtime_checkable,
)

from ctxlab.errors import CtxlabError, UsageError
from ctxlab.messages import Message

if TYPE_CHECKING:
    from ctxlab.live.stores._lease import Renewer

__all__ = [
    "BaseStore",
    "HeldSession",
    "SessionBusyError",
    "SessionInfo",
    "SessionKey",
    "Store",
    "ahold_session",
    "hold_session",
    "utc",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

log = logging.getLogger("ctxlab.live.stores")

# One try at taking a lease with a fresh token: None or False when another holder has it.
_Attempt: TypeAlias = Callable[[str], "_T | None"]


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
        self,
        key: SessionKey,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Append one turn atomically; `system` and `state` replace the stored ones when given."""
        ...

    def load(self, key: SessionKey) -> list[Message]:
        """The session's messages in order, its system message first; empty when unknown."""
        ...

    def load_state(self, key: SessionKey) -> str | None:
        """The strategy state stored with the session's latest turn that left one, or None."""
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
        self,
        key: SessionKey,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Async `append_turn`."""
        ...

    async def aload(self, key: SessionKey) -> list[Message]:
        """Async `load`."""
        ...

    async def aload_state(self, key: SessionKey) -> str | None:
        """Async `load_state`."""
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


#: What `HeldSession` calls to store a turn: (messages, system, strategy state).
_Commit: TypeAlias = Callable[[Sequence[Message], "Message | None", "str | None"], None]
_ACommit: TypeAlias = Callable[[Sequence[Message], "Message | None", "str | None"], Awaitable[None]]
#: A session as loaded under its lock: (messages, strategy state).
_Loaded: TypeAlias = tuple[list[Message], "str | None"]


class HeldSession:
    """A session whose lock the current turn holds: the history read under it, and the commit.

    Attributes:
        key: the session.
        history: its messages as loaded under the lock, the system message first.
        state: the strategy state stored with it (see the module docstring), or None.
        committed: True once `commit` (or `acommit`) has stored the turn.
    """

    def __init__(
        self,
        key: SessionKey,
        loaded: _Loaded,
        commit: _Commit,
        acommit: _ACommit,
    ) -> None:
        self.key = key
        self.history, self.state = loaded
        self.committed = False
        self.in_flight: asyncio.Future[None] | None = None  # an async commit, once started
        self._commit = commit
        self._acommit = acommit

    def commit(
        self,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Store the turn and its strategy state atomically, freeing the lock with them."""
        self._commit(messages, system, state)
        self.committed = True

    async def acommit(
        self,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Async `commit`; once started, it completes even if the caller is cancelled."""
        self.in_flight = asyncio.ensure_future(self._acommit(messages, system, state))
        await asyncio.shield(self.in_flight)
        self.committed = True


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
        self,
        key: SessionKey,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Append one turn atomically; `system` and `state` replace the stored ones when given."""
        raise NotImplementedError

    def load(self, key: SessionKey) -> list[Message]:
        """The session's messages in order, its system message first; empty when unknown."""
        raise NotImplementedError

    def load_state(self, key: SessionKey) -> str | None:
        """The strategy state stored with the session, or None."""
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
        token, _ = self._poll(key, timeout, lambda t: self._acquire_lease(key, t, self.lock_ttl))
        try:
            yield
        finally:
            self._release(key, token)

    @contextlib.asynccontextmanager
    async def alock(self, key: SessionKey, *, timeout: float | None = None) -> AsyncIterator[None]:
        """`lock` for coroutines: polls without blocking the event loop."""
        token, _ = await self._apoll(
            key, timeout, lambda t: self._acquire_lease(key, t, self.lock_ttl)
        )
        try:
            yield
        finally:
            # Shielded so a cancelled turn still frees the session at once, not after the TTL.
            await asyncio.shield(self._io(self._release, key, token))

    def _poll(
        self, key: SessionKey, timeout: float | None, attempt: _Attempt[_T]
    ) -> tuple[str, _T]:
        """Call `attempt(token)` until it wins the lease (returns neither None nor False)."""
        token, wait = uuid.uuid4().hex, self.lock_timeout if timeout is None else timeout
        deadline, delay = time.monotonic() + wait, _MIN_POLL
        while _lost(won := attempt(token)):
            if time.monotonic() >= deadline:
                raise _busy(key, wait)
            time.sleep(delay)
            delay = _next_delay(delay)
        self._hold(key, token)
        return token, cast(_T, won)

    async def _apoll(
        self, key: SessionKey, timeout: float | None, attempt: _Attempt[_T]
    ) -> tuple[str, _T]:
        """`_poll` for coroutines."""
        token, wait = uuid.uuid4().hex, self.lock_timeout if timeout is None else timeout
        deadline, delay = time.monotonic() + wait, _MIN_POLL
        while _lost(won := await self._try_acquire(key, token, attempt)):
            if time.monotonic() >= deadline:
                raise _busy(key, wait)
            await asyncio.sleep(delay)
            delay = _next_delay(delay)
        self._hold(key, token)
        return token, cast(_T, won)

    async def _try_acquire(self, key: SessionKey, token: str, attempt: _Attempt[_T]) -> _T | None:
        job = asyncio.ensure_future(self._io(attempt, token))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            # The waiter is gone (a client hung up) but the attempt runs on in its thread:
            # should it win the lease, give it back rather than block the session for a TTL.
            job.add_done_callback(lambda done: self._give_back(done, key, token))
            raise

    def _give_back(self, done: asyncio.Future[Any], key: SessionKey, token: str) -> None:
        if not done.cancelled() and done.exception() is None and not _lost(done.result()):
            # In a worker thread: the release may wait on the database, the loop must not.
            asyncio.get_running_loop().run_in_executor(None, self._release_lease, key, token)

    def _hold(self, key: SessionKey, token: str) -> None:
        if self._renews_leases:
            if self._renewer is None:
                from ctxlab.live.stores._lease import Renewer

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

    # -- whole turns: lock + load in one step, store + unlock in one transaction -----------------

    def _acquire_and_load(self, key: SessionKey, token: str, ttl: float) -> _Loaded | None:
        """Take the lease and, when won, load history and state (stores override: one step)."""
        if not self._acquire_lease(key, token, ttl):
            return None
        return self.load(key), self.load_state(key)

    def _append_and_release(
        self,
        key: SessionKey,
        token: str,
        messages: Sequence[Message],
        system: Message | None,
        state: str | None,
    ) -> bool:
        """Store the turn and its state and release the lease (stores override: one transaction).

        Returns:
            False when the lease was no longer this token's (it expired and was taken).
        """
        self.append_turn(key, messages, system=system, state=state)
        self._release_lease(key, token)
        return True

    @contextlib.contextmanager
    def begin_turn(self, key: SessionKey, *, timeout: float | None = None) -> Iterator[HeldSession]:
        """Lock the session and load its history in one step.

        `HeldSession.commit` then stores the turn and unlocks in one transaction; leaving the
        block without a commit just unlocks. Raises `SessionBusyError` like `lock`.
        """
        token, loaded = self._poll(key, timeout, self._loader(key))
        held = self._held(key, token, loaded)
        try:
            yield held
        finally:
            if not held.committed:
                self._release(key, token)

    @contextlib.asynccontextmanager
    async def abegin_turn(
        self, key: SessionKey, *, timeout: float | None = None
    ) -> AsyncIterator[HeldSession]:
        """`begin_turn` for coroutines: one worker-thread hop to lock, one to commit."""
        token, loaded = await self._apoll(key, timeout, self._loader(key))
        held = self._held(key, token, loaded)
        try:
            yield held
        finally:
            if not held.committed:
                await asyncio.shield(self._settle(held, token))

    def _loader(self, key: SessionKey) -> _Attempt[_Loaded]:
        return lambda token: self._acquire_and_load(key, token, self.lock_ttl)

    def _held(self, key: SessionKey, token: str, loaded: _Loaded) -> HeldSession:
        def commit(messages: Sequence[Message], system: Message | None, state: str | None) -> None:
            self._finish(key, token, messages, system, state)

        def acommit(
            messages: Sequence[Message], system: Message | None, state: str | None
        ) -> Awaitable[None]:
            return self._io(self._finish, key, token, messages, system, state)

        return HeldSession(key, loaded, commit, acommit)

    def _finish(
        self,
        key: SessionKey,
        token: str,
        messages: Sequence[Message],
        system: Message | None,
        state: str | None,
    ) -> None:
        renewer = self._renewer
        if renewer is not None:
            renewer.closing(token)  # the commit frees the lease: a failed renewal is expected
        try:
            kept = self._append_and_release(key, token, messages, system, state)
        finally:
            if renewer is not None:
                renewer.drop(token)
        if not kept:
            log.warning(
                "lost the lock of session %s before its turn was stored; turns may "
                "have interleaved (raise lock_ttl if turns are that slow)",
                key,
            )

    async def _settle(self, held: HeldSession, token: str) -> None:
        # A commit cancelled in flight runs on in its thread and frees the lock itself;
        # release here only when it never started, or failed.
        if held.in_flight is not None:
            with contextlib.suppress(Exception):
                await held.in_flight
                return
        await self._io(self._release, held.key, token)

    # -- async API -----------------------------------------------------------------------------

    async def _io(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if not self._blocking_io:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def aappend_turn(
        self,
        key: SessionKey,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Async `append_turn`."""
        await self._io(self.append_turn, key, messages, system=system, state=state)

    async def aload(self, key: SessionKey) -> list[Message]:
        """Async `load`."""
        return await self._io(self.load, key)

    async def aload_state(self, key: SessionKey) -> str | None:
        """Async `load_state`."""
        return await self._io(self.load_state, key)

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


def hold_session(store: Store, key: SessionKey) -> contextlib.AbstractContextManager[HeldSession]:
    """`store.begin_turn(key)`; for a `Store` that is no `BaseStore`, lock, load and append."""
    if isinstance(store, BaseStore):
        return store.begin_turn(key)
    return _stepwise(store, key)


def ahold_session(
    store: Store, key: SessionKey
) -> contextlib.AbstractAsyncContextManager[HeldSession]:
    """`store.abegin_turn(key)`, or the same step by step (see `hold_session`)."""
    if isinstance(store, BaseStore):
        return store.abegin_turn(key)
    return _astepwise(store, key)


@contextlib.contextmanager
def _stepwise(store: Store, key: SessionKey) -> Iterator[HeldSession]:
    with store.lock(key):
        yield HeldSession(key, (store.load(key), store.load_state(key)), *_appenders(store, key))


@contextlib.asynccontextmanager
async def _astepwise(store: Store, key: SessionKey) -> AsyncIterator[HeldSession]:
    async with store.alock(key):
        loaded = (await store.aload(key), await store.aload_state(key))
        yield HeldSession(key, loaded, *_appenders(store, key))


def _appenders(store: Store, key: SessionKey) -> tuple[_Commit, _ACommit]:
    return (
        lambda m, s, st: store.append_turn(key, m, system=s, state=st),
        lambda m, s, st: store.aappend_turn(key, m, system=s, state=st),
    )


def _lost(attempt: object) -> bool:
    return attempt is None or attempt is False


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
