"""`importance`: keep the highest-scoring messages that fit the budget, in their original order.

Every message gets a score from a `Scorer` (by default a mix of recency, BM25 relevance to the
newest user message, key-string density and role, see `ctxlab.scoring.default_scorer`). Units
(a tool-calling assistant message with all its results, or any other single message) score the
maximum of their members and are taken best first, skipping those that no longer fit, then
sent in conversation order.

A replay scores every prefix from statistics gathered once for the whole conversation
(`ctxlab.scoring.prefix_scores`: per-message scores, BM25 term frequencies) instead of scoring
each prefix from scratch; the scores are the same numbers, so replay and prune agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError
from ctxlab.invariants import must_keep
from ctxlab.messages import Conversation, Message
from ctxlab.scoring import Pins, PrefixScores, Scorer, default_scorer, prefix_scores
from ctxlab.strategies._branches import History, per_budget
from ctxlab.strategies._chunked import check_shares
from ctxlab.strategies._chunked_units import Shares, chunked_walk
from ctxlab.strategies._layout import prefix_of, share_of
from ctxlab.strategies._tool_units import Unit, UnitTracker, units_of
from ctxlab.strategies.base import Action, BaseStrategy, Decision, Pruned
from ctxlab.tokens import TokenCounter

__all__ = ["Importance"]

_REPLY_PRIMING = 3


@dataclass(frozen=True, kw_only=True)
class Importance(BaseStrategy):
    """The best-scoring units that fit the budget, in original order.

    Guarantees:
        - at most ``budget.available`` tokens;
        - the first system message and the newest user message are always sent verbatim;
          explicitly pinned messages (`pin_ids`, `pin`) are sent whenever they fit next to
          those two, before anything chosen by score;
        - a tool call is kept or dropped together with all its results; calls still waiting
          for results, and results without their call, are never sent;
        - every decision carries the score that decided it (its unit's score; ``inf`` for
          pinned messages);
        - chunked eviction (`ctxlab.strategies._chunked_units`): with ``target < trigger`` the
          units chosen at a cut stay, and newer units join them, while the request fits
          ``trigger`` × the budget; then the units are chosen afresh for ``target`` × the
          budget. Between cuts the sent prefix only grows, and the decisions say whether a
          message was chosen at the last cut or is newer (they carry no score).

    Attributes:
        scorer: scores every message (higher is kept first).
        pin_ids: ids of messages to keep whenever the budget allows.
        pin: keeps every message for which it returns True, whenever the budget allows.
        trigger: share of the budget at which the units are chosen afresh, in (0, 1].
        target: share of the budget they are chosen for, in (0, trigger]; None: trigger
            (no chunks: every request is chosen for ``trigger`` × the budget).
    """

    name: ClassVar[str] = "importance"

    scorer: Scorer = field(default_factory=default_scorer)
    pin_ids: tuple[str, ...] = ()
    pin: Callable[[Message], bool] | None = None
    trigger: float = 1.0
    target: float | None = None

    def __post_init__(self) -> None:
        check_shares(self.name, self.trigger, self.target)

    @property
    def chunked(self) -> bool:
        """True when units are chosen in chunks (``target < trigger``)."""
        return self.target is not None and self.target < self.trigger

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        if self.chunked:
            return next(self._replay(conversation, [len(conversation.messages)], budget, counter))
        scores = self._prefix_scores(conversation, counter)(len(conversation.messages))
        return self._choose(conversation, budget, counter, scores)

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        # Scores of every prefix from one set of statistics (no BM25 index per prefix).
        scores = self._prefix_scores(conversation, counter)
        if self.chunked:
            yield from self._chunks(conversation, probes, budget, counter, scores)
            return
        for k in probes:
            yield self._choose(prefix_of(conversation, k), budget, counter, scores(k))

    def branches(
        self,
        conversation: Conversation,
        extras: Sequence[Message],
        budgets: Sequence[Budget],
        counter: TokenCounter,
    ) -> Iterator[list[Pruned | None]]:
        """For each extra message x, ``prune(conversation + x)`` at each budget (None: unmet).

        The history's counts and tool units are computed once; each request is scored once
        for all its budgets.
        """
        if self.chunked:
            for extra in extras:
                conv = conversation.with_messages((*conversation.messages, extra))
                yield per_budget(budgets, lambda b: self._prune(conv, b, counter))  # noqa: B023
            return
        history = History(conversation, counter)
        for extra in extras:
            request = history.branch(extra)
            conv = request.conversation
            scores = self._prefix_scores(conv, counter)(len(conv.messages))
            grouped = (request.counts, request.units, request.tracker)
            ranked = _Ranked(conv, counter, scores, grouped)
            yield per_budget(
                budgets,
                lambda b: ranked.fill(b, self.label, self.trigger),  # noqa: B023
            )

    def _chunks(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
        scores: PrefixScores,
    ) -> Iterator[Pruned]:
        def cut(prefix: Conversation, b: Budget, share: float) -> tuple[Pruned, set[int]]:
            ranked = _Ranked(prefix, counter, scores(len(prefix.messages)), None)
            chosen, used = ranked.chosen(b, share)
            return ranked.pruned(chosen, used, b, self.label), {u.start for u in chosen}

        assert self.target is not None
        shares = Shares(trigger=self.trigger, target=self.target)
        yield from chunked_walk(conversation, probes, budget, counter, shares, cut, self.label)

    def _choose(
        self,
        conversation: Conversation,
        budget: Budget,
        counter: TokenCounter,
        scores: list[float],
        grouped: tuple[list[int], list[Unit], UnitTracker] | None = None,
    ) -> Pruned:
        ranked = _Ranked(conversation, counter, scores, grouped)
        return ranked.fill(budget, self.label, self.trigger)

    def _prefix_scores(self, conversation: Conversation, counter: TokenCounter) -> PrefixScores:
        scores = prefix_scores(self.scorer, conversation, counter)
        if not self.pin_ids and self.pin is None:
            return scores
        pins = Pins(ids=frozenset(self.pin_ids), predicate=self.pin).score(conversation, counter)
        return lambda n: [max(s, p) for s, p in zip(scores(n), pins[:n], strict=True)]


class _Ranked:
    """One request's units ranked once, to be filled at any budget."""

    def __init__(
        self,
        conversation: Conversation,
        counter: TokenCounter,
        scores: list[float],
        grouped: tuple[list[int], list[Unit], UnitTracker] | None,
    ) -> None:
        msgs = self.msgs = conversation.messages
        self.conversation = conversation
        if grouped is None:
            counts = counter.count_many(msgs)
            units, tracker = units_of(msgs, counts)
        else:
            counts, units, tracker = grouped
        self.units = units
        self.forced = list(must_keep(msgs).indices)
        self.required = _REPLY_PRIMING + sum(counts[i] for i in self.forced)
        self.unit_score = {
            id(u): scores[u.start] if len(u.members) == 1 else max(scores[i] for i in u.members)
            for u in units
        }
        sendable = [u for u in units if u.state == "ok"]
        self.pinned = [u for u in sendable if u.start in self.forced]
        self.order = [u for u in sendable if u.start not in self.forced]
        # By score, ties newer first: the order units are taken in, whatever the budget.
        self.order.sort(key=lambda u: (-self.unit_score[id(u)], -u.start))
        self.reasons = dict(tracker.bad_reason)
        self.reasons.update(dict.fromkeys(tracker.open_members(), "tool call awaiting its results"))

    def chosen(self, budget: Budget, share: float = 1.0) -> tuple[list[Unit], int]:
        """Forced units first, then by score, each if it still fits ``share`` × the budget.

        Returns the chosen units and the tokens of the units not forced.

        Raises:
            BudgetUnreachableError: the forced messages alone exceed the budget.
        """
        if self.required > budget.available:
            raise BudgetUnreachableError(
                self.required, budget.available, "first system + newest user"
            )
        room = max(0, share_of(budget, share) - self.required)
        chosen, used = list(self.pinned), 0
        for unit in self.order:
            if used + unit.cost <= room:
                chosen.append(unit)
                used += unit.cost
        return chosen, used

    def fill(self, budget: Budget, label: str, share: float = 1.0) -> Pruned:
        """The `Pruned` of `chosen`: forced units first, then by score, each if it fits."""
        chosen, used = self.chosen(budget, share)
        return self.pruned(chosen, used, budget, label)

    def pruned(self, chosen: list[Unit], used: int, budget: Budget, label: str) -> Pruned:
        """The `Pruned` that sends the `chosen` units (`used`: tokens beyond the forced)."""
        kept = sorted(i for u in chosen for i in u.members)
        msgs, units, score, forced = self.msgs, self.units, self.unit_score, self.forced
        reasons = self.reasons
        return Pruned(
            conversation=self.conversation,
            messages=tuple(msgs[i] for i in kept),
            tokens=self.required + used,
            budget=budget,
            strategy=label,
            decide=lambda: _decisions(msgs, units, chosen, score, forced, reasons),
        )


def _decisions(
    msgs: tuple[Message, ...],
    units: list[Unit],
    chosen: list[Unit],
    unit_score: dict[int, float],
    forced: list[int],
    reasons: dict[int, str],
) -> list[Decision]:
    kept = {id(u) for u in chosen}
    unit_at: dict[int, Unit] = {i: u for u in units for i in u.members}
    out = []
    action: Action
    for i, m in enumerate(msgs):
        unit = unit_at[i]
        score = unit_score[id(unit)]
        if i in forced:
            why = "pinned: system" if m.role == "system" else "pinned: newest user message"
            action = "kept"
        elif i in reasons:
            why, action = reasons[i], "dropped"
        elif id(unit) in kept:
            why = "pinned" if math.isinf(score) else "high score"
            action = "kept"
        else:
            why = "pinned, but no room left" if math.isinf(score) else "score too low for the room"
            action = "dropped"
        out.append(Decision(index=i, message_id=m.id, action=action, reason=why, score=score))
    return out
