"""Tool-call units, found online one message at a time (used by `summarize` and `importance`).

A *unit* is what a strategy keeps, drops or folds whole: a tool-calling assistant message plus
all its results, or any other single message. The rules match `ctxlab.invariants`: a tool
result belongs to the latest tool-calling assistant message before it; a unit is complete once
every call has a result; a tool-calling message followed by another one before all its results
arrived is broken for good, and so are its results and any tool result without its call. Broken
units are never sent (their text may still go into a summary); the newest unit may still be
*open* (waiting for results) and is not sent either.

Because units are built strictly from the messages seen so far, every decision made from them
at prefix k depends only on ``messages[:k]``: what makes a replay equal to pruning each prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ctxlab.messages import Message

__all__ = ["Unit", "UnitTracker", "units_of"]

UnitState = Literal["open", "ok", "bad"]


@dataclass(eq=False)
class Unit:
    """One unit: its member indices (ascending), state and token cost.

    Attributes:
        members: message indices, ascending (the calling message first).
        cost: tokens of the members (what sending the unit costs).
        state: ``open`` (results pending), ``ok`` (sendable) or ``bad`` (never sendable).
        pending: call ids still without a result.
        folded: fold number when the unit was summarized, 0 if never (used by `summarize`).
    """

    members: list[int]
    cost: int
    state: UnitState = "ok"
    pending: set[str] = field(default_factory=set)
    folded: int = 0

    @property
    def start(self) -> int:
        """Index of the first member."""
        return self.members[0]

    @property
    def end(self) -> int:
        """Index of the last member."""
        return self.members[-1]


class UnitTracker:
    """Groups messages into units as they arrive.

    Attributes:
        owner: the unit of the latest tool-calling assistant message, or None.
        unit_of: for each message seen, its unit.
        bad_reason: why a message can never be sent, for the messages of broken units.
    """

    def __init__(self) -> None:
        self.owner: Unit | None = None
        self.unit_of: list[Unit] = []
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
                owner.pending.discard(str(message.tool_call_id))
                self.unit_of.append(owner)
                if owner.pending:
                    return []
                owner.state = "ok"
                return [owner]
            self.bad_reason[i] = "tool result without its call"
            return [self._new(i, cost, "bad")]
        return [self._new(i, cost, "ok")]

    def _add_caller(self, i: int, message: Message, cost: int) -> list[Unit]:
        closed = []
        previous = self.owner
        if previous is not None and previous.state == "open":
            previous.state = "bad"
            previous.pending.clear()
            for j in previous.members:
                self.bad_reason[j] = (
                    "tool call without all its results"
                    if j == previous.start
                    else "its tool call lacks other results"
                )
            closed.append(previous)
        unit = self._new(i, cost, "open")
        unit.pending = {c.id for c in message.tool_calls}
        self.owner = unit
        return closed

    def _new(self, i: int, cost: int, state: UnitState) -> Unit:
        unit = Unit(members=[i], cost=cost, state=state)
        self.unit_of.append(unit)
        return unit

    def open_members(self) -> tuple[int, ...]:
        """Members of the unit still waiting for results (never sent at this prefix)."""
        owner = self.owner
        return tuple(owner.members) if owner is not None and owner.state == "open" else ()


def units_of(messages: Sequence[Message], counts: Sequence[int]) -> tuple[list[Unit], UnitTracker]:
    """All units of a message list in order of their first member, and the tracker."""
    tracker = UnitTracker()
    seen: dict[int, Unit] = {}
    for i, (m, c) in enumerate(zip(messages, counts, strict=True)):
        tracker.add(i, m, c)
        unit = tracker.unit_of[i]
        seen.setdefault(id(unit), unit)
    return sorted(seen.values(), key=lambda u: u.start), tracker
