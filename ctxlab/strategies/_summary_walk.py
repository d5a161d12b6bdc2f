"""The walk behind `summarize`: one conversation, one message at a time, folding as it goes.

`Walk` holds the running state (units not folded yet, the summary, fold numbers) and gives the
`Pruned` of the prefix seen so far; `Resumer` shares one walk between conversations that
extend each other (a pipeline's successive inputs). See `ctxlab.strategies.summarize` for what
the strategy guarantees.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._compose import decision
from ctxlab.strategies._layout import prefix_of
from ctxlab.strategies._tool_units import Unit, UnitTracker
from ctxlab.strategies.base import Decision, Pruned
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

if TYPE_CHECKING:
    from ctxlab.strategies.summarize import Summarize

__all__ = ["SUMMARY_HEADER", "Resumer", "Walk"]

#: First line of every summary message.
SUMMARY_HEADER = "Summary of the earlier conversation:\n"
_REPLY_PRIMING = 3
_MIN_SUMMARY_TOKENS = 8  # below this a summary says nothing: fold without one


class Walk:
    """The running state of one conversation under a `Summarize` strategy.

    Closed units are never changed once made, so `fork` copies only the lists and the open
    unit; the summary message is built when a result needs it, not at every fold.
    """

    def __init__(
        self, strategy: Summarize, conv: Conversation, budget: Budget, counter: TokenCounter
    ) -> None:
        self.s, self.conv, self.budget, self.counter = strategy, conv, budget, counter
        self.msgs = conv.messages
        avail = budget.available
        self.avail = avail
        self.trigger = int(strategy.trigger * avail)
        self.target = int(strategy.target * avail)
        self.header = counter.count(Message(role=strategy.role, content=SUMMARY_HEADER))
        cap = int(strategy.summary_share * avail)
        self.cap = cap if cap - self.header >= _MIN_SUMMARY_TOKENS else 0
        self.k = 0
        self.system: int | None = None
        self.user: int | None = None
        self.tracker = UnitTracker()
        self.unfolded: list[Unit] = []  # closed units not folded yet
        self.live = 0  # tokens of the sendable unfolded messages (pins included)
        self.fold_no: list[int] = []  # per message seen: the fold that took it, 0 if none
        self.folds = 0
        self.lost = 0  # folds up to this number lost their content (no room for a summary)
        self.covered: list[int] = []  # indices of the messages the summary covers
        self.text: str | None = None
        self.summary_cost = 0
        self.versions = 0
        self._summary: Message | None = None  # built from text on demand
        self.notes: list[str] = []
        self.usage = Usage()  # calls since the last result
        self.total_usage = Usage()  # calls since the start

    def fork(self) -> Walk:
        """An independent copy of this state (what comes next may differ between the two)."""
        out = copy.copy(self)
        out.tracker = self.tracker.fork()
        out.unfolded = list(self.unfolded)
        out.fold_no = list(self.fold_no)
        out.covered = list(self.covered)
        out.notes = list(self.notes)
        return out

    def rebase(self, conv: Conversation) -> None:
        """Continue on `conv`, whose first `k` messages are the ones seen so far."""
        self.conv, self.msgs = conv, conv.messages

    # -- stepping ----------------------------------------------------------------------------

    def advance(self, k: int) -> None:
        """Take messages until `k` have been seen, folding where needed."""
        while self.k < k:
            self._take()
            if self._tokens() > self.trigger:
                self._fold()

    def _take(self) -> None:
        i, m = self.k, self.msgs[self.k]
        self.k += 1
        self.fold_no.append(0)
        if m.role == "system" and self.system is None:
            self.system = i
        if m.is_user_turn:
            self.user = i
        for unit in self.tracker.add(i, m, self.counter.count(m)):
            if unit.state == "ok":
                self.live += unit.cost
            self.unfolded.append(unit)

    def _tokens(self) -> int:
        return _REPLY_PRIMING + self.live + (self.summary_cost if self.text is not None else 0)

    def _fold(self) -> None:
        chosen = self._choose()
        if chosen:
            self._apply(chosen)
        if self._tokens() > self.avail and self.text is not None:
            self._shrink()

    def _choose(self) -> list[Unit]:
        """Units to fold now: oldest first, down to the target (past `keep_last` if needed)."""
        pins = {self.system, self.user}
        cands = sorted(
            (u for u in self.unfolded if not pins.intersection(u.members)), key=lambda u: u.start
        )
        live, chosen = self.live, []
        tail = self.k - self.s.keep_last

        def estimate() -> int:
            return _REPLY_PRIMING + live + self.cap

        for unit in cands:
            if estimate() <= self.target:
                break
            if unit.end < tail:
                chosen.append(unit)
                live -= unit.cost if unit.state == "ok" else 0
        if estimate() > self.avail:  # keep_last cannot be honoured within the budget
            taken = {id(u) for u in chosen}
            for unit in cands:
                if estimate() <= self.avail:
                    break
                if id(unit) not in taken:
                    chosen.append(unit)
                    live -= unit.cost if unit.state == "ok" else 0
        return sorted(chosen, key=lambda u: u.start)

    def _apply(self, chosen: list[Unit]) -> None:
        self.folds += 1
        members: list[int] = []
        for unit in chosen:
            if unit.state == "ok":
                self.live -= unit.cost
            members.extend(unit.members)
        folded = {id(u) for u in chosen}
        self.unfolded = [u for u in self.unfolded if id(u) not in folded]
        members.sort()
        for i in members:
            self.fold_no[i] = self.folds
        if not self.cap:
            self._lose()
            return
        self.covered.extend(members)
        self._summarize([self.msgs[i] for i in members], self.cap - self.header)

    def _shrink(self) -> None:
        """Re-compact the summary into the room left, or give it up."""
        room = self.avail - _REPLY_PRIMING - self.live - self.header
        if room >= _MIN_SUMMARY_TOKENS:
            self._summarize([], room)
            if self._tokens() <= self.avail:
                return
        self._lose()

    def _summarize(self, new: list[Message], max_tokens: int) -> None:
        result = self.s.summarizer.summarize(self.text, new, max_tokens, self.counter)
        self.usage = self.usage + result.usage
        self.total_usage = self.total_usage + result.usage
        if result.note:
            self.notes.append(result.note)
        if not result.text.strip():
            self._lose()
            return
        self.text = result.text
        self.versions += 1
        self._summary = None
        # The count depends on role and content only: no need to build the real message yet.
        probe = Message(role=self.s.role, content=SUMMARY_HEADER + result.text, id="summary")
        self.summary_cost = self.counter.count(probe)

    def summary(self) -> Message | None:
        """The summary message as it stands, or None."""
        if self.text is None:
            return None
        if self._summary is None:
            self._summary = self._message(self.text)
        return self._summary

    def _message(self, text: str) -> Message:
        covered = tuple(self.msgs[i].id for i in sorted(self.covered))
        # Deterministic, so that a replay and a prune of the same prefix name it the same.
        seed = f"{self.conv.id}\x00{self.versions}\x00{covered[-1] if covered else ''}"
        digest = hashlib.sha1(seed.encode()).hexdigest()[:16]
        return Message(
            role=self.s.role,
            content=SUMMARY_HEADER + text,
            id=f"summary_{digest}",
            meta={"synthetic": True, "summary_of": covered},
        )

    def _lose(self) -> None:
        self.lost = self.folds
        self.covered = []
        self.text = self._summary = None
        self.summary_cost = 0

    # -- results -----------------------------------------------------------------------------

    def result(self, *, all_calls: bool = False) -> Pruned:
        """The `Pruned` of the prefix seen so far.

        Args:
            all_calls: report the summarizer calls since the start (what `prune` of this
                prefix reports) rather than those since the last result (a replay's probe).
        """
        k, msgs = self.k, self.msgs
        pinned = [i for i in (self.system, self.user) if i is not None]
        required = _REPLY_PRIMING + sum(self.counter.count(msgs[i]) for i in pinned)
        if required > self.avail:
            raise BudgetUnreachableError(required, self.avail, "first system + newest user")
        kept = sorted(i for u in self.unfolded if u.state == "ok" for i in u.members)
        out = [msgs[i] for i in kept]
        summary = self.summary()
        if summary is not None:
            at = kept.index(self.system) + 1 if self.system is not None else 0
            out.insert(at, summary)
        usage, self.usage = (self.total_usage if all_calls else self.usage), Usage()
        snapshot = _Snapshot(
            k=k,
            folds=self.folds,
            lost=self.lost,
            open=frozenset(self.tracker.open_members()),
            system=self.system,
            user=self.user,
            summary_id=summary.id if summary is not None else None,
            note="; ".join(dict.fromkeys(self.notes)),
        )
        fold_no, bad = self.fold_no, dict(self.tracker.bad_reason)
        return Pruned(
            conversation=prefix_of(self.conv, k),
            messages=tuple(out),
            tokens=self._tokens(),
            budget=self.budget,
            strategy=self.s.label,
            extra_usage=usage,
            decide=lambda: snapshot.decisions(msgs, fold_no, bad),
        )


class Resumer:
    """Prunes a series of conversations that mostly extend one another, sharing the walk.

    ``prune(conversation, stable)`` equals ``strategy.prune(conversation)``. The walk over the
    leading messages that `conversation` shares with the previous one is kept; `stable` says
    how many leading messages the caller expects to stay unchanged in the coming calls: the
    shared walk advances only that far, and the rest of each conversation is walked on a copy.
    A wrong guess costs time, never correctness: when a later conversation differs inside the
    shared part, the walk starts over.
    """

    def __init__(self, strategy: Summarize, budget: Budget, counter: TokenCounter) -> None:
        self.strategy, self.budget, self.counter = strategy, budget, counter
        self.base: Walk | None = None

    def prune(self, conversation: Conversation, stable: int) -> Pruned:
        """``strategy.prune(conversation)``, reusing the walk over the shared leading part."""
        msgs, base = conversation.messages, self.base
        if base is None or msgs[: base.k] != base.msgs[: base.k]:
            base = self.base = Walk(self.strategy, conversation, self.budget, self.counter)
        base.rebase(conversation)
        base.advance(max(base.k, min(stable, len(msgs))))
        run = base if base.k == len(msgs) else base.fork()
        run.advance(len(msgs))
        return run.result(all_calls=True)


@dataclass(frozen=True, kw_only=True)
class _Snapshot:
    """What the decisions of one result need, frozen at the time of the result."""

    k: int
    folds: int
    lost: int
    open: frozenset[int]
    system: int | None
    user: int | None
    summary_id: str | None
    note: str

    def decisions(
        self, msgs: Sequence[Message], fold_no: Sequence[int], bad: dict[int, str]
    ) -> list[Decision]:
        return [self._decide(i, msgs[i].id, fold_no[i], bad.get(i)) for i in range(self.k)]

    def _decide(self, i: int, mid: str, fold: int, bad: str | None) -> Decision:
        if i == self.system:
            return decision(i, mid, "kept", "pinned: system")
        if i == self.user:
            return decision(i, mid, "kept", "pinned: newest user message")
        if 0 < fold <= self.folds:
            if fold > self.lost and self.summary_id is not None:
                why = "folded into the summary" + (f" ({self.note})" if self.note else "")
                return decision(i, mid, "summarized", why, None, self.summary_id)
            return decision(i, mid, "dropped", "folded when no summary fitted the budget")
        if i in self.open:
            return decision(i, mid, "dropped", "tool call awaiting its results")
        if bad is not None and i < self.k:
            return decision(i, mid, "dropped", bad)
        why = "newer than the summary" if self.summary_id else "fits the budget"
        return decision(i, mid, "kept", why)
