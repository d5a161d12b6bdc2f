"""Invariant breaches, measured rather than enforced: what a strategy's output gets wrong.

ctxlab's own strategies guarantee the rules of `ctxlab.invariants`; a strategy that wraps
another library may not. These columns count, at every probe, the rules broken by what the
strategy actually returned, recounted with the run's exact counter (never the strategy's own
``pruned.tokens``), and never repair anything. They measure the request: a strategy's
explanation of it (``pruned.decisions``) is checked by `ctxlab.invariants.check` (the invariant
tests, and every call with ``CTXLAB_DEBUG=1``), not here, so a replay never builds decisions
only to be measured.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ctxlab.invariants import KINDS, required_tokens, violations
from ctxlab.lab.metrics._clean import is_clean
from ctxlab.lab.metrics.base import NAN, Cell, Facts, Probe, ProbeMetric, Values

__all__ = ["Violations"]

#: The kinds with their own column (``budget_unreachable`` gives NaN rows instead).
COUNTED = tuple(k for k in KINDS if k != "budget_unreachable")


class Violations(ProbeMetric):
    """``violations``: rules of `ctxlab.invariants` the probe's context breaks, per kind too.

    - ``violations``: the number of breaches (`ctxlab.invariants.violations` with the probe's
      budget, ``decisions=False``): one per orphan tool result, per tool call sent without its
      result, per pinned message lost or changed, per message out of order or sent twice, per
      ``malformed`` message (a new id not marked synthetic, role or tool fields changed) or
      wrong ``pruned.tokens``, and one when the context exceeds the budget. ``keep_all``
      ignores budgets by design, so it shows ``over_budget``; every other ctxlab strategy
      shows 0.
    - ``violations_<kind>``: the same count for one kind (`ctxlab.invariants.KINDS`).
    - ``over_budget_tokens``: exact tokens of the context above ``budget.available``, 0 when
      within.

    NaN where the budget is unreachable: the strategy raised `BudgetUnreachableError`, or the
    must-keep messages alone need more than the budget (a strategy that returned anyway).
    """

    name = "violations"

    @property
    def columns(self) -> tuple[str, ...]:
        """``violations``, ``over_budget_tokens``, then one column per kind."""
        return ("violations", "over_budget_tokens", *(f"violations_{k}" for k in COUNTED))

    def compute(self, cell: Cell) -> Values:
        """Counts per probe; NaN where the budget is unreachable."""
        out: dict[str, list[float]] = {c: [] for c in self.columns}
        for probe in cell.probes:
            row = self._row(cell, probe)
            for column in self.columns:
                out[column].append(row.get(column, 0.0) if row else NAN)
        return out

    def _row(self, cell: Cell, probe: Probe) -> dict[str, float] | None:
        if probe.pruned is None:
            return None
        available = cell.budget.available
        if _required(cell.facts, probe) > available:
            return None
        kinds, tokens = _structure(cell.facts, cell.strategy, probe)
        over = max(0, tokens - available)
        counts = Counter(kinds)
        if over:
            counts["over_budget"] += 1
        row = {f"violations_{k}": float(n) for k, n in counts.items()}
        row["violations"] = float(sum(counts.values()))
        row["over_budget_tokens"] = float(over)
        return row


def _required(facts: Facts, probe: Probe) -> int:
    """Tokens of the probe's must-keep messages, once per prefix (and question)."""
    cache: dict[tuple[int, int | None], int] = facts.memo("violations_required", lambda _: {})
    key = (probe.k, probe.question)
    if key not in cache:
        assert probe.pruned is not None
        cache[key] = required_tokens(probe.pruned.conversation.messages, facts.counter)
    return cache[key]


def _structure(facts: Facts, strategy: str, probe: Probe) -> tuple[tuple[str, ...], int]:
    """Budget-free breach kinds and exact tokens of the context, once per distinct context."""
    cache: dict[object, tuple[tuple[str, ...], int]] = facts.memo(
        "violations_structure", lambda _: {}
    )
    # decisions and ids belong to the strategy, so contexts are shared only within one
    key = (strategy, probe.context_key)
    found = cache.get(key)
    if found is None:
        pruned = probe.pruned
        assert pruned is not None
        tokens = _tokens(facts, probe)
        if is_clean(facts, probe, tokens):
            found = cache[key] = ((), tokens)
        else:
            broken = violations(pruned.conversation, pruned, None, facts.counter, decisions=False)
            found = cache[key] = (tuple(v.kind for v in broken), tokens)
    return found


def _tokens(facts: Facts, probe: Probe) -> int:
    """``counter.count_messages`` of the context, from the conversation's cached counts."""
    order = probe.order
    count = facts.counter.count
    rest = sum(count(m) for _, m in probe.others)
    if probe.asked is not None and bool(np.any(order == -2)):
        rest += count(probe.asked)
    return int(facts.counts[order[order >= 0]].sum()) + rest + facts.priming
