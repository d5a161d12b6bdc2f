"""`token_window`: the pinned messages plus the longest run of newest messages that fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.strategies._window import Layout, Selection, WindowStrategy

__all__ = ["TokenWindow"]


@dataclass(frozen=True, kw_only=True)
class TokenWindow(WindowStrategy):
    """Keep the first system message, the newest user message and the newest messages that fit.

    - The result is the pinned messages plus one contiguous run of the newest messages: the
      longest run whose tokens fit beside the pinned ones. Messages are never changed.
    - A tool call and its results are kept or dropped together; the run starts after a unit
      rather than inside it.
    - Raises `BudgetUnreachableError` when, and only when, the first system message and the
      newest user message alone exceed the budget.
    - Cost: one `prune` counts only the pinned messages and the newest ones, back to the first
      that does not fit (a cold trim of a long conversation to a small budget tokenizes little
      of it). A replay counts every message once (cached) and answers each prefix with a binary
      search over prefix sums, so a replay of n prefixes is O(n log n) plus the output.
    """

    name: ClassVar[str] = "token_window"

    def _select(self, layout: Layout, k: int, budget: Budget) -> Selection:
        pins, room = layout.required(k, budget)
        opened = tuple(layout.open_members(k))
        start = layout.fit_suffix(k, room, 0, (*pins, *opened))
        return Selection(
            layout=layout,
            k=k,
            pins=pins,
            ranges=((start, k, "newest messages that fit"),),
            drop_reason="older than the window that fits the budget",
            open=opened,
        )
