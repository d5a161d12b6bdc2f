"""`head_tail`: the opening messages (the task) plus the newest messages that still fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.strategies._window import Layout, Selection, WindowStrategy

__all__ = ["HeadTail"]


@dataclass(frozen=True, kw_only=True)
class HeadTail(WindowStrategy):
    """Keep the first `head` messages after the system message, then fill the rest from the end.

    - The first system message and the newest user message are always kept.
    - The head (the task statement, usually) comes first: it is the first `head` messages other
      than the first system message, widened to whole tool-call units; if it does not fit, its
      longest leading part that fits is kept.
    - The tail is the longest run of newest messages that fits beside the head.
    - A tool call and its results are kept or dropped together.
    - Raises `BudgetUnreachableError` when, and only when, the first system message and the
      newest user message alone exceed the budget.

    Attributes:
        head: how many messages after the first system message to keep from the start (the
            task statement, usually), at least 0.
    """

    name: ClassVar[str] = "head_tail"
    head: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.head, bool) or self.head < 0:
            raise UsageError(f"head_tail head must be >= 0, got {self.head!r}")

    def _head_stop(self, layout: Layout, k: int) -> int:
        stop = self.head + (1 if 0 <= layout.system < self.head + 1 else 0)
        stop = min(stop, k) if self.head else 0
        while stop < k and not layout.valid_cut(stop, k):
            stop += 1  # widen to the end of a tool-call unit
        return stop

    def _select(self, layout: Layout, k: int, budget: Budget) -> Selection:
        pins, room = layout.required(k, budget)
        opened = tuple(layout.open_members(k))
        skip = (*pins, *opened)
        head_stop = layout.fit_prefix(0, self._head_stop(layout, k), k, room, skip)
        room -= layout.cost(0, head_stop, skip)
        start = layout.fit_suffix(k, room, head_stop, skip)
        return Selection(
            layout=layout,
            k=k,
            pins=pins,
            ranges=((0, head_stop, "head"), (start, k, "tail: newest messages that fit")),
            drop_reason="between the head and the tail",
            open=opened,
        )
