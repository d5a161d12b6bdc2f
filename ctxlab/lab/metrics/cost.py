"""Cost metrics: what the requests of a replay send, and what they would be billed.

Every probe is one request: the pruned context of ``messages[:k]``. Running totals
(``cumulative_input_tokens``, ``cost_usd``, ``prefix_stability``) are NaN from the first probe
whose budget the strategy could not meet, since the bill from there on is unknown.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ctxlab.lab.metrics.base import NAN, Aggregate, Cell, Probe, ProbeMetric, Values
from ctxlab.messages import Message

__all__ = [
    "Compression",
    "CumulativeInputTokens",
    "ExtraInputTokens",
    "ExtraOutputTokens",
    "InputTokens",
    "PrefixStability",
    "shared_prefix_tokens",
]


class InputTokens(ProbeMetric):
    """``input_tokens``: tokens of the request sent at the probe, ``pruned.tokens``.

    That is Σ count(message) + reply priming by the run's counter, summaries and placeholders
    included.
    """

    name = "input_tokens"

    def value(self, cell: Cell, probe: Probe) -> float:
        """The pruned context's tokens."""
        assert probe.pruned is not None
        return float(probe.pruned.tokens)


class CumulativeInputTokens(ProbeMetric):
    """``cumulative_input_tokens``: Σ ``input_tokens`` over the probes up to this one.

    At a conversation's last probe it is the prompt-token bill of the whole conversation.
    """

    name = "cumulative_input_tokens"
    aggregate: ClassVar[Aggregate] = "last"

    def compute(self, cell: Cell) -> Values:
        """Running sum of the probes' tokens (NaN from the first failed probe on)."""
        sent = [NAN if p.pruned is None else float(p.pruned.tokens) for p in cell.probes]
        return {self.name: np.cumsum(sent).tolist()}


class ExtraInputTokens(ProbeMetric):
    """``extra_input_tokens``: prompt tokens of the strategy's own LLM calls at this probe.

    From ``pruned.extra_usage`` (all prompt buckets); 0 for strategies that call no LLM.
    A per-probe amount, not a running total: `Report.summary` gives its mean per probe and,
    as ``extra_input_tokens_total``, the sum over a conversation's probes averaged over
    conversations.
    """

    name = "extra_input_tokens"
    aggregate: ClassVar[Aggregate] = "total"

    def value(self, cell: Cell, probe: Probe) -> float:
        """Summarizer prompt tokens spent at this probe."""
        assert probe.pruned is not None
        return float(probe.pruned.extra_usage.total_input_tokens)


class ExtraOutputTokens(ProbeMetric):
    """``extra_output_tokens``: tokens the strategy's own LLM calls generated at this probe.

    Summarised like ``extra_input_tokens`` (``extra_output_tokens_total`` per conversation).
    """

    name = "extra_output_tokens"
    aggregate: ClassVar[Aggregate] = "total"

    def value(self, cell: Cell, probe: Probe) -> float:
        """Summarizer output tokens spent at this probe."""
        assert probe.pruned is not None
        return float(probe.pruned.extra_usage.output_tokens)


class Compression(ProbeMetric):
    """``compression``: ``1 - tokens_after / tokens_before`` at the probe.

    ``tokens_before`` is the request holding the whole prefix, ``tokens_after`` the pruned one
    (both with reply priming). 0 when nothing is removed; negative when a strategy adds more
    than it removes.
    """

    name = "compression"

    def value(self, cell: Cell, probe: Probe) -> float:
        """Share of the prefix's tokens removed."""
        assert probe.pruned is not None
        return 1.0 - probe.pruned.tokens / probe.tokens_before


class PrefixStability(ProbeMetric):
    """``prefix_stability``: Σ shared-prefix tokens / Σ context tokens over the probes so far.

    The shared prefix of a probe is the longest common token prefix of its context and the
    previous probe's context (0 at the first probe), so the ratio is the share of prompt
    tokens a provider's prompt cache could reuse. Contexts are compared as token sequences in
    which a message is ⟨start⟩ role ⟨sep⟩ content [⟨name⟩ name] [call names and arguments]
    ⟨end⟩, the layout `TokenCounter.count` bills (reply priming is not part of the prefix).
    """

    name = "prefix_stability"
    aggregate: ClassVar[Aggregate] = "last"

    def compute(self, cell: Cell) -> Values:
        """Running ratio of shared to sent tokens (NaN from the first failed probe on)."""
        shared = np.cumsum(shared_prefix_tokens(cell))
        sent = np.cumsum([NAN if p.pruned is None else p.pruned.tokens for p in cell.probes])
        with np.errstate(invalid="ignore", divide="ignore"):
            return {self.name: (shared / sent).tolist()}


def shared_prefix_tokens(cell: Cell) -> list[float]:
    """Per probe, tokens its context shares as a prefix with the previous sent context.

    The first probe shares nothing; a probe after one whose budget failed compares with the
    last context actually sent; a failed probe itself is NaN.
    """
    return cell.memo("cost.shared_prefix", _shared_prefix)


def _shared_prefix(cell: Cell) -> list[float]:
    # The same pair of contexts recurs at several budgets: measure each pair once.
    known: dict[Any, int] = cell.facts.memo("cost.shared_prefix", lambda _: {})
    out: list[float] = []
    previous: Probe | None = None
    for probe in cell.probes:
        if probe.pruned is None:
            out.append(NAN)
            continue
        if previous is None:
            out.append(0.0)
        else:
            key = (previous.context_key, probe.context_key)
            if key not in known:
                known[key] = _common_prefix(previous, probe, cell)
            out.append(float(known[key]))
        previous = probe
    return out


def _common_prefix(prev: Probe, cur: Probe, cell: Cell) -> int:
    """Tokens of the longest common prefix of two probes' contexts."""
    assert prev.pruned is not None and cur.pruned is not None
    a, b, counts = prev.order, cur.order, cell.facts.counts
    counter = cell.facts.counter
    end = min(len(a), len(b))
    total, j = 0, 0
    while j < end:
        # The same original message at the same place: compare whole runs at once.
        same = (a[j:end] == b[j:end]) & (a[j:end] >= 0)
        run = end - j if same.all() else int(np.argmin(same))
        total += int(counts[a[j : j + run]].sum())
        j += run
        if j == end:
            break
        x, y = prev.pruned.messages[j], cur.pruned.messages[j]
        if not (x is y or _same(x, y)):
            return total + _partial(x, y, cell)
        total += counter.count(x)
        j += 1
    return total


def _same(x: Message, y: Message) -> bool:
    return (x.role, x.content, x.name, x.tool_calls) == (y.role, y.content, y.name, y.tool_calls)


def _partial(x: Message, y: Message, cell: Cell) -> int:
    """Common leading tokens of two different messages (0 for counters that cannot encode)."""
    encode = getattr(cell.facts.counter, "encode", None)
    if encode is None:
        return 0
    # Rewritten messages recur across probes and budgets: encode each one once.
    cache: dict[tuple[Any, ...], npt.NDArray[np.int64]] = cell.facts.memo(
        "cost.sequences", lambda _: {}
    )
    sx, sy = (_cached_sequence(m, encode, cache) for m in (x, y))
    n = min(len(sx), len(sy))
    differ = np.flatnonzero(sx[:n] != sy[:n])
    return int(differ[0]) if len(differ) else n


def _cached_sequence(
    m: Message, encode: Any, cache: dict[tuple[Any, ...], npt.NDArray[np.int64]]
) -> npt.NDArray[np.int64]:
    key = (m.role, m.content, m.name, m.tool_calls)
    found = cache.get(key)
    if found is None:
        found = cache[key] = np.asarray(_sequence(m, encode), dtype=np.int64)
    return found


def _sequence(m: Message, encode: Any) -> list[int]:
    """The token layout `TokenCounter.count` bills, with negative ids for the markers."""
    seq = [-1, *encode(m.role), -2, *encode(m.text)]
    if m.name:
        seq += [-4, *encode(m.name)]
    for call in m.tool_calls:
        seq += [*encode(call.name), *encode(call.arguments)]
    seq.append(-3)
    return seq
