"""What the requests of a replay are billed, with and without the provider's prompt cache.

``cost_usd`` is the plain bill; ``cost_usd_cached`` the bill as the provider's cache computes
it (`ctxlab.providers.prompt_cache`: OpenAI's automatic prefixes or Anthropic's breakpoints,
chosen by the model, with a cache lifetime measured on the messages' timestamps);
``cached_input_tokens`` and ``cache_write_tokens`` are each request's tokens in those buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ctxlab.lab.metrics.base import NAN, Aggregate, Cell, Probe, ProbeMetric, Values
from ctxlab.lab.metrics.cost import shared_prefix_tokens
from ctxlab.usage import Usage

__all__ = ["CacheTokens", "CostUsd", "cache_bills"]


@dataclass(frozen=True)
class CostUsd(ProbeMetric):
    """``cost_usd``: dollars billed for the conversation up to and including this probe.

    Each probe request is billed at `model`'s prices: its ``input_tokens`` at the input price;
    the strategy's own LLM calls (``extra_usage``, input and output) are billed at
    `summarizer_model`'s prices, which default to `model`'s. The chat model's reply is the
    same under every strategy and is not counted. NaN when no model is given or the price
    table does not know one of the two models.

    ``cost_usd_cached`` is the same bill when the provider's prompt cache serves what it can
    (`ctxlab.providers.prompt_cache`, where the published rules and their sources are
    quoted). The cache model follows the model's provider:

    - OpenAI (automatic prefix caching): a request reads the prefix it shares with the
      previous request from the cache when that prefix has at least 1,024 tokens, counted in
      128-token steps; reads at the table's cached-input price (half the input price for
      gpt-4o), no write fee.
    - Anthropic (breakpoints): each request marks the end of its prompt and the end of the
      prefix it shares with the previous request; it reads the longest earlier breakpoint
      still alive inside its shared prefix (0.1× the input price) and writes the rest of its
      prompt (1.25× for the 5-minute lifetime, 2× for one hour); prefixes below the model's
      minimum cacheable length (1,024 tokens for Claude Sonnet 4.5) are neither read nor
      written.
    - A cached prefix expires `cache_ttl` seconds after its last use (default 300 s, both
      providers' default). The time of a request is the newest timestamp of its messages
      when every message has one (LoCoMo's sessions are days apart: every session starts
      cold); otherwise requests are taken as back to back.

    Attributes:
        model: the model whose prices apply to the requests, e.g. ``gpt-4o``.
        summarizer_model: the model whose prices apply to the strategy's own calls, e.g.
            ``gpt-4o-mini`` when a cheaper model summarizes; None: `model`.
        cache_ttl: cache lifetime in seconds; None: the provider's default (5 minutes).
    """

    model: str | None = None
    summarizer_model: str | None = None
    cache_ttl: float | None = None
    name: ClassVar[str] = "cost_usd"
    aggregate: ClassVar[Aggregate] = "last"

    @property
    def columns(self) -> tuple[str, ...]:
        """``cost_usd`` and ``cost_usd_cached``."""
        return ("cost_usd", "cost_usd_cached")

    def compute(self, cell: Cell) -> Values:
        """Running dollar totals without and with the prompt cache."""
        extra_model = self.summarizer_model or self.model
        pricing = _pricing(self.model)
        nan = [NAN] * len(cell.probes)
        if self.model is None or extra_model is None or not (pricing and _pricing(extra_model)):
            return {"cost_usd": nan, "cost_usd_cached": nan}
        bills = cache_bills(cell, self.model, self.cache_ttl)
        plain, cached = [], []
        for probe, bill in zip(cell.probes, bills, strict=True):
            if probe.pruned is None or bill is None:
                plain.append(NAN)
                cached.append(NAN)
                continue
            own = float(pricing.cost_usd(probe.pruned.extra_usage, extra_model))
            request = Usage(input_tokens=probe.pruned.tokens)
            plain.append(float(pricing.cost_usd(request, self.model)) + own)
            cached.append(bill.usd + own)
        return {
            "cost_usd": np.cumsum(plain).tolist(),
            "cost_usd_cached": np.cumsum(cached).tolist(),
        }


@dataclass(frozen=True)
class CacheTokens(ProbeMetric):
    """``cached_input_tokens`` and ``cache_write_tokens`` of the request at each probe.

    The tokens the provider's prompt cache reads and writes for the request, by the cache
    model `CostUsd` describes (NaN without a priced model). Per-probe amounts: a report sums
    them per conversation.

    Attributes:
        model: the model whose cache rules apply, e.g. ``claude-sonnet-4-5``.
        cache_ttl: cache lifetime in seconds; None: the provider's default.
    """

    model: str | None = None
    cache_ttl: float | None = None
    name: ClassVar[str] = "cache_tokens"
    aggregate: ClassVar[Aggregate] = "total"

    @property
    def columns(self) -> tuple[str, ...]:
        """``cached_input_tokens`` and ``cache_write_tokens``."""
        return ("cached_input_tokens", "cache_write_tokens")

    def compute(self, cell: Cell) -> Values:
        """Per-probe read and written tokens."""
        if self.model is None or _pricing(self.model) is None:
            nan = [NAN] * len(cell.probes)
            return {"cached_input_tokens": nan, "cache_write_tokens": nan}
        bills = cache_bills(cell, self.model, self.cache_ttl)
        return {
            "cached_input_tokens": [
                NAN if b is None else float(b.cached_input_tokens) for b in bills
            ],
            "cache_write_tokens": [
                NAN if b is None else float(b.cache_write_tokens) for b in bills
            ],
        }


def cache_bills(cell: Cell, model: str, ttl: float | None) -> list[Any]:
    """Per probe, the `RequestBill` of its request under `model`'s cache (None: not sent)."""
    return cell.memo(f"billing.{model}.{ttl}", lambda c: _bills(c, model, ttl))


def _bills(cell: Cell, model: str, ttl: float | None) -> list[Any]:
    from ctxlab.providers.prompt_cache import bill_requests, cache_rules

    rules = cache_rules(model, ttl_s=ttl)
    assert rules is not None
    sent = [i for i, p in enumerate(cell.probes) if p.pruned is not None]
    shared = shared_prefix_tokens(cell)
    tokens = [_tokens(cell.probes[i]) for i in sent]
    times = _times(cell)
    bill = bill_requests(
        rules,
        tokens,
        [int(shared[i]) for i in sent],
        None if times is None else [times[i] for i in sent],
        priming=cell.facts.priming,
    )
    out: list[Any] = [None] * len(cell.probes)
    for i, request in zip(sent, bill.requests, strict=True):
        out[i] = request
    return out


def _tokens(probe: Probe) -> int:
    assert probe.pruned is not None
    return probe.pruned.tokens


def _times(cell: Cell) -> list[float] | None:
    """Seconds of each probe's request: its prefix's newest timestamp (None: no timestamps)."""
    stamps = cell.facts.memo("billing.stamps", _running_newest)
    if stamps is None:
        return None
    return [stamps[max(0, p.k - 1)] if stamps else 0.0 for p in cell.probes]


def _running_newest(facts: Any) -> list[float] | None:
    msgs = facts.conversation.messages
    if not msgs or any(m.timestamp is None for m in msgs):
        return None
    out = np.maximum.accumulate([m.timestamp.timestamp() for m in msgs])
    return [float(t) for t in out]


def _pricing(model: str | None) -> Any:
    """The pricing module when `model` has a price, else None (cost is then NaN)."""
    if model is None:
        return None
    try:
        from ctxlab.providers import pricing
    except ImportError:
        return None
    return pricing if pricing.lookup(model) is not None else None
