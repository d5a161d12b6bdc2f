"""How a provider's prompt cache bills a sequence of requests: which tokens are read, written, paid.

Two families of cache, chosen from the model's provider in the pinned price table
(`ctxlab.providers.pricing`, the one source of prices; the rules below only say which bucket a
token falls in):

**OpenAI, automatic prefix caching** (OpenAI API docs, "Prompt caching",
https://platform.openai.com/docs/guides/prompt-caching): every prompt of 1,024 tokens or more
is cached without any marking; a request reads the longest cached prefix it shares with an
earlier prompt, counted in steps of 128 tokens from 1,024 on (1,024, 1,152, 1,280...); cached
prefixes are cleared after 5-10 minutes of inactivity (always within one hour); there is no
fee for writing. Read tokens are billed at the table's ``cached_input`` price.

**Anthropic, cache breakpoints** (Anthropic docs, "Prompt caching",
https://docs.claude.com/en/docs/build-with-claude/prompt-caching): the client marks breakpoints
with ``cache_control``; a request reads the longest prefix that ends at a breakpoint written by
an earlier request and still alive, writes the tokens from there to its own breakpoints, and
pays the input price for the rest. Writes cost 1.25× the input price for the default
5-minute lifetime and 2× for the 1-hour one; reads 0.1×; every hit refreshes the lifetime. A
prefix shorter than the model's minimum cacheable length is neither read nor written: 1,024
tokens for Claude Sonnet 4.5, Sonnet 4, Sonnet 3.7, Opus 4.1 and Opus 4; 2,048 for Haiku 3.5
and Haiku 3; 4,096 for Opus 4.5 and Haiku 4.5. ctxlab marks two breakpoints per request, as a
multi-turn client does: the end of the prompt (automatic caching places its breakpoint on the
last block) and the end of the prefix the request shares with the previous one (the part the
strategy kept stable). Reads and 5-minute writes use the table's ``cached_input`` and
``cache_write`` prices; 1-hour writes are 2× the table's input price.

**Lifetime.** A cached prefix expires ``ttl`` seconds after its last use (default: 5 minutes
for both families, the lower end of OpenAI's range and Anthropic's default). The time of a
request is the newest message timestamp of its prefix when every message has one; otherwise
requests are taken as back to back (no expiry).

Requests are described by their prompt tokens ``n`` (reply priming included), the tokens they
share as a prefix with the previous request ``shared`` (measured by `prefix_stability`) and a
time. Cached prefixes are tracked along the chain of requests: an entry of length L written at
request j is a prefix of request i while every request in between shares at least L tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ctxlab.errors import UsageError
from ctxlab.providers.pricing import ModelPrice, PriceTable, lookup

__all__ = ["CacheBill", "CacheRules", "RequestBill", "bill_requests", "cache_rules"]

Family = Literal["openai", "anthropic", "none"]

DEFAULT_TTL_S = 300.0
ONE_HOUR_S = 3600.0
ANTHROPIC_MIN_TOKENS: dict[str, int] = {
    "haiku-3": 2048,
    "haiku-3-5": 2048,
    "haiku-4-5": 4096,
    "opus-4-5": 4096,
    "opus-4-6": 4096,
}
ANTHROPIC_DEFAULT_MIN = 1024  # Sonnet 4.5, Sonnet 4, Sonnet 3.7, Opus 4.1, Opus 4


@dataclass(frozen=True, kw_only=True)
class CacheRules:
    """The prompt-cache rules of one model.

    Attributes:
        family: ``openai`` (automatic prefixes), ``anthropic`` (breakpoints) or ``none``.
        min_tokens: shortest prefix that is cached.
        step: granularity of a read (OpenAI: 128 tokens; Anthropic: 1, reads end at a breakpoint).
        ttl_s: seconds a cached prefix lives after its last use.
        read_price: USD per token read from the cache.
        write_price: USD per token written (0 for OpenAI).
        input_price: USD per prompt token neither read nor written.
    """

    family: Family
    min_tokens: int
    step: int
    ttl_s: float
    read_price: float
    write_price: float
    input_price: float


@dataclass(frozen=True, kw_only=True)
class RequestBill:
    """One request's prompt tokens by bucket (they add up to the request) and its dollars."""

    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    usd: float


@dataclass(frozen=True, kw_only=True)
class CacheBill:
    """The bills of a sequence of requests, in order."""

    requests: tuple[RequestBill, ...]

    @property
    def usd(self) -> float:
        """Total dollars of the prompts."""
        return sum(r.usd for r in self.requests)


def cache_rules(
    model: str, *, ttl_s: float | None = None, table: PriceTable | None = None
) -> CacheRules | None:
    """The cache rules of `model`, or None when the price table does not know it.

    Args:
        model: a model name of the price table, e.g. ``gpt-4o`` or ``claude-sonnet-4-5``.
        ttl_s: cache lifetime in seconds; None: the provider's default (5 minutes). For
            Anthropic models a lifetime over 5 minutes is billed as the 1-hour cache.
        table: a price table; default the pinned one.

    Raises:
        UsageError: `ttl_s` is not positive, or over one hour for an Anthropic model.
    """
    price = lookup(model, table)
    if price is None:
        return None
    ttl = DEFAULT_TTL_S if ttl_s is None else float(ttl_s)
    if not ttl > 0:
        raise UsageError(f"cache_ttl must be a positive number of seconds, got {ttl_s!r}")
    family = _family(model, price)
    if family == "anthropic":
        return _anthropic(model, price, ttl)
    if family == "openai":
        return CacheRules(
            family="openai", min_tokens=1024, step=128, ttl_s=ttl,
            read_price=_or(price.cached_input, price.input), write_price=0.0,
            input_price=price.input,
        )  # fmt: skip
    return CacheRules(
        family="none", min_tokens=1 << 62, step=1, ttl_s=ttl, read_price=price.input,
        write_price=0.0, input_price=price.input,
    )  # fmt: skip


def _family(model: str, price: ModelPrice) -> Family:
    provider = (price.provider or "").lower()
    name = model.lower()
    if provider == "anthropic" or "claude" in name:
        return "anthropic"
    if price.cached_input is not None and (provider in ("openai", "azure") or "gpt" in name):
        return "openai"
    return "none"


def _anthropic(model: str, price: ModelPrice, ttl: float) -> CacheRules:
    if ttl > ONE_HOUR_S:
        raise UsageError(f"Anthropic caches live at most one hour; cache_ttl={ttl:g} s")
    name = model.lower().replace(".", "-")
    minimum = next(
        (n for key, n in ANTHROPIC_MIN_TOKENS.items() if f"{key}" in name.replace("claude-", "")),
        ANTHROPIC_DEFAULT_MIN,
    )
    long_lived = ttl > DEFAULT_TTL_S
    write = 2.0 * price.input if long_lived else _or(price.cache_write, 1.25 * price.input)
    return CacheRules(
        family="anthropic", min_tokens=minimum, step=1, ttl_s=ttl,
        read_price=_or(price.cached_input, 0.1 * price.input), write_price=write,
        input_price=price.input,
    )  # fmt: skip


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def bill_requests(
    rules: CacheRules,
    tokens: Sequence[int],
    shared: Sequence[int],
    times: Sequence[float] | None = None,
    *,
    priming: int = 3,
) -> CacheBill:
    """Bill a sequence of requests under a provider's cache rules.

    Args:
        rules: from `cache_rules`.
        tokens: prompt tokens of each request (reply priming included).
        shared: tokens each request shares as a prefix with the previous one (0 for the first).
        times: seconds of each request (non-decreasing); None: back to back.
        priming: tokens at the end of every prompt that are never part of a shared prefix.

    Returns:
        One `RequestBill` per request.
    """
    if len(tokens) != len(shared) or (times is not None and len(times) != len(tokens)):
        raise UsageError("tokens, shared and times must have one entry per request")
    entries: dict[int, float] = {}  # cached prefix length -> last use
    out: list[RequestBill] = []
    last = -math.inf
    for i, (n, s) in enumerate(zip(tokens, shared, strict=True)):
        now = 0.0 if times is None else float(times[i])
        entries = {
            length: used
            for length, used in entries.items()
            if length <= s and now - used <= rules.ttl_s
        }
        read = _read(rules, entries, s, now - last)
        prompt = max(0, n - priming)
        write = 0
        if rules.family == "anthropic":
            for mark in (prompt, s):  # breakpoints: end of the prompt, end of the stable part
                if mark >= rules.min_tokens:
                    entries[mark] = now
            if prompt >= rules.min_tokens:
                write = prompt - read
        for length in list(entries):
            if length <= read:
                entries[length] = now  # a hit refreshes the lifetime
        plain = n - read - write
        usd = plain * rules.input_price + read * rules.read_price + write * rules.write_price
        out.append(
            RequestBill(
                input_tokens=plain, cached_input_tokens=read, cache_write_tokens=write, usd=usd
            )
        )
        last = now
    return CacheBill(requests=tuple(out))


def _read(rules: CacheRules, entries: dict[int, float], shared: int, gap: float) -> int:
    """Tokens the request reads from the cache."""
    if rules.family == "openai":
        # every prompt is cached, so the previous request last used the shared prefix
        if shared < rules.min_tokens or gap > rules.ttl_s:
            return 0
        return shared // rules.step * rules.step
    if rules.family == "anthropic":
        hits = [length for length in entries if length <= shared]
        return max(hits, default=0)
    return 0
