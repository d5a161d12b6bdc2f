"""When and how long to wait before retrying a provider call: the official SDKs' policy.

Retried: connection errors and timeouts, HTTP 408, 409, 429 and every status >= 500
(including Anthropic's 529 "overloaded"). A server may force the decision with an
``x-should-retry: true|false`` header. Other statuses (400, 401, 403, 404, 422...) raise at once.

The wait before retry ``n`` (0-based) is the server's ``retry-after-ms`` or ``retry-after``
(seconds or an HTTP date) when it lies in ``(0, max_retry_after]``; otherwise
``min(initial_delay * 2**n, max_delay)`` shortened by up to `jitter` (25%) at random.

``sleep``, ``asleep`` and ``random`` are injectable so tests check the exact waits without
waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ctxlab.errors import UsageError

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "is_retryable_status", "retry_after"]

#: Statuses below 500 that are worth retrying.
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    """True for 408, 409, 429 and any status >= 500."""
    return status in RETRYABLE_STATUSES or status >= 500


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How many times to retry and how long to wait.

    Attributes:
        max_retries: retries after the first attempt (2 by default, as in the SDKs).
        initial_delay: backoff before the first retry, in seconds.
        max_delay: backoff ceiling, in seconds.
        max_retry_after: longest server-requested wait honoured; longer ones fall back
            to the backoff.
        jitter: the backoff is multiplied by ``1 - jitter * random()``.
        sleep: blocking wait (``time.sleep``).
        asleep: asynchronous wait (``asyncio.sleep``).
        random: source of jitter in [0, 1).
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    asleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    random: Callable[[], float] = field(default=_random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise UsageError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 <= self.jitter <= 1:
            raise UsageError(f"jitter must be in [0, 1], got {self.jitter}")

    def backoff(self, retry: int) -> float:
        """Exponential backoff with jitter before retry number `retry` (0-based)."""
        base = min(self.initial_delay * 2.0**retry, self.max_delay)
        return base * (1 - self.jitter * self.random())

    def wait_before_retry(
        self, retry: int, status: int | None, headers: Mapping[str, str] | None = None
    ) -> float | None:
        """Seconds to wait before retry `retry`, or None when the call must not be retried.

        Args:
            retry: how many retries were already made.
            status: the HTTP status, or None for a connection error or timeout.
            headers: the response headers, when there was a response.
        """
        if retry >= self.max_retries:
            return None
        if status is not None and not self._server_allows(status, headers or {}):
            return None
        asked = retry_after(headers or {})
        if asked is not None and 0 < asked <= self.max_retry_after:
            return asked
        return self.backoff(retry)

    @staticmethod
    def _server_allows(status: int, headers: Mapping[str, str]) -> bool:
        forced = headers.get("x-should-retry")
        if forced == "true":
            return True
        if forced == "false":
            return False
        return is_retryable_status(status)


def retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """The wait a response asks for, in seconds, or None.

    Reads ``retry-after-ms`` first, then ``retry-after`` as seconds or as an HTTP date.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - now()
