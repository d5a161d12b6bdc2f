"""Many requests that share a history: the conversation plus one different newest message each.

A question probe asks each of a conversation's questions after the same history, so the
strategies that answer them from shared work (token counts, tool units, a retrieval index)
compute that work once here. `Branch` is one such request: the history's counts and units,
extended by the one new message, equal to what `units_of` and `count_many` give for the
whole request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Pruned
from ctxlab.strategies._tool_units import Unit, UnitTracker, units_of
from ctxlab.tokens import TokenCounter

__all__ = ["Branch", "History", "per_budget"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Branch:
    """One request: the shared history plus one new message, with counts and tool units."""

    conversation: Conversation
    counts: list[int]
    units: list[Unit]
    tracker: UnitTracker


class History:
    """Counts and tool units of a conversation, computed once, for requests that extend it."""

    def __init__(self, conversation: Conversation, counter: TokenCounter) -> None:
        self.conversation = conversation
        self.counter = counter
        self.counts = counter.count_many(conversation.messages)
        self.units, self.tracker = units_of(conversation.messages, self.counts)

    def branch(self, message: Message) -> Branch:
        """The history followed by `message`."""
        conv = self.conversation.with_messages((*self.conversation.messages, message))
        n = len(self.counts)
        cost = self.counter.count(message)
        if message.role == "tool" or message.tool_calls:
            # A tool message can change earlier units: group the whole request afresh.
            counts = [*self.counts, cost]
            units, tracker = units_of(conv.messages, counts)
            return Branch(conversation=conv, counts=counts, units=units, tracker=tracker)
        tracker = self.tracker.fork()
        tracker.add(n, message, cost)
        assert tracker.last is not None and tracker.last.start == n  # a unit of its own
        return Branch(
            conversation=conv,
            counts=[*self.counts, cost],
            units=[*self.units, tracker.last],
            tracker=tracker,
        )


def per_budget(
    budgets: Sequence[Budget], choose: Callable[[Budget], Pruned]
) -> list[Pruned | None]:
    """``choose(budget)`` for each budget, None where the budget cannot be met."""
    out: list[Pruned | None] = []
    for budget in budgets:
        try:
            out.append(choose(budget))
        except BudgetUnreachableError:
            out.append(None)
    return out
