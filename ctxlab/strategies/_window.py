"""The window strategies' base: a `Selection` of each prefix, answered from one `Layout`.

A window strategy answers a prefix with a `Selection` (pinned messages plus ranges of sendable
messages), which builds the messages and the decisions of the result only when asked. The
layout, its token counts and its units are in `ctxlab.strategies._layout`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ctxlab.budget import Budget
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._branches import per_budget
from ctxlab.strategies._layout import (
    NEVER,
    REPLY_PRIMING,
    Layout,
    LazyLayout,
    prefix_of,
    share_of,
)
from ctxlab.strategies.base import BaseStrategy, Decision, Pruned
from ctxlab.tokens import TokenCounter

__all__ = [
    "NEVER",
    "Layout",
    "LazyLayout",
    "Selection",
    "WindowStrategy",
    "prefix_of",
    "share_of",
]


@dataclass(kw_only=True, eq=False, slots=True)  # not frozen: made at every probe of a replay
class Selection:
    """Which messages of prefix k are sent: pinned ones plus ranges of sendable messages.

    Attributes:
        layout: the conversation's layout.
        k: the prefix length.
        pins: pinned indices, ascending.
        ranges: disjoint ascending ``(start, stop, reason)`` ranges; their sendable messages
            are kept.
        drop_reason: the reason given to messages outside every range.
        open: indices that belong to a unit still waiting for results at k.
    """

    layout: Layout
    k: int
    pins: tuple[int, ...]
    ranges: tuple[tuple[int, int, str], ...]
    drop_reason: str
    open: tuple[int, ...] = ()

    def _blocked(self, a: int, b: int) -> bool:
        lay = self.layout
        if lay.bad_cum[b] != lay.bad_cum[a]:
            return True
        return bool(self.open) and any(a <= j < b for j in self.open)

    def _range_messages(self, a: int, b: int) -> Sequence[Message]:
        msgs = self.layout.messages
        if not self._blocked(a, b):
            return msgs[a:b]
        closed, ends = set(self.open), self.layout.unit_end
        return [msgs[j] for j in range(a, b) if ends[j] != NEVER and j not in closed]

    def _outside(self) -> list[int]:
        return [p for p in self.pins if not any(a <= p < b for a, b, _ in self.ranges)]

    def messages(self) -> tuple[Message, ...]:
        """The messages to send, in original order."""
        msgs = self.layout.messages
        pins = self._outside()
        if len(self.ranges) == 1:  # the common shape: one run, pins before or after it
            a, b, _ = self.ranges[0]
            run = self._range_messages(a, b)
            if not pins:
                return tuple(run)
            before = [msgs[p] for p in pins if p < a]
            return (*before, *run, *(msgs[p] for p in pins[len(before) :]))
        out: list[Message] = []
        pi = 0
        for a, b, _ in self.ranges:
            while pi < len(pins) and pins[pi] < a:
                out.append(msgs[pins[pi]])
                pi += 1
            out.extend(self._range_messages(a, b))
        out.extend(msgs[p] for p in pins[pi:])
        return tuple(out)

    def tokens(self) -> int:
        """Tokens of `messages()`, from the cached counts (reply priming included)."""
        lay = self.layout
        skip = (*self.pins, *self.open)
        total = sum(lay.count(p) for p in self.pins) + REPLY_PRIMING
        return total + sum(lay.cost(a, b, skip) for a, b, _ in self.ranges)

    def decisions(self) -> list[Decision]:
        """One decision per message of the prefix.

        Built from the layout's rows of decisions (`Layout.row`), sliced: a replay asks for
        the decisions of every probe, and most of them are the same objects each time.
        """
        lay, k = self.layout, self.k
        out = lay.row("dropped", self.drop_reason)[:k]
        for a, b, why in self.ranges:
            out[a:b] = lay.row("kept", why)[a:b]
        for i in lay.never_below(k):
            out[i] = lay.unsendable(i)
        for i in self.open:
            out[i] = lay.unsendable(i)
        for i in self.pins:
            out[i] = lay.pinned(i)
        return out

    def pruned(self, conv: Conversation, budget: Budget, label: str) -> Pruned:
        """The `Pruned` of this selection; decisions are built on first access."""
        return Pruned(
            conversation=prefix_of(conv, self.k),
            messages=self.messages(),
            tokens=self.tokens(),
            budget=budget,
            strategy=label,
            decide=self.decisions,
        )


class WindowStrategy(BaseStrategy):
    """Base of the strategies that answer every prefix from one `Layout`.

    Subclasses implement `_select`; `prune` builds a lazy layout of the conversation (counting
    only the messages the selection looks at), `replay` builds one for the whole conversation
    with every message counted once and selects each probe from it; both select the same way.
    """

    def _select(self, layout: Layout, k: int, budget: Budget) -> Selection:
        raise NotImplementedError

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        layout = LazyLayout(conversation.messages, counter)
        selection = self._select(layout, len(layout), budget)
        return selection.pruned(conversation, budget, self.label)

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        layout = Layout(conversation.messages, counter)
        label = self.label
        for k in probes:
            yield self._select(layout, k, budget).pruned(conversation, budget, label)

    def branches(
        self,
        conversation: Conversation,
        extras: Sequence[Message],
        budgets: Sequence[Budget],
        counter: TokenCounter,
    ) -> Iterator[list[Pruned | None]]:
        """For each extra message x, ``prune(conversation + x)`` at each budget (None: unmet).

        The history is grouped and counted once; each request extends that layout.
        """
        history = Layout(conversation.messages, counter)
        label = self.label
        for extra in extras:
            conv = conversation.with_messages((*conversation.messages, extra))
            own = extra.role != "tool" and not extra.tool_calls
            layout = history.extended(extra) if own else Layout(conv.messages, counter)
            k = len(layout)
            yield per_budget(
                budgets,
                lambda b: self._select(layout, k, b).pruned(conv, b, label),  # noqa: B023
            )
