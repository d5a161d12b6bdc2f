"""`sliding_window`: the last N messages (or turns), pinned messages kept, within the budget."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import ClassVar

from ctxlab.errors import UsageError
from ctxlab.strategies._chunked import ChunkedWindow, check_shares
from ctxlab.strategies._layout import Layout

__all__ = ["SlidingWindow"]

DEFAULT_MESSAGES = 20


@dataclass(frozen=True, kw_only=True)
class SlidingWindow(ChunkedWindow):
    """Keep the last `max_messages` messages, or the last `max_turns` user turns.

    A turn starts at a user message that is not a tool output. With neither parameter set, the
    window is the last 20 messages; setting both is an error.

    - The first system message and the newest user message are always kept, outside the count.
    - A tool call and its results are kept whole: a window that would start inside a unit
      starts after it (the window never holds more than `max_messages` messages).
    - The budget still holds: when the window does not fit, its oldest messages are dropped
      until it does (the result is then what `token_window` would keep inside the window).
    - Chunked eviction (`ctxlab.strategies._chunked`): with ``target < trigger`` the window
      start stays put while the request fits ``trigger`` × the budget and holds at most
      ``trigger`` × the message (turn) limit; then it is cut once, down to ``target`` × both.
    - Raises `BudgetUnreachableError` when, and only when, the first system message and the
      newest user message alone exceed the budget.

    Attributes:
        max_messages: how many of the newest messages the window holds (None: 20, unless
            `max_turns` is set).
        max_turns: how many of the newest user turns the window holds instead (None: count
            messages).
        trigger: share of the budget (and of the limit) at which the window is cut, in (0, 1].
        target: share the window is cut down to, in (0, trigger]; None: trigger (no chunks).
    """

    name: ClassVar[str] = "sliding_window"
    max_messages: int | None = None
    max_turns: int | None = None
    trigger: float = 1.0
    target: float | None = None
    _kept_reason: ClassVar[str] = "inside the sliding window"
    _drop_reason: ClassVar[str] = "outside the sliding window or the budget"

    def __post_init__(self) -> None:
        check_shares(self.name, self.trigger, self.target)
        if self.max_messages is not None and self.max_turns is not None:
            raise UsageError("sliding_window takes max_messages or max_turns, not both")
        for field_name in ("max_messages", "max_turns"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise UsageError(f"sliding_window {field_name} must be >= 1, got {value!r}")

    def _lower(self, layout: Layout, k: int, share: float) -> int:
        if self.max_turns is None:
            return max(0, k - _scaled(self.max_messages or DEFAULT_MESSAGES, share))
        turns = _scaled(self.max_turns, share)
        seen = bisect.bisect_left(layout.users, k)  # user turns inside the prefix
        return layout.users[seen - turns] if seen >= turns else 0


def _scaled(limit: int, share: float) -> int:
    """``share`` × a message or turn limit, rounded down, at least 1."""
    return limit if share >= 1.0 else max(1, int(limit * share))
