"""`summarize`: fold the oldest turns into one running summary once the context gets too big.

The strategy walks the conversation one message at a time, as a live session would. After
each message it looks at the context it would send (first system message, the summary, every
message not folded yet); when that passes `trigger` × the budget, it folds the oldest units
(a tool call always with its results) into the summary until the context would be at most
`target` × the budget, leaving the last `keep_last` messages verbatim. The summary is then
*extended* by the summarizer with the newly folded messages, never rewritten from scratch.

Because the fold points depend only on the messages seen so far, ``prune(conversation)`` is the
state reached at the end of the conversation, and ``replay`` yields, at each probe, exactly what
``prune`` gives for that prefix, in one pass.

Where the summary goes: one message, right after the first system message (at the start when
there is none), with role ``user`` by default. A user-role summary is accepted by every chat API
(OpenAI, Anthropic, Gemini and local chat templates alike, which may reject a system message
after the first one), and it keeps text that came from users and tools out of the system
instructions' authority. ``role="system"`` is available for models that prefer it.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._tool_units import Unit, UnitTracker
from ctxlab.strategies._window import prefix_of
from ctxlab.strategies.base import BaseStrategy, Decision, Pruned
from ctxlab.summarizers import ExtractiveSummarizer, Summarizer
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

__all__ = ["SUMMARY_HEADER", "Resumer", "Summarize", "SummaryWindow"]

#: First line of every summary message.
SUMMARY_HEADER = "Summary of the earlier conversation:\n"
_REPLY_PRIMING = 3
_MIN_SUMMARY_TOKENS = 8  # below this a summary says nothing: fold without one


@dataclass(frozen=True, kw_only=True)
class Summarize(BaseStrategy):
    """Older turns folded into one running summary; recent turns verbatim.

    Guarantees:
        - at most ``budget.available`` tokens, the summary included (its summarizer's own
          tokens are reported in ``extra_usage``, at the probe where the calls were made);
        - the first system message and the newest user message are sent verbatim; the last
          `keep_last` messages too unless the budget cannot hold them;
        - a tool call is folded or kept together with all its results;
        - ``replay`` equals ``prune`` on each prefix; folding happens at most once per message;
        - folded messages are ``summarized`` into the summary message (fresh id,
          ``meta["synthetic"]``, ``meta["summary_of"]`` listing their ids); when no summary
          fits at all they are ``dropped``.

    Attributes:
        summarizer: extends the summary (default: `ExtractiveSummarizer`, offline).
        keep_last: messages at the end never folded while the budget allows it.
        trigger: fold once the context would pass this share of the budget.
        target: fold until the context would be at most this share of the budget.
        summary_share: share of the budget the summary may take.
        role: role of the summary message.
    """

    name: ClassVar[str] = "summarize"

    summarizer: Summarizer = field(default_factory=ExtractiveSummarizer)
    keep_last: int = 4
    trigger: float = 1.0
    target: float = 0.7
    summary_share: float = 0.2
    role: Literal["user", "system"] = "user"

    def __post_init__(self) -> None:
        if self.keep_last < 0:
            raise UsageError(f"keep_last must be >= 0, got {self.keep_last}")
        if not 0 < self.target <= self.trigger <= 1:
            raise UsageError(
                f"need 0 < target <= trigger <= 1, got target={self.target}, trigger={self.trigger}"
            )
        if not 0 <= self.summary_share < self.target:
            raise UsageError(
                f"summary_share must be in [0, target), got {self.summary_share} "
                f"(target {self.target})"
            )
        if self.role not in ("user", "system"):
            raise UsageError(f"role must be 'user' or 'system', got {self.role!r}")

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        run = _Run(self, conversation, budget, counter)
        run.advance(len(conversation.messages))
        return run.result()

    def resumer(self, budget: Budget, counter: TokenCounter) -> Resumer:
        """A `Resumer`: prunes successive, mostly growing conversations (see `pipeline`)."""
        return Resumer(self, budget, counter)

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        run = _Run(self, conversation, budget, counter)
        for k in probes:
            run.advance(k)
            yield run.result()


@dataclass(frozen=True, kw_only=True)
class SummaryWindow(Summarize):
    """`summarize` tuned as a summary plus a token window, updated at every turn.

    Once the context passes 85% of the budget, the oldest turns are folded until it is back
    at 75%, so the verbatim part is always close to a token window of the newest messages and
    the summary covers everything older (the behaviour of a summary buffer memory). It calls
    the summarizer in small, frequent batches, where `summarize` folds 30% of the budget at a
    time.
    """

    name: ClassVar[str] = "summary_window"

    trigger: float = 0.85
    target: float = 0.75


class _Run:
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

    def fork(self) -> _Run:
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
        if m.role == "user" and not m.is_tool_output:
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
        self.base: _Run | None = None

    def prune(self, conversation: Conversation, stable: int) -> Pruned:
        """``strategy.prune(conversation)``, reusing the walk over the shared leading part."""
        msgs, base = conversation.messages, self.base
        if base is None or msgs[: base.k] != base.msgs[: base.k]:
            base = self.base = _Run(self.strategy, conversation, self.budget, self.counter)
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
            return Decision(index=i, message_id=mid, action="kept", reason="pinned: system")
        if i == self.user:
            why = "pinned: newest user message"
            return Decision(index=i, message_id=mid, action="kept", reason=why)
        if 0 < fold <= self.folds:
            if fold > self.lost and self.summary_id is not None:
                why = "folded into the summary" + (f" ({self.note})" if self.note else "")
                return Decision(
                    index=i, message_id=mid, action="summarized", reason=why, into=self.summary_id
                )
            why = "folded when no summary fitted the budget"
            return Decision(index=i, message_id=mid, action="dropped", reason=why)
        if i in self.open:
            why = "tool call awaiting its results"
            return Decision(index=i, message_id=mid, action="dropped", reason=why)
        if bad is not None and i < self.k:
            return Decision(index=i, message_id=mid, action="dropped", reason=bad)
        why = "newer than the summary" if self.summary_id else "fits the budget"
        return Decision(index=i, message_id=mid, action="kept", reason=why)
