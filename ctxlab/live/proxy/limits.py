"""Per-key limits: requests per minute, tokens per minute, dollars per UTC day.

Requests and tokens are token buckets holding a minute's allowance, refilled continuously.
`admit` checks all three limits and takes one request and the request's estimated tokens in
one atomic step, so N concurrent requests against an allowance of n < N admit exactly n.
After the reply, `settle` corrects the token bucket by the difference between the billed and
the estimated tokens (the bucket may go into debt, which later requests wait out) and adds the
cost to the day's spend. A request over the spend cap is refused until the UTC day rolls over;
requests already admitted may finish and overshoot it by their own cost.

`MemoryLimits` serves one process. `RedisLimits` keeps the same state in Redis, updated by Lua
scripts (atomic on the server, timed by the server's clock), so several proxy instances on one
Redis enforce one limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ctxlab.errors import MissingDependencyError
from ctxlab.live.proxy.config import KeyConfig

__all__ = ["Limits", "MemoryLimits", "RedisLimits", "Verdict", "open_limits"]

_DAY = 86400.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The outcome of `Limits.admit`.

    Attributes:
        allowed: the request may go ahead (its request and tokens were taken).
        reason: for a refusal, the limit hit: ``requests``, ``tokens`` or ``spend``.
        retry_after: seconds until the request would be admitted.
    """

    allowed: bool
    reason: str = ""
    retry_after: float = 0.0


ALLOWED = Verdict(allowed=True)


class Limits(Protocol):
    """Where the limit state lives."""

    async def admit(self, key: KeyConfig, tokens: int) -> Verdict:
        """Check every limit of `key` and, when all pass, take one request and `tokens`."""
        ...

    async def settle(self, key: KeyConfig, extra_tokens: int, cost_usd: float) -> None:
        """Charge `extra_tokens` more (negative: give back) and add `cost_usd` to today's spend."""
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
class _State:
    requests: float
    tokens: float
    stamp: float
    spend: dict[int, float] = field(default_factory=dict)


class MemoryLimits:
    """Limit state in this process (coroutines on one event loop never interleave inside it)."""

    def __init__(self, clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self._clock, self._wall = clock, wall
        self._states: dict[str, _State] = {}

    async def admit(self, key: KeyConfig, tokens: int) -> Verdict:
        """See `Limits.admit`."""
        if not has_limits(key):
            return ALLOWED
        state, now = self._refilled(key), self._wall()
        cap = key.usd_per_day
        if cap is not None and state.spend.get(int(now // _DAY), 0.0) >= cap:
            return Verdict(allowed=False, reason="spend", retry_after=seconds_to_midnight(now))
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        if rpm is not None and state.requests < 1:
            return Verdict(
                allowed=False, reason="requests", retry_after=_wait(1, state.requests, rpm)
            )
        need = min(tokens, tpm) if tpm is not None else 0
        if tpm is not None and state.tokens < need:
            return Verdict(
                allowed=False, reason="tokens", retry_after=_wait(need, state.tokens, tpm)
            )
        state.requests -= 1
        state.tokens -= tokens
        return ALLOWED

    async def settle(self, key: KeyConfig, extra_tokens: int, cost_usd: float) -> None:
        """See `Limits.settle`."""
        if not has_limits(key):
            return
        state = self._refilled(key)
        if key.tokens_per_minute is not None:
            state.tokens = min(float(key.tokens_per_minute), state.tokens - extra_tokens)
        if key.usd_per_day is not None and math.isfinite(cost_usd):
            day = int(self._wall() // _DAY)
            state.spend = {day: state.spend.get(day, 0.0) + cost_usd}

    async def aclose(self) -> None:
        """Nothing to release."""

    def _refilled(self, key: KeyConfig) -> _State:
        now = self._clock()
        rpm = float(key.requests_per_minute or 0)
        tpm = float(key.tokens_per_minute or 0)
        state = self._states.get(key.name)
        if state is None:
            state = self._states[key.name] = _State(requests=rpm, tokens=tpm, stamp=now)
        elapsed = max(0.0, now - state.stamp)
        state.requests = min(rpm, state.requests + elapsed * rpm / 60)
        state.tokens = min(tpm, state.tokens + elapsed * tpm / 60)
        state.stamp = now
        return state


def _wait(need: float, level: float, per_minute: int) -> float:
    return max(0.0, (need - level) * 60.0 / per_minute)


# KEYS: bucket hash, spend counter. ARGV: rpm, tpm, usd cap, tokens, seconds to midnight
# (0 for "no limit"). Returns {allowed, retry-after in ms, reason}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rpm, tpm, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
if cap > 0 then
  local spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent >= cap then return {0, math.ceil(tonumber(ARGV[5]) * 1000), 'spend'} end
end
local b = redis.call('HMGET', KEYS[1], 'r', 't', 's')
local r, tk, s = tonumber(b[1]) or rpm, tonumber(b[2]) or tpm, tonumber(b[3]) or now
local dt = math.max(0, now - s)
r = math.min(rpm, r + dt * rpm / 60)
tk = math.min(tpm, tk + dt * tpm / 60)
if rpm > 0 and r < 1 then
  redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tk), 's', tostring(now))
  return {0, math.ceil((1 - r) * 60000 / rpm), 'requests'}
end
local need = math.min(tokens, tpm)
if tpm > 0 and tk < need then
  redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tk), 's', tostring(now))
  return {0, math.ceil((need - tk) * 60000 / tpm), 'tokens'}
end
if rpm > 0 then r = r - 1 end
if tpm > 0 then tk = tk - tokens end
redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tk), 's', tostring(now))
redis.call('EXPIRE', KEYS[1], 120)
return {1, 0, ''}
"""

# KEYS: bucket hash, spend counter. ARGV: tpm, extra tokens, cost (or ''), expiry seconds.
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

    def _keys(self, key: KeyConfig) -> list[str]:
        name, day = quote(key.name, safe=""), int(time.time() // _DAY)
        return [f"{self.prefix}:limits:{name}", f"{self.prefix}:spend:{name}:{day}"]

    async def admit(self, key: KeyConfig, tokens: int) -> Verdict:
        """See `Limits.admit`."""
        if not has_limits(key):
            return ALLOWED
        args: list[str | int] = [
            key.requests_per_minute or 0,
            key.tokens_per_minute or 0,
            repr(key.usd_per_day or 0.0),
            tokens,
            repr(seconds_to_midnight(time.time())),
        ]
        ok, wait_ms, reason = await self._admit(keys=self._keys(key), args=args)
        if ok:
            return ALLOWED
        return Verdict(allowed=False, reason=str(reason), retry_after=int(wait_ms) / 1000)

    async def settle(self, key: KeyConfig, extra_tokens: int, cost_usd: float) -> None:
        """See `Limits.settle`."""
        if not has_limits(key):
            return
        cost = repr(cost_usd) if key.usd_per_day is not None and math.isfinite(cost_usd) else ""
        args: list[str | int] = [key.tokens_per_minute or 0, extra_tokens, cost, int(2 * _DAY)]
        await self._settle(keys=self._keys(key), args=args)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def open_limits(store_url: str) -> Limits:
    """Limits shared through Redis when the store is Redis, else kept in this process."""
    if store_url.partition("://")[0] in ("redis", "rediss", "unix"):
        return RedisLimits(store_url)
    return MemoryLimits()


def _split_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", "ctxlab")
    return urlunsplit(parts._replace(query=urlencode(query))), prefix
