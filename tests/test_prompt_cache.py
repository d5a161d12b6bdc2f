"""The prompt-cache bill: three hand-built requests under OpenAI's and Anthropic's cache rules,
with and without a cache lifetime running out, against numbers worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ctxlab import Conversation, Message, compare, datasets, get_counter
from ctxlab.errors import UsageError
from ctxlab.lab.metrics import CacheTokens, CostUsd
from ctxlab.providers.prompt_cache import bill_requests, cache_rules

# Request 1: a 1,497-token prompt (+3 reply priming). Request 2 repeats all of it and adds
# 903 tokens. Request 3 follows a window cut: it shares only 1,100 tokens with request 2.
TOKENS = [1500, 2403, 1803]
SHARED = [0, 1497, 1100]


def bills(model: str, times: list[float] | None = None, ttl: float | None = None):
    rules = cache_rules(model, ttl_s=ttl)
    assert rules is not None
    return bill_requests(rules, TOKENS, SHARED, times).requests


def test_openai_reads_shared_prefixes_in_128_token_steps() -> None:
    # gpt-4o: $2.50 input, $1.25 cached input per million tokens; no write fee
    r = bills("gpt-4o")
    assert [b.cached_input_tokens for b in r] == [0, 1408, 1024]  # 11 x 128, 8 x 128
    assert [b.cache_write_tokens for b in r] == [0, 0, 0]
    assert [b.input_tokens for b in r] == [1500, 995, 779]
    expected = [1500 * 2.5e-6, 995 * 2.5e-6 + 1408 * 1.25e-6, 779 * 2.5e-6 + 1024 * 1.25e-6]
    assert [b.usd for b in r] == pytest.approx(expected, rel=1e-12)
    assert sum(b.usd for b in r) == pytest.approx(0.00375 + 0.0042475 + 0.0032275)


def test_anthropic_writes_at_breakpoints_and_reads_only_what_was_marked() -> None:
    # claude-sonnet-4-5: $3 input, $3.75 5-minute write, $0.30 read per million; minimum 1,024
    r = bills("claude-sonnet-4-5")
    # 1: writes its 1,497-token prompt; 2: reads it, writes 903 more; 3: its 1,100 shared
    # tokens end at no breakpoint, so it reads nothing and writes its 1,800-token prompt
    assert [b.cached_input_tokens for b in r] == [0, 1497, 0]
    assert [b.cache_write_tokens for b in r] == [1497, 903, 1800]
    assert [b.input_tokens for b in r] == [3, 3, 3]
    expected = [0.00562275, 0.00384435, 0.006759]
    assert [b.usd for b in r] == pytest.approx(expected, rel=1e-9)


def test_an_expired_cache_is_written_again() -> None:
    times = [0.0, 400.0, 460.0]  # 400 s pass before request 2; request 3 follows 60 s later
    gpt = bills("gpt-4o", times)
    assert [b.cached_input_tokens for b in gpt] == [0, 0, 1024]
    assert [b.usd for b in gpt] == pytest.approx([0.00375, 0.0060075, 0.0032275], rel=1e-9)
    claude = bills("claude-sonnet-4-5", times)
    assert [b.cached_input_tokens for b in claude] == [0, 0, 0]
    assert [b.cache_write_tokens for b in claude] == [1497, 2400, 1800]
    assert [b.usd for b in claude] == pytest.approx([0.00562275, 0.009009, 0.006759], rel=1e-9)
    # a one-hour lifetime keeps request 1's prefix, and writes cost 2x the input price
    hour = bills("claude-sonnet-4-5", times, ttl=3600)
    assert [b.cached_input_tokens for b in hour] == [0, 1497, 0]
    assert [b.usd for b in hour] == pytest.approx([0.008991, 0.0058761, 0.010809], rel=1e-9)


def test_minimum_cacheable_length_follows_the_model() -> None:
    assert cache_rules("claude-haiku-4-5").min_tokens == 4096  # type: ignore[union-attr]
    assert cache_rules("claude-sonnet-4-5").min_tokens == 1024  # type: ignore[union-attr]
    assert cache_rules("gpt-4o").step == 128  # type: ignore[union-attr]
    # under Haiku 4.5's 4,096-token minimum nothing is cached
    haiku = cache_rules("claude-haiku-4-5")
    assert haiku is not None
    r = bill_requests(haiku, TOKENS, SHARED).requests
    assert [b.cache_write_tokens + b.cached_input_tokens for b in r] == [0, 0, 0]
    with pytest.raises(UsageError, match="at most one hour"):
        cache_rules("claude-sonnet-4-5", ttl_s=7200)
    with pytest.raises(UsageError, match="positive"):
        cache_rules("gpt-4o", ttl_s=0)


def _conversation(gap: timedelta) -> Conversation:
    """Three requests' worth of chat: a long system prompt, then two user turns `gap` apart."""
    start = datetime(2024, 5, 1, 12, 0)
    system = "You are a careful assistant. " + " ".join(f"rule {i}: be exact." for i in range(300))
    msgs = [
        Message(role="system", content=system, id="s", timestamp=start),
        Message(role="user", content="hello " * 50, id="u1", timestamp=start),
        Message(role="assistant", content="hi " * 50, id="a1", timestamp=start),
        Message(role="user", content="more " * 50, id="u2", timestamp=start + gap),
        Message(role="assistant", content="ok " * 50, id="a2", timestamp=start + gap),
    ]
    return Conversation(id=f"c{int(gap.total_seconds())}", messages=tuple(msgs))


@pytest.mark.parametrize("gap", [timedelta(seconds=30), timedelta(days=2)])
def test_report_columns_follow_the_timestamps(gap: timedelta) -> None:
    conv = _conversation(gap)
    metrics = [CostUsd(model="gpt-4o"), CacheTokens(model="gpt-4o"), "input_tokens"]
    df = compare(conv, ["keep_all"], [10**6], metrics=metrics, probes=[2, 4], progress=False).df
    counter = get_counter()
    first = counter.count_messages(conv.messages[:2]) - 3  # request 2 repeats request 1
    assert df["input_tokens"].tolist() == [first + 3, counter.count_messages(conv.messages[:4])]
    hit = first // 128 * 128 if gap.total_seconds() <= 300 else 0
    assert df["cached_input_tokens"].tolist() == [0, hit]
    assert df["cache_write_tokens"].tolist() == [0, 0]
    plain = df["input_tokens"] * 2.5e-6
    assert df["cost_usd"].tolist() == pytest.approx(plain.cumsum().tolist())
    assert df["cost_usd_cached"].iloc[-1] == pytest.approx(plain.sum() - hit * 1.25e-6)


def test_locomo_sessions_days_apart_start_cold() -> None:
    conv = datasets.load("locomo")[0]
    metrics = [CacheTokens(model="claude-sonnet-4-5"), "input_tokens"]
    df = compare(conv, ["keep_all"], [10**6], metrics=metrics, probes="sessions", progress=False).df
    # every session is days after the one before: no request reads the cache
    assert (df["cached_input_tokens"] == 0).all()
    # and every request past Sonnet 4.5's 1,024-token minimum writes its whole prompt
    long = df["input_tokens"] - 3 >= 1024
    assert long.sum() >= len(df) - 1
    assert (df.loc[long, "cache_write_tokens"] == df.loc[long, "input_tokens"] - 3).all()
