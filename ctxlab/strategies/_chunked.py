"""Chunked eviction for the window strategies: cut in chunks so the sent prefix stays stable.

A window strategy that cuts exactly to its budget moves the start of its window on almost every
request, so the prompt a provider could serve from its cache changes every time. With chunked
eviction a strategy takes two shares of the budget, `trigger` and `target` (as LangChain's
summarization middleware takes ``trigger``/``keep``, or Anthropic's context editing a trigger
and ``clear_at_least``): the window start stays where it is, and the request only grows at its
end, until the request would exceed ``trigger`` × the budget (or the strategy's own limit, e.g.
``sliding_window``'s message count scaled by `trigger`); then the window is cut once, down to
``target`` × the budget, and grows again from there.

The start at prefix k therefore depends on the starts of all shorter prefixes. It is defined
over every prefix ``messages[:j]``, j = 0..k (not only over the probes a replay asks for), so
``prune(messages[:k])`` and a replay reaching k walk the same states and agree. With
``target == trigger`` (the default, ``target=None``) there is no state: every prefix is cut to
``trigger`` × the budget, which at ``trigger=1.0`` is the strategies' plain behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Pruned
from ctxlab.strategies._branches import per_budget
from ctxlab.strategies._window import Layout, Selection, WindowStrategy
from ctxlab.tokens import TokenCounter

__all__ = ["ChunkedWindow", "check_shares"]


def check_shares(name: str, trigger: float, target: float | None) -> None:
    """Raise `UsageError` unless 0 < target <= trigger <= 1.

    Args:
        name: the strategy's registry name, for the message.
        trigger: share of the budget at which to cut.
        target: share of the budget to cut down to (None: `trigger`).
    """
    ok = isinstance(trigger, (int, float)) and not isinstance(trigger, bool)
    if not ok or not 0.0 < trigger <= 1.0:
        raise UsageError(f"{name} trigger must be a share of the budget in (0, 1], got {trigger!r}")
    if target is None:
        return
    ok = isinstance(target, (int, float)) and not isinstance(target, bool)
    if not ok or not 0.0 < target <= trigger:
        raise UsageError(
            f"{name} target must be a share of the budget in (0, trigger={trigger}], got {target!r}"
        )


class ChunkedWindow(WindowStrategy):
    """A window strategy whose one run of newest messages can be cut in chunks.

    Subclasses are dataclasses declaring ``trigger: float = 1.0`` and
    ``target: float | None = None``, set `_kept_reason` and `_drop_reason`, and may bound the
    window's start with `_lower`.
    """

    trigger: float
    target: float | None
    _kept_reason: ClassVar[str] = "newest messages that fit"
    _drop_reason: ClassVar[str] = "older than the window that fits the budget"

    @property
    def chunked(self) -> bool:
        """True when the window is cut in chunks (``target < trigger``)."""
        return self.target is not None and self.target < self.trigger

    def _lower(self, layout: Layout, k: int, share: float) -> int:
        """The earliest start the strategy allows at prefix k with ``share`` of its limits."""
        return 0

    def _selection(
        self, layout: Layout, k: int, pins: tuple[int, ...], start: int, opened: tuple[int, ...]
    ) -> Selection:
        return Selection(
            layout=layout,
            k=k,
            pins=pins,
            ranges=((start, k, self._kept_reason),),
            drop_reason=self._drop_reason,
            open=opened,
        )

    def _select(self, layout: Layout, k: int, budget: Budget) -> Selection:
        pins, room = layout.required(k, budget, self.trigger)
        opened = tuple(layout.open_members(k))
        lo = self._lower(layout, k, self.trigger)
        start = layout.fit_suffix(k, room, lo, (*pins, *opened))
        return self._selection(layout, k, pins, start, opened)

    def _walk(self, layout: Layout, budget: Budget) -> Iterator[Selection | None]:
        """The chunked selection of every prefix 0..n of the layout (None: budget unmet)."""
        assert self.target is not None
        start = 0
        for k in range(len(layout) + 1):
            try:
                pins, room = layout.required(k, budget, self.trigger)
            except BudgetUnreachableError:
                yield None
                continue
            opened = tuple(layout.open_members(k))
            skip = (*pins, *opened)
            if (
                start < self._lower(layout, k, self.trigger)
                or not layout.valid_cut(start, k)
                or layout.cost(start, k, skip) > room
            ):
                _, goal = layout.required(k, budget, self.target)
                lo = max(min(start, k), self._lower(layout, k, self.target))
                start = layout.fit_suffix(k, goal, lo, skip)
            yield self._selection(layout, k, pins, start, opened)

    def _chunked_at(
        self, conversation: Conversation, probes: Sequence[int], budget: Budget, layout: Layout
    ) -> Iterator[Pruned]:
        wanted, label = list(probes), self.label
        if not wanted:
            return
        pos = 0
        for k, selection in enumerate(self._walk(layout, budget)):
            while pos < len(wanted) and wanted[pos] == k:
                if selection is None:  # raise as prune does at this prefix
                    layout.required(k, budget)
                assert selection is not None
                yield selection.pruned(conversation, budget, label)
                pos += 1
            if pos == len(wanted):
                return

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        if not self.chunked:
            return super()._prune(conversation, budget, counter)
        layout = Layout(conversation.messages, counter)
        return next(self._chunked_at(conversation, [len(layout)], budget, layout))

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        if not self.chunked:
            yield from super()._replay(conversation, probes, budget, counter)
            return
        if not probes:
            return
        layout = Layout(conversation.messages, counter)
        yield from self._chunked_at(conversation, probes, budget, layout)

    def branches(
        self,
        conversation: Conversation,
        extras: Sequence[Message],
        budgets: Sequence[Budget],
        counter: TokenCounter,
    ) -> Iterator[list[Pruned | None]]:
        """For each extra message x, ``prune(conversation + x)`` at each budget (None: unmet)."""
        if not self.chunked:
            yield from super().branches(conversation, extras, budgets, counter)
            return
        for extra in extras:
            conv = conversation.with_messages((*conversation.messages, extra))
            yield per_budget(budgets, lambda b: self._prune(conv, b, counter))  # noqa: B023
