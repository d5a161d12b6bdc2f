"""A client-side rate limiter: token buckets for requests per minute and tokens per minute.

Each call reserves its cost at once, under a short thread lock, and then waits outside the
lock until its reservation is covered. The buckets may go negative, so callers queue up in
arrival order whether they are threads or asyncio tasks, and no task holds a lock while it
sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from ctxlab.errors import UsageError

__all__ = ["RateLimiter"]


class _Bucket:
    """Capacity `per_minute`, refilled continuously at `per_minute / 60` per second."""

    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = now

    def reserve(self, cost: float, now: float) -> float:
        """Take `cost` and return the seconds until the bucket is no longer in debt."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        self.level -= min(cost, self.capacity)  # a request larger than a minute waits a minute
        return max(0.0, -self.level / self.rate)


class RateLimiter:
    """Limits requests/min and tokens/min; safe across threads and asyncio tasks.

    Attributes:
        requests_per_minute: request limit, or None for none.
        tokens_per_minute: token limit, or None for none.
    """

    def __init__(
        self,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Build a limiter; `clock`, `sleep` and `asleep` are injectable for tests."""
        for name, value in (("requests", requests_per_minute), ("tokens", tokens_per_minute)):
            if value is not None and value <= 0:
                raise UsageError(f"{name}_per_minute must be positive, got {value}")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._clock, self._sleep, self._asleep = clock, sleep, asleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = _Bucket(requests_per_minute, now) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, now) if tokens_per_minute else None

    @property
    def counts_tokens(self) -> bool:
        """True when a tokens-per-minute limit is set (callers then count their prompts)."""
        return self._tokens is not None

    def reserve(self, tokens: int = 0) -> float:
        """Reserve one request of `tokens` tokens; return the seconds to wait before sending."""
        with self._lock:
            now = self._clock()
            wait = self._requests.reserve(1, now) if self._requests else 0.0
            if self._tokens is not None and tokens:
                wait = max(wait, self._tokens.reserve(tokens, now))
            return wait

    def acquire(self, tokens: int = 0) -> float:
        """Block until one request of `tokens` tokens may be sent; return the wait in seconds."""
        wait = self.reserve(tokens)
        if wait > 0:
            self._sleep(wait)
        return wait

    async def aacquire(self, tokens: int = 0) -> float:
        """Asynchronous `acquire`: other tasks run while this one waits."""
        wait = self.reserve(tokens)
        if wait > 0:
            await self._asleep(wait)
        return wait

    def __repr__(self) -> str:
        return (
            f"RateLimiter(requests_per_minute={self.requests_per_minute}, "
            f"tokens_per_minute={self.tokens_per_minute})"
        )
