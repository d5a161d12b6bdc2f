"""`keep_all`: the baseline that sends everything it can and ignores the budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.invariants import check
from ctxlab.messages import Conversation
from ctxlab.strategies._window import Layout, Selection, WindowStrategy
from ctxlab.strategies.base import Pruned
from ctxlab.tokens import TokenCounter

__all__ = ["KeepAll"]


@dataclass(frozen=True, kw_only=True)
class KeepAll(WindowStrategy):
    """Send the whole conversation: the baseline every other strategy is compared with.

    - Every message is sent verbatim, in order; the budget is ignored (reports mark
      ``budget_ok = False`` where the result is over it) and `BudgetUnreachableError` is never
      raised.
    - The only messages left out are those no provider accepts: a tool call whose results are
      not all there yet (a prefix ending mid-call) and a tool result without its call.
    """

    name: ClassVar[str] = "keep_all"
    enforces_budget: ClassVar[bool] = False

    def _select(self, layout: Layout, k: int, budget: Budget) -> Selection:
        return Selection(
            layout=layout,
            k=k,
            pins=layout.pins(k),
            ranges=((0, k, "keep_all keeps everything"),),
            drop_reason="",
            open=tuple(layout.open_members(k)),
        )

    def _check(
        self, original: Conversation, pruned: Pruned, budget: Budget, counter: TokenCounter
    ) -> None:
        check(original, pruned, budget, counter, enforce_budget=False)
