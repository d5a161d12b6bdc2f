"""Per-key limits: requests per minute, tokens per minute, dollars per UTC day.

Requests and tokens are token buckets holding a minute's allowance, refilled continuously.
`admit` checks all three limits and, when they pass, takes one request, the request's
estimated tokens and its worst-case cost (prompt tokens + the reply limit, priced) in one
atomic step: N concurrent requests against an allowance of n < N admit exactly n, and the
requests admitted against a spend cap can never cost more than the cap together. After the
reply, `settle` corrects the token bucket by the difference between billed and estimated
tokens (the bucket may go into debt, which later requests wait out) and the day's spend by the
difference between the real cost and the reservation. A request whose reservation does not fit
under the cap is refused until the UTC day rolls over.

`MemoryLimits` serves one process. `RedisLimits` keeps the same state in Redis, updated by Lua
scripts (atomic on the server, timed by the server's clock), so several proxy instances on one
Redis enforce one limit. `SQLiteLimits` (`ctxlab.live.proxy.limits_sqlite`) keeps it in the
store's SQLite file, one transaction per step, so a restart does not reset a daily cap.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ctxlab.errors import MissingDependencyError
from ctxlab.live.proxy.config import KeyConfig

__all__ = ["Limits", "MemoryLimits", "RedisLimits", "Verdict", "decide", "open_limits"]

_DAY = 86400.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The outcome of `Limits.admit`.

    Attributes:
        allowed: the request may go ahead (its request and tokens were taken).
        reason: for a refusal, the limit hit: ``requests``, ``tokens`` or ``spend``.
        retry_after: seconds until the request would be admitted.
        day: the UTC day (days since the epoch) its reservation was charged to.
    """

    allowed: bool
    reason: str = ""
    retry_after: float = 0.0
    day: int = 0


ALLOWED = Verdict(allowed=True)


class Limits(Protocol):
    """Where the limit state lives."""

    async def check(self, key: KeyConfig) -> Verdict:
        """Whether `key` could send a request now, taking nothing (before expensive work)."""
        ...

    async def admit(self, key: KeyConfig, tokens: int, reserve_usd: float = 0.0) -> Verdict:
        """Check every limit of `key`; when all pass, take a request, `tokens`, `reserve_usd`."""
        ...

    async def settle(self, key: KeyConfig, extra_tokens: int, extra_usd: float, day: int) -> None:
        """Charge `extra_tokens` and `extra_usd` more (negative: give back) on `day`'s spend."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def has_limits(key: KeyConfig) -> bool:
    """True when the key has any limit at all."""
    limits = (key.requests_per_minute, key.tokens_per_minute, key.usd_per_day)
    return any(v is not None for v in limits)


def seconds_to_midnight(now: float) -> float:
    """Seconds until the next UTC midnight."""
    return _DAY - now % _DAY


@dataclass(kw_only=True)
class Bucket:
    """A key's request and token allowances and when they were last refilled."""

    requests: float
    tokens: float
    stamp: float


def decide(
    key: KeyConfig,
    bucket: Bucket,
    now: float,
    spent: float,
    tokens: int,
    reserve: float,
    wall: float | None = None,
) -> Verdict:
    """Refill `bucket` to `now`, then admit (taking from it) or refuse one request.

    Args:
        key: the key and its limits.
        bucket: its allowances (changed in place).
        now: the current time in seconds (the bucket's clock).
        spent: today's spend including reservations, for the cap.
        tokens: the request's estimated tokens.
        reserve: its worst-case cost in USD.
        wall: the wall-clock time (for the wait until midnight); `now` when None.
    """
    rpm = float(key.requests_per_minute or 0)
    tpm = float(key.tokens_per_minute or 0)
    elapsed = max(0.0, now - bucket.stamp)
    bucket.requests = min(rpm, bucket.requests + elapsed * rpm / 60)
    bucket.tokens = min(tpm, bucket.tokens + elapsed * tpm / 60)
    bucket.stamp = now
    cap = key.usd_per_day
    if cap is not None and (spent >= cap or spent + reserve > cap):
        midnight = seconds_to_midnight(now if wall is None else wall)
        return Verdict(allowed=False, reason="spend", retry_after=midnight)
    if rpm and bucket.requests < 1:
        return Verdict(allowed=False, reason="requests", retry_after=_wait(1, bucket.requests, rpm))
    need = min(tokens, tpm)
    if tpm and bucket.tokens < need:
        return Verdict(allowed=False, reason="tokens", retry_after=_wait(need, bucket.tokens, tpm))
    bucket.requests -= 1 if rpm else 0
    bucket.tokens -= tokens if tpm else 0
    return ALLOWED


def today() -> int:
    """Days since the epoch, UTC."""
    return int(time.time() // _DAY)


class MemoryLimits:
    """Limit state in this process (coroutines on one event loop never interleave inside it)."""

    def __init__(self, clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self._clock, self._wall = clock, wall
        self._buckets: dict[str, Bucket] = {}
        self._spend: dict[tuple[str, int], float] = {}

    async def check(self, key: KeyConfig) -> Verdict:
        """See `Limits.check`."""
        return await self.admit(key, 0, 0.0, take=False)

    async def admit(
        self, key: KeyConfig, tokens: int, reserve_usd: float = 0.0, *, take: bool = True
    ) -> Verdict:
        """See `Limits.admit`."""
        if not has_limits(key):
            return ALLOWED
        wall = self._wall()
        day = int(wall // _DAY)
        bucket = self._bucket(key)
        trial = bucket if take else Bucket(**vars(bucket))
        spent = self._spent(key, day)
        verdict = decide(key, trial, self._clock(), spent, tokens, reserve_usd, wall)
        if verdict.allowed and take and key.usd_per_day is not None:
            self._spend = {k: v for k, v in self._spend.items() if k[1] >= day - 1}
            self._spend[key.name, day] = self._spent(key, day) + reserve_usd
        return Verdict(allowed=True, day=day) if verdict.allowed else verdict

    async def settle(self, key: KeyConfig, extra_tokens: int, extra_usd: float, day: int) -> None:
        """See `Limits.settle`."""
        if not has_limits(key):
            return
        bucket = self._bucket(key)
        if key.tokens_per_minute is not None:
            bucket.tokens = min(float(key.tokens_per_minute), bucket.tokens - extra_tokens)
        if key.usd_per_day is not None and math.isfinite(extra_usd):
            self._spend[key.name, day] = self._spent(key, day) + extra_usd

    async def aclose(self) -> None:
        """Nothing to release."""

    def _spent(self, key: KeyConfig, day: int) -> float:
        return self._spend.get((key.name, day), 0.0)

    def _bucket(self, key: KeyConfig) -> Bucket:
        found = self._buckets.get(key.name)
        if found is None:
            rpm, tpm = float(key.requests_per_minute or 0), float(key.tokens_per_minute or 0)
            found = self._buckets[key.name] = Bucket(requests=rpm, tokens=tpm, stamp=self._clock())
        return found


def _wait(need: float, level: float, per_minute: float) -> float:
    return max(0.0, (need - level) * 60.0 / per_minute)


# KEYS: bucket hash, spend counter. ARGV: rpm, tpm, usd cap, tokens, seconds to midnight,
# reservation in USD, take (1) or only check (0); 0 means "no limit". Returns {allowed,
# retry-after in ms, reason}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rpm, tpm, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, reserve, take = tonumber(ARGV[4]), tonumber(ARGV[6]), ARGV[7] == '1'
local spent = 0
if cap > 0 then
  spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent >= cap or spent + reserve > cap then
    return {0, math.ceil(tonumber(ARGV[5]) * 1000), 'spend'}
  end
end
local b = redis.call('HMGET', KEYS[1], 'r', 't', 's')
local r, tk, s = tonumber(b[1]) or rpm, tonumber(b[2]) or tpm, tonumber(b[3]) or now
local dt = math.max(0, now - s)
r = math.min(rpm, r + dt * rpm / 60)
tk = math.min(tpm, tk + dt * tpm / 60)
if rpm > 0 and r < 1 then
  return {0, math.ceil((1 - r) * 60000 / rpm), 'requests'}
end
local need = math.min(tokens, tpm)
if tpm > 0 and tk < need then
  return {0, math.ceil((need - tk) * 60000 / tpm), 'tokens'}
end
if not take then return {1, 0, ''} end
if rpm > 0 then r = r - 1 end
if tpm > 0 then tk = tk - tokens end
redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tk), 's', tostring(now))
redis.call('EXPIRE', KEYS[1], 120)
if cap > 0 and reserve > 0 then
  redis.call('INCRBYFLOAT', KEYS[2], ARGV[6])
  redis.call('EXPIRE', KEYS[2], 172800)
end
return {1, 0, ''}
"""

# KEYS: bucket hash, spend counter. ARGV: tpm, extra tokens, extra cost (or ''), expiry seconds.
_SETTLE = """
local tpm = tonumber(ARGV[1])
if tpm > 0 then
  local tk = tonumber(redis.call('HGET', KEYS[1], 't') or ARGV[1])
  redis.call('HSET', KEYS[1], 't', tostring(math.min(tpm, tk - tonumber(ARGV[2]))))
end
if ARGV[3] ~= '' then
  redis.call('INCRBYFLOAT', KEYS[2], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
"""


class RedisLimits:
    """Limit state in Redis, shared by every proxy instance using the same database.

    Args:
        url: the store's Redis URL (its ``?prefix=`` names the key prefix, as for the store).
    """

    def __init__(self, url: str) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise MissingDependencyError("redis", "proxy", "shared rate limits") from exc
        plain, self.prefix = _split_prefix(url)
        self._client = aioredis.Redis.from_url(plain, decode_responses=True)
        self._admit = self._client.register_script(_ADMIT)
        self._settle = self._client.register_script(_SETTLE)

    def _keys(self, key: KeyConfig, day: int) -> list[str]:
        name = quote(key.name, safe="")
        return [f"{self.prefix}:limits:{name}", f"{self.prefix}:spend:{name}:{day}"]

    async def check(self, key: KeyConfig) -> Verdict:
        """See `Limits.check`."""
        return await self.admit(key, 0, 0.0, take=False)

    async def admit(
        self, key: KeyConfig, tokens: int, reserve_usd: float = 0.0, *, take: bool = True
    ) -> Verdict:
        """See `Limits.admit`."""
        if not has_limits(key):
            return ALLOWED
        day = today()
        args: list[str | int] = [
            key.requests_per_minute or 0,
            key.tokens_per_minute or 0,
            repr(key.usd_per_day or 0.0),
            tokens,
            repr(seconds_to_midnight(time.time())),
            repr(reserve_usd),
            int(take),
        ]
        ok, wait_ms, reason = await self._admit(keys=self._keys(key, day), args=args)
        if ok:
            return Verdict(allowed=True, day=day)
        return Verdict(allowed=False, reason=str(reason), retry_after=int(wait_ms) / 1000)

    async def settle(self, key: KeyConfig, extra_tokens: int, extra_usd: float, day: int) -> None:
        """See `Limits.settle`."""
        if not has_limits(key):
            return
        priced = key.usd_per_day is not None and math.isfinite(extra_usd) and extra_usd != 0
        cost = repr(extra_usd) if priced else ""
        args: list[str | int] = [key.tokens_per_minute or 0, extra_tokens, cost, int(2 * _DAY)]
        await self._settle(keys=self._keys(key, day), args=args)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def open_limits(store_url: str) -> Limits:
    """Limits kept where the store keeps sessions (Redis, SQLite), else in this process."""
    scheme = store_url.partition("://")[0]
    if scheme in ("redis", "rediss", "unix"):
        return RedisLimits(store_url)
    if scheme == "sqlite":
        from ctxlab.live.proxy.limits_sqlite import SQLiteLimits
        from ctxlab.live.stores import sqlite_path

        return SQLiteLimits(sqlite_path(store_url))
    return MemoryLimits()


def _split_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", "ctxlab")
    return urlunsplit(parts._replace(query=urlencode(query))), prefix
