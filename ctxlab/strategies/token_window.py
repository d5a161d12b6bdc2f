"""`token_window`: the pinned messages plus the longest run of newest messages that fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ctxlab.strategies._chunked import ChunkedWindow, check_shares

__all__ = ["TokenWindow"]


@dataclass(frozen=True, kw_only=True)
class TokenWindow(ChunkedWindow):
    """Keep the first system message, the newest user message and the newest messages that fit.

    - The result is the pinned messages plus one contiguous run of the newest messages: the
      longest run whose tokens fit beside the pinned ones. Messages are never changed.
    - A tool call and its results are kept or dropped together; the run starts after a unit
      rather than inside it.
    - Chunked eviction (`ctxlab.strategies._chunked`): with ``target < trigger`` the run's
      start stays put while the request fits ``trigger`` × the budget, and is then cut once,
      down to ``target`` × the budget, so the sent prefix only grows between cuts.
    - Raises `BudgetUnreachableError` when, and only when, the first system message and the
      newest user message alone exceed the budget.
    - Cost: one `prune` counts only the pinned messages and the newest ones, back to the first
      that does not fit (a cold trim of a long conversation to a small budget tokenizes little
      of it). A replay counts every message once (cached) and answers each prefix with a binary
      search over prefix sums, so a replay of n prefixes is O(n log n) plus the output. Chunked,
      both walk every prefix once from prefix sums (O(n) plus one search per cut).

    Attributes:
        trigger: share of the budget at which the window is cut, in (0, 1].
        target: share of the budget the window is cut down to, in (0, trigger]; None: trigger
            (no chunks: every request is cut to ``trigger`` × the budget).
    """

    name: ClassVar[str] = "token_window"
    trigger: float = 1.0
    target: float | None = None

    def __post_init__(self) -> None:
        check_shares(self.name, self.trigger, self.target)
