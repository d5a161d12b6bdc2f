"""Tool-call units, found online one message at a time: the one grouping every strategy uses.

A *unit* is what a strategy keeps, drops or folds whole: a tool-calling assistant message plus
all its results, or any other single message. The rules match `ctxlab.invariants`: a tool
result belongs to the latest tool-calling assistant message before it; a unit is complete once
every call has a result; a tool-calling message followed by another one before all its results
arrived is broken for good, and so are its results and any tool result without its call (a
second result for a call already answered included). Broken units are never sent (their text
may still go into a summary); the newest unit may still be *open* (waiting for results) and is
not sent either.

Because units are built strictly from the messages seen so far, every decision made from them
at prefix k depends only on ``messages[:k]``: what makes a replay equal to pruning each prefix.
`UnitTracker` walks messages one at a time (`summarize`, `importance`); `sendable_ends` runs it
over a whole conversation once and says, for every message, from which prefix on it can be sent
(the window strategies answer every prefix from that).
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

from ctxlab.messages import Message

__all__ = ["NEVER", "Unit", "UnitTracker", "sendable_ends", "units_of"]

UnitState = Literal["open", "ok", "bad"]
NEVER = 1 << 62  # unit end of a message that can never be sent
ORPHAN = "tool result without its call"


class Unit:
    """One unit: its member indices (ascending), state and token cost.

    A plain class with slots: a tracker makes one per message, so it has to be cheap.

    Attributes:
        members: message indices, ascending (the calling message first).
        cost: tokens of the members (what sending the unit costs).
        state: ``open`` (results pending), ``ok`` (sendable) or ``bad`` (never sendable).
        pending: call ids still without a result.
    """

    __slots__ = ("cost", "members", "pending", "state")

    def __init__(
        self,
        members: list[int],
        cost: int,
        state: UnitState = "ok",
        pending: AbstractSet[str] = frozenset(),
    ) -> None:
        self.members = members
        self.cost = cost
        self.state: UnitState = state
        self.pending = pending

    @property
    def start(self) -> int:
        """Index of the first member."""
        return self.members[0]

    @property
    def end(self) -> int:
        """Index of the last member."""
        return self.members[-1]

    def clone(self) -> Unit:
        """An independent copy (for forking a running state)."""
        return Unit(list(self.members), self.cost, self.state, self.pending)

    def __repr__(self) -> str:
        return f"Unit(members={self.members}, cost={self.cost}, state={self.state!r})"


class UnitTracker:
    """Groups messages into units as they arrive.

    Attributes:
        owner: the unit of the latest tool-calling assistant message, or None.
        last: the unit of the message added last, or None.
        bad_reason: why a message can never be sent, for the messages of broken units.
    """

    def __init__(self) -> None:
        self.owner: Unit | None = None
        self.last: Unit | None = None
        self.bad_reason: dict[int, str] = {}

    def add(self, i: int, message: Message, cost: int) -> list[Unit]:
        """Take message `i` (the next one); return the units this closed (complete or broken)."""
        if message.role == "assistant" and message.tool_calls:
            return self._add_caller(i, message, cost)
        owner = self.owner
        if message.role == "tool":
            if (
                owner is not None
                and owner.state == "open"
                and message.tool_call_id in owner.pending
            ):
                owner.members.append(i)
                owner.cost += cost
                owner.pending = owner.pending - {str(message.tool_call_id)}
                self.last = owner
                if owner.pending:
                    return []
                owner.state = "ok"
                return [owner]
            self.bad_reason[i] = ORPHAN
            return [self._new(i, cost, "bad")]
        return [self._new(i, cost, "ok")]

    def _add_caller(self, i: int, message: Message, cost: int) -> list[Unit]:
        closed = []
        previous = self.owner
        if previous is not None and previous.state == "open":
            previous.state = "bad"
            previous.pending = frozenset()
            for j in previous.members:
                self.bad_reason[j] = (
                    "tool call without all its results"
                    if j == previous.start
                    else "its tool call lacks other results"
                )
            closed.append(previous)
        unit = self._new(i, cost, "open")
        unit.pending = frozenset(c.id for c in message.tool_calls)
        self.owner = unit
        return closed

    def _new(self, i: int, cost: int, state: UnitState) -> Unit:
        unit = Unit(members=[i], cost=cost, state=state)
        self.last = unit
        return unit

    def open_members(self) -> tuple[int, ...]:
        """Members of the unit still waiting for results (never sent at this prefix)."""
        owner = self.owner
        return tuple(owner.members) if owner is not None and owner.state == "open" else ()

    def fork(self) -> UnitTracker:
        """A copy that shares no mutable state (closed units never change, so they are shared)."""
        out = UnitTracker()
        owner = self.owner
        out.owner = owner.clone() if owner is not None and owner.state == "open" else owner
        out.last = out.owner if self.last is owner else self.last
        out.bad_reason = dict(self.bad_reason)
        return out


def units_of(messages: Sequence[Message], counts: Sequence[int]) -> tuple[list[Unit], UnitTracker]:
    """All units of a message list in order of their first member, and the tracker."""
    tracker = UnitTracker()
    units: list[Unit] = []
    for i, (m, c) in enumerate(zip(messages, counts, strict=True)):
        tracker.add(i, m, c)
        unit = tracker.last
        if unit is not None and unit.start == i:
            units.append(unit)
    return units, tracker


@dataclass(frozen=True, kw_only=True, eq=False)
class Sendable:
    """When each message of a conversation can be sent, from `sendable_ends`.

    Attributes:
        end: per message, the index of the last member of its unit when the unit is complete
            by the end of the conversation (the message can be sent in prefix k when
            ``end < k``), else `NEVER`.
        orphans: tool results without their call.
        units: the complete tool-call units (those with results), in order.
    """

    end: list[int]
    orphans: frozenset[int]
    units: list[Unit]


def sendable_ends(messages: Sequence[Message]) -> Sendable:
    """Group a whole conversation into units once (no token counts needed)."""
    tracker = UnitTracker()
    end = list(range(len(messages)))
    units: list[Unit] = []
    for i, m in enumerate(messages):
        # Other messages are units of their own and leave the tracker's state as it is.
        if m.role == "tool" or (m.role == "assistant" and m.tool_calls):
            tracker.add(i, m, 0)
            if tracker.last is not None and tracker.last.start == i:
                units.append(tracker.last)
    complete = []
    for unit in units:
        if unit.state != "ok":
            for j in unit.members:
                end[j] = NEVER
        else:
            complete.append(unit)
            for j in unit.members:
                end[j] = unit.end
    orphans = frozenset(i for i, why in tracker.bad_reason.items() if why == ORPHAN)
    return Sendable(end=end, orphans=orphans, units=complete)
