"""`sliding_window`: the last N messages (or turns), pinned messages kept, within the budget."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.strategies._window import Layout, Selection, WindowStrategy

__all__ = ["SlidingWindow"]

DEFAULT_MESSAGES = 20


@dataclass(frozen=True, kw_only=True)
class SlidingWindow(WindowStrategy):
    """Keep the last `max_messages` messages, or the last `max_turns` user turns.

    A turn starts at a user message that is not a tool output. With neither parameter set, the
    window is the last 20 messages; setting both is an error.

    - The first system message and the newest user message are always kept, outside the count.
    - A tool call and its results are kept whole: a window that would start inside a unit
      starts after it (the window never holds more than `max_messages` messages).
    - The budget still holds: when the window does not fit, its oldest messages are dropped
      until it does (the result is then what `token_window` would keep inside the window).
    - Raises `BudgetUnreachableError` when, and only when, the first system message and the
      newest user message alone exceed the budget.
    """

    name: ClassVar[str] = "sliding_window"
    max_messages: int | None = None
    max_turns: int | None = None

    def __post_init__(self) -> None:
        if self.max_messages is not None and self.max_turns is not None:
            raise UsageError("sliding_window takes max_messages or max_turns, not both")
        for field_name in ("max_messages", "max_turns"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise UsageError(f"sliding_window {field_name} must be >= 1, got {value!r}")

    def _window_start(self, layout: Layout, k: int) -> int:
        if self.max_turns is None:
            return max(0, k - (self.max_messages or DEFAULT_MESSAGES))
        seen = bisect.bisect_left(layout.users, k)  # user turns inside the prefix
        return layout.users[seen - self.max_turns] if seen >= self.max_turns else 0

    def _select(self, layout: Layout, k: int, budget: Budget) -> Selection:
        pins, room = layout.required(k, budget)
        opened = tuple(layout.open_members(k))
        start = layout.fit_suffix(k, room, self._window_start(layout, k), (*pins, *opened))
        return Selection(
            layout=layout,
            k=k,
            pins=pins,
            ranges=((start, k, "inside the sliding window"),),
            drop_reason="outside the sliding window or the budget",
            open=opened,
        )
