"""Chunked eviction for the strategies that choose units by rank (`importance`, `retrieve`).

`ctxlab.strategies._chunked` cuts a window of newest messages in chunks; a ranking strategy
has no window, so here the state kept between cuts is the set of units it chose. At a *cut*
(prefix c) the strategy chooses as it always does, but for ``target`` × the budget; at every
later prefix the request is that choice plus every unit that became sendable after c (new
messages, and tool calls whose results arrived), in conversation order, so the sent prefix
only grows, until it would exceed ``trigger`` × the budget: then the strategy cuts again.

The first system message and the newest user message are always in the request: a pinned
message older than c was pinned at c too, so the cut chose it; a newer one arrived after c.
Units only ever become sendable (a complete tool unit never breaks), so the request's cost
grows by the units completed at each message and is never recomputed.

The state at prefix k depends on every shorter prefix, so both ``prune(messages[:k])`` and a
replay walk every prefix 0..k the same way and agree (as the window strategies do).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Decision, Pruned
from ctxlab.strategies._layout import REPLY_PRIMING, prefix_of, share_of
from ctxlab.strategies._tool_units import Unit, UnitTracker
from ctxlab.tokens import TokenCounter

__all__ = ["Cut", "Shares", "chunked_walk"]

#: What a strategy does at a cut: its plain choice for the prefix at a share of the budget,
#: and the indices of the messages it sends (pinned ones included).
Cut = Callable[[Conversation, Budget, float], tuple[Pruned, Collection[int]]]


@dataclass(frozen=True, kw_only=True)
class Shares:
    """The two shares of the budget (see `ctxlab.strategies._chunked.check_shares`)."""

    trigger: float
    target: float


def chunked_walk(
    conversation: Conversation,
    probes: Sequence[int],
    budget: Budget,
    counter: TokenCounter,
    shares: Shares,
    cut: Cut,
    label: str,
) -> Iterator[Pruned]:
    """The chunked result of each probe, in order.

    Args:
        conversation: the whole conversation.
        probes: prefix lengths, non-decreasing.
        budget: the budget.
        counter: the token counter.
        shares: `trigger` and `target`.
        cut: the strategy's plain choice of a prefix at a share of the budget.
        label: the strategy's label, for the results.

    Raises:
        BudgetUnreachableError: at the first probe whose pinned messages exceed the budget
            (as `prune` of that prefix does).
    """
    wanted = list(probes)
    if not wanted:
        return
    walk = _Walk(conversation, counter, label)
    pos, limit = 0, share_of(budget, shares.trigger)

    def cutter(prefix: Conversation) -> tuple[Pruned, Collection[int]]:
        return cut(prefix, budget, shares.target)

    for k in range(wanted[-1] + 1):
        if k:
            walk.add(k - 1)
        result = walk.at(k, budget, limit, cutter)
        while pos < len(wanted) and wanted[pos] == k:
            if result is None:
                need = walk.required()
                raise BudgetUnreachableError(need, budget.available, "first system + newest user")
            yield result
            pos += 1


class _Walk:
    """The running state: sendable units so far, and those in the request since the last cut."""

    def __init__(self, conversation: Conversation, counter: TokenCounter, label: str) -> None:
        self.conversation = conversation
        self.msgs = conversation.messages
        self.counts = counter.count_many(self.msgs)
        self.label = label
        self.tracker = UnitTracker()
        self.ok: list[Unit] = []  # every sendable unit so far, by completion
        self.sent: list[Unit] = []  # the units of the request since the last cut
        self.cost = REPLY_PRIMING
        self.since = 0  # the prefix of the last cut
        self.system = -1
        self.user = -1

    def add(self, i: int) -> None:
        """Take message i: units it completes join the request."""
        m = self.msgs[i]
        if self.system < 0 and m.role == "system":
            self.system = i
        if m.is_user_turn:
            self.user = i
        for unit in self.tracker.add(i, m, self.counts[i]):
            if unit.state == "ok":
                self.ok.append(unit)
                self.sent.append(unit)
                self.cost += unit.cost

    def pins(self) -> list[int]:
        """The pinned indices of the prefix so far, ascending."""
        return sorted(i for i in (self.system, self.user) if i >= 0)

    def required(self) -> int:
        """Tokens of the pinned messages of the prefix so far, reply priming included."""
        return sum(self.counts[i] for i in self.pins()) + REPLY_PRIMING

    def at(
        self,
        k: int,
        budget: Budget,
        limit: int,
        cutter: Callable[[Conversation], tuple[Pruned, Collection[int]]],
    ) -> Pruned | None:
        """The result at prefix k: the grown request, or a new cut when it exceeds `limit`."""
        pins = self.pins()
        if self.required() > budget.available:
            return None
        if self.cost <= limit:
            return self._grown(k, budget, pins)
        pruned, kept = cutter(prefix_of(self.conversation, k))
        self.sent = [u for u in self.ok if u.start in kept]
        self.cost = REPLY_PRIMING + sum(u.cost for u in self.sent)
        self.since = k
        return pruned

    def _grown(self, k: int, budget: Budget, pins: list[int]) -> Pruned:
        kept = sorted(i for u in self.sent for i in u.members)
        reasons = dict(self.tracker.bad_reason)
        reasons.update(dict.fromkeys(self.tracker.open_members(), "tool call awaiting its results"))
        conv = prefix_of(self.conversation, k)
        since, label = self.since, self.label
        return Pruned(
            conversation=conv,
            messages=tuple(self.msgs[i] for i in kept),
            tokens=self.cost,
            budget=budget,
            strategy=label,
            decide=lambda: _decisions(conv.messages, set(kept), set(pins), reasons, since),
        )


def _decisions(
    msgs: Sequence[Message], kept: set[int], pins: set[int], reasons: dict[int, str], since: int
) -> list[Decision]:
    out = []
    for i, m in enumerate(msgs):
        if i in pins:
            why = "pinned: system" if m.role == "system" else "pinned: newest user message"
            out.append(Decision(index=i, message_id=m.id, action="kept", reason=why))
        elif i in reasons:
            out.append(Decision(index=i, message_id=m.id, action="dropped", reason=reasons[i]))
        elif i in kept:
            why = "chosen at the last cut" if i < since else "newer than the last cut"
            out.append(Decision(index=i, message_id=m.id, action="kept", reason=why))
        else:  # only older units are ever left out between cuts
            why = "not chosen at the last cut"
            out.append(Decision(index=i, message_id=m.id, action="dropped", reason=why))
    return out
