"""The token-bucket rate limiter: exact waits on a fake clock, asyncio and thread safety."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from providers_support import OPENAI_KEY, OPENAI_REPLY, Recorder, json_response

from ctxlab.errors import UsageError
from ctxlab.messages import Message
from ctxlab.providers import RateLimiter
from ctxlab.providers.openai import OpenAIProvider
from ctxlab.tokens import get_counter


class FakeClock:
    """A clock that only moves when a (fake) sleep says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


def test_requests_per_minute_bucket_waits_exactly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(62)]
    # A full bucket of 60 goes at once, then one request per second.
    assert waits[:60] == [0.0] * 60
    assert waits[60:] == pytest.approx([1.0, 2.0])
    clock.now = 10.0  # refilled by 10 requests, 2 of which were owed
    assert limiter.acquire() == 0.0


def test_tokens_per_minute_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=6000, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(5000) == 0.0
    assert limiter.acquire(2000) == pytest.approx(10.0)  # 1000 owed at 100 tokens/s
    assert limiter.acquire(0) == 0.0  # requests without tokens pass


def test_asyncio_tasks_queue_in_order_and_never_exceed_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=120, clock=clock, asleep=clock.asleep)

    async def run() -> list[float]:
        return list(await asyncio.gather(*(limiter.aacquire() for _ in range(130))))

    waits = sorted(asyncio.run(run()))
    # 120 at once, then the 10 others 0.5 s apart: each task got its own slot.
    assert waits[:120] == [0.0] * 120
    assert waits[120:] == pytest.approx([0.5 * k for k in range(1, 11)])
    assert clock.slept == pytest.approx(waits[120:])


def test_real_time_async_concurrency() -> None:
    limiter = RateLimiter(requests_per_minute=600)  # 10 per second after a burst of 600
    for _ in range(600):
        limiter.reserve()

    async def run() -> float:
        start = time.monotonic()
        await asyncio.gather(*(limiter.aacquire() for _ in range(5)))
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    assert 0.4 <= elapsed < 1.5, elapsed  # the fifth waits 0.5 s, concurrently with the rest


def test_threads_take_distinct_slots() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock, sleep=clock.sleep)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            w = limiter.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits)[60:] == pytest.approx([float(k) for k in range(1, 21)])


def test_provider_reserves_counted_prompt_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tokens_per_minute=100, clock=clock, sleep=clock.sleep)
    rec = Recorder([json_response(200, OPENAI_REPLY)] * 2)
    p = OpenAIProvider("gpt-4o-mini", api_key=OPENAI_KEY, client=rec.client(), rate_limiter=limiter)
    messages = [Message(role="user", content="word " * 40)]
    cost = get_counter().count_messages(messages) + 10
    p.complete(messages, max_tokens=10)
    p.complete(messages, max_tokens=10)
    # The second call owes what the first took beyond the bucket's 100 tokens.
    assert clock.slept == pytest.approx([(2 * cost - 100) / (100 / 60)])


def test_bad_limits() -> None:
    with pytest.raises(UsageError):
        RateLimiter(requests_per_minute=0)
