"""`RedisStore`: sessions in Redis, shared by several processes or proxy instances.

Layout, with every owner and id percent-encoded so no name can collide with another::

    {prefix}:s:{owner}:{id}:msgs   list of JSON messages, in order
    {prefix}:s:{owner}:{id}:meta   hash: system, state (the strategy's), created_at, updated_at,
                                   epoch (random, set by the first turn after a delete)
    {prefix}:o:{owner}             sorted set of the owner's session ids by updated_at
    {prefix}:lock:{owner}:{id}     the session's lock lease (token, with a PX expiry)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from ctxlab.errors import ConfigurationError, MissingDependencyError
from ctxlab.live.stores._codec import encode
from ctxlab.live.stores._history import DEFAULT_CACHE_CHARS, HistoryCache
from ctxlab.live.stores.base import BaseStore, SessionInfo, SessionKey, utc
from ctxlab.messages import Message

__all__ = ["RedisStore"]

# Renew or release only while the lease is still ours: a holder whose lease expired must not
# extend or delete the lease another process has taken since.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# The history from a position on when the session's epoch is the caller's, else all of it
# (KEYS[1] meta, KEYS[2] msgs; ARGV[1] epoch, ARGV[2] position): one snapshot, one round trip.
# Missing hash fields come back as false, which keeps the reply's positions.
_LOAD = """
local meta = redis.call('HMGET', KEYS[1], 'system', 'state', 'epoch')
local n = redis.call('LLEN', KEYS[2])
local from = 0
if meta[3] and meta[3] == ARGV[1] and tonumber(ARGV[2]) <= n then
  from = tonumber(ARGV[2])
end
return {1, meta[1], redis.call('LRANGE', KEYS[2], from, -1), meta[2], meta[3], n, from}
"""
# Take the lease (KEYS[3], token ARGV[3], ARGV[4] ms) and, when won, read as _LOAD does.
_ACQUIRE_AND_LOAD = (
    """
if not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {0}
end
"""
    + _LOAD
)


def _redis_module() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise MissingDependencyError("redis", "redis", "the Redis session store") from exc
    return redis


class RedisStore(BaseStore):
    """Sessions in a Redis database.

    Guarantees:
        - a turn is one MULTI/EXEC transaction (messages, metadata and the owner's index):
          other clients see all of it or none of it;
        - `load` reads the system message and the messages in one transaction (one snapshot);
        - locks are ``SET NX PX`` leases with a random token, renewed and released by Lua
          scripts that act only while the token still matches;
        - the client is thread-safe (a connection pool), so async methods run it in threads.

    Args:
        url: ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: the key prefix, so several applications can share one database.
        lock_ttl: see `BaseStore`.
        lock_timeout: see `BaseStore`.
        cache_chars: stored characters of history kept decoded between turns (0: none); a
            turn then reads only the messages stored since (see `SQLiteStore`).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "ctxlab",
        lock_ttl: float = 30.0,
        lock_timeout: float = 300.0,
        cache_chars: int = DEFAULT_CACHE_CHARS,
    ) -> None:
        super().__init__(lock_ttl=lock_ttl, lock_timeout=lock_timeout)
        redis = _redis_module()
        self.url = _safe(url)  # shown in reprs, logs and exports: never the password
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, decode_responses=True)
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._client.close()
            raise ConfigurationError(
                f"cannot reach Redis at {self.url}: {exc}; start redis-server or fix the URL"
            ) from exc
        self._renew_script = self._client.register_script(_RENEW)
        self._release_script = self._client.register_script(_RELEASE)
        self._acquire_script = self._client.register_script(_ACQUIRE_AND_LOAD)
        self._load_script = self._client.register_script(_LOAD)
        self._histories = HistoryCache(cache_chars)

    def _key(self, key: SessionKey, part: str) -> str:
        return f"{self.prefix}:s:{quote(key.owner, safe='')}:{quote(key.id, safe='')}:{part}"

    def _index(self, owner: str) -> str:
        return f"{self.prefix}:o:{quote(owner, safe='')}"

    def _lock_key(self, key: SessionKey) -> str:
        return f"{self.prefix}:lock:{quote(key.owner, safe='')}:{quote(key.id, safe='')}"

    def append_turn(
        self,
        key: SessionKey,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Append one turn in one MULTI/EXEC; `system` and `state` replace the stored ones."""
        with self._client.pipeline(transaction=True) as pipe:
            self._queue_turn(pipe, key, messages, system, state)
            pipe.execute()

    def _queue_turn(
        self,
        pipe: Any,
        key: SessionKey,
        messages: Sequence[Message],
        system: Message | None,
        state: str | None,
    ) -> None:
        now, meta = time.time(), self._key(key, "meta")
        if messages:
            pipe.rpush(self._key(key, "msgs"), *[encode(m) for m in messages])
        pipe.hsetnx(meta, "created_at", repr(now))
        pipe.hsetnx(meta, "epoch", uuid.uuid4().hex)  # a new one after each delete
        pipe.hset(meta, "updated_at", repr(now))
        if system is not None:
            pipe.hset(meta, "system", encode(system))
        if state is not None:
            pipe.hset(meta, "state", state)
        pipe.zadd(self._index(key.owner), {key.id: now})

    def load(self, key: SessionKey) -> list[Message]:
        """The session's messages in order, its system message first; empty when unknown."""
        epoch, stored = self._histories.hint(key)
        args = [epoch, stored]
        reply = self._load_script(keys=[self._key(key, "meta"), self._key(key, "msgs")], args=args)
        return self._history(key, reply)[0]

    def _history(self, key: SessionKey, reply: list[Any]) -> tuple[list[Message], str | None]:
        """History and state from a `_LOAD` reply (see `HistoryCache.read`)."""
        _, system, bodies, state, epoch, stored, start = reply

        def bodies_from(position: int) -> list[str]:
            if position == start:
                return list(bodies)
            # The kept history changed between the hint and the reply (another thread read
            # the session): the same snapshot's rows, read again from where it ends.
            rows: list[str] = self._client.lrange(self._key(key, "msgs"), position, stored - 1)
            return rows

        history = self._histories.read(key, epoch or None, system or None, stored, bodies_from)
        return history, state or None

    def load_state(self, key: SessionKey) -> str | None:
        """The strategy state stored with the session, or None."""
        state: str | None = self._client.hget(self._key(key, "meta"), "state")
        return state

    def list_sessions(self, owner: str) -> list[SessionInfo]:
        """The owner's sessions, most recently updated first."""
        ids: list[str] = self._client.zrevrange(self._index(owner), 0, -1)
        with self._client.pipeline(transaction=True) as pipe:
            for sid in ids:
                key = SessionKey(owner=owner, id=sid)
                pipe.hmget(self._key(key, "meta"), "created_at", "updated_at")
                pipe.llen(self._key(key, "msgs"))
            replies = pipe.execute()
        found = []
        for sid, (created, updated), count in zip(ids, replies[::2], replies[1::2], strict=True):
            if created is None:  # deleted between the two reads
                continue
            found.append(
                SessionInfo(
                    key=SessionKey(owner=owner, id=sid),
                    messages=count,
                    created_at=utc(float(created)),
                    updated_at=utc(float(updated)),
                )
            )
        return found

    def delete(self, key: SessionKey) -> bool:
        """Forget a session; True when it existed."""
        with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(key, "msgs"), self._key(key, "meta"))
            pipe.zrem(self._index(key.owner), key.id)
            removed, _ = pipe.execute()
        self._histories.forget(key)
        return bool(removed)

    def close(self) -> None:
        """Close the connection pool."""
        super().close()
        self._client.close()

    def _acquire_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        return bool(self._client.set(self._lock_key(key), token, nx=True, px=_ms(ttl)))

    def _acquire_and_load(
        self, key: SessionKey, token: str, ttl: float
    ) -> tuple[list[Message], str | None] | None:
        keys = [self._key(key, "meta"), self._key(key, "msgs"), self._lock_key(key)]
        epoch, stored = self._histories.hint(key)
        reply = self._acquire_script(keys=keys, args=[epoch, stored, token, _ms(ttl)])
        if not reply[0]:
            return None
        return self._history(key, reply)

    def _append_and_release(
        self,
        key: SessionKey,
        token: str,
        messages: Sequence[Message],
        system: Message | None,
        state: str | None,
    ) -> bool:
        # The release script runs inside the turn's MULTI/EXEC: all apply, or none.
        with self._client.pipeline(transaction=True) as pipe:
            self._queue_turn(pipe, key, messages, system, state)
            self._release_script(keys=[self._lock_key(key)], args=[token], client=pipe)
            *_, freed = pipe.execute()
        return bool(freed)

    def _renew_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        return bool(self._renew_script(keys=[self._lock_key(key)], args=[token, _ms(ttl)]))

    def _release_lease(self, key: SessionKey, token: str) -> None:
        self._release_script(keys=[self._lock_key(key)], args=[token])


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
