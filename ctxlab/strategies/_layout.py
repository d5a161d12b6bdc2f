"""Shared machinery of the window strategies: one `Layout` per conversation, many prefixes.

A `Layout` groups the messages into tool-call units (an assistant message with tool calls plus
all its results, kept or dropped whole; `ctxlab.strategies._tool_units`) and precomputes what
each prefix ``messages[:k]`` needs: where a window may start without splitting a unit, and the
pinned messages. A window strategy answers a prefix with a `Selection`, which builds the
messages and the decisions of the result only when asked.

Token counts come in two ways. A replay counts every message once (``counter.count_many``) and
answers each prefix with a binary search over prefix sums. A single `prune` counts lazily: it
walks back from the newest message and stops where the budget is exceeded, so trimming a long
conversation to a small budget tokenizes only the messages it looks at. Both find the same
window: the run costs grow monotonically as the window start moves back, so the smallest start
that fits is the same whether it is found by a walk or by a binary search.

A unit is *complete* at prefix k when every call has a result inside the prefix; incomplete
units (the prefix ends between a call and its results) and tool results whose call is not the
latest tool-calling assistant message before them can never be sent, so they are dropped.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from functools import cached_property

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._compose import decision
from ctxlab.strategies._tool_units import NEVER, sendable_ends
from ctxlab.strategies.base import Action, Decision
from ctxlab.tokens import TokenCounter

__all__ = ["NEVER", "REPLY_PRIMING", "Layout", "LazyLayout", "prefix_of", "share_of"]

REPLY_PRIMING = 3  # the tokens count_messages adds to every request


def share_of(budget: Budget, share: float) -> int:
    """Tokens of ``share`` × the available budget, rounded down (the whole budget at 1.0)."""
    return budget.available if share >= 1.0 else int(budget.available * share)


def prefix_of(conv: Conversation, k: int) -> Conversation:
    """``conv.prefix(k)`` without re-validating ids (a prefix of a valid conversation is valid).

    Replays build one prefix per probe; re-checking k ids each time would make them quadratic.
    """
    if k == len(conv.messages):
        return conv
    out = object.__new__(type(conv))
    out.__dict__.update(conv.__dict__)
    out.__dict__.pop("_positions", None)  # cached id index of the full conversation
    out.__dict__["messages"] = conv.messages[:k]
    return out


class Layout:
    """Tool-call units, pins and token counts of one conversation, every message counted.

    What a replay uses: each prefix is answered from prefix sums. `LazyLayout` answers the
    same questions for one prune, counting only what it looks at.

    Attributes:
        messages: the conversation's messages.
        system: index of the first system message, or -1.
        counts: tokens of each message (`LazyLayout`: None until counted).
    """

    def __init__(self, messages: Sequence[Message], counter: TokenCounter) -> None:
        self.messages = tuple(messages)
        n = len(self.messages)
        grouping = sendable_ends(self.messages)
        self.unit_end = grouping.end
        self.orphans = grouping.orphans
        self.units = grouping.units
        self.system = next((i for i, m in enumerate(self.messages) if m.role == "system"), -1)
        self.bad_cum = [0] * (n + 1)  # number of messages never sendable
        for i, e in enumerate(self.unit_end):
            self.bad_cum[i + 1] = self.bad_cum[i] + (e == NEVER)
        self._starts = [u.start for u in self.units]
        self._span = max((u.end - u.start for u in self.units), default=0)
        self._straddle = self._straddle_ends(n)
        self._counter = counter
        self.counts: list[int | None] = [None] * n
        self.keep_cum: list[int] = []  # tokens of the messages that are ever sendable
        self._all: list[int] = []
        self._count()

    def _count(self) -> None:
        counts = self._all = self._counter.count_many(self.messages)
        self.counts[:] = counts
        self.keep_cum = [0] * (len(counts) + 1)
        for i, c in enumerate(counts):
            bad = self.unit_end[i] == NEVER
            self.keep_cum[i + 1] = self.keep_cum[i] + (0 if bad else c)

    @cached_property
    def users(self) -> list[int]:
        """Indices of the user turns (user messages that are not tool output), ascending."""
        return [i for i, m in enumerate(self.messages) if m.is_user_turn]

    def count(self, i: int) -> int:
        """Tokens of message i."""
        return self._all[i]

    def _straddle_ends(self, n: int) -> list[int]:
        """For each cut s, the smallest end of a unit with start < s <= end (NEVER if none)."""
        out = [NEVER] * (n + 1)
        for u in self.units:
            for s in range(u.start + 1, u.end + 1):
                out[s] = min(out[s], u.end)
        return out

    def __len__(self) -> int:
        return len(self.messages)

    # -- decisions, shared by every selection of this layout ---------------------------------

    def row(self, action: Action, reason: str) -> list[Decision]:
        """The decision ``action``/``reason`` of every message, built once per pair."""
        rows: dict[tuple[str, str], list[Decision]] = self.__dict__.setdefault("_rows", {})
        found = rows.get((action, reason))
        if found is None:
            # interned: the layouts of one conversation (one per budget) share their rows
            found = rows[action, reason] = [
                decision(i, m.id, action, reason) for i, m in enumerate(self.messages)
            ]
        return found

    def never_below(self, k: int) -> list[int]:
        """Indices below k of the messages that can never be sent, ascending."""
        never: list[int] | None = self.__dict__.get("_never")
        if never is None:
            never = self.__dict__["_never"] = [i for i, e in enumerate(self.unit_end) if e == NEVER]
        return never[: bisect.bisect_left(never, k)]

    def unsendable(self, i: int) -> Decision:
        """The decision of message i when it cannot be sent (never, or not yet)."""
        return _unsendable(i, self.messages[i], i in self.orphans)

    def pinned(self, i: int) -> Decision:
        """The decision of pinned message i."""
        m = self.messages[i]
        why = "pinned: system" if m.role == "system" else "pinned: newest user message"
        return Decision(index=i, message_id=m.id, action="kept", reason=why)

    def extended(self, message: Message) -> Layout:
        """This layout with one more message that is its own unit (not a tool message).

        What a request that adds one message to a shared history needs, without grouping
        and counting the history again: equal to ``Layout(messages + (message,), counter)``.
        """
        assert message.role != "tool" and not message.tool_calls
        n, cost = len(self.messages), self._counter.count(message)
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        for cached in ("users", "_rows", "_never"):  # recomputed on demand
            out.__dict__.pop(cached, None)
        out.messages = (*self.messages, message)
        out.unit_end = [*self.unit_end, n]
        out.system = n if self.system < 0 and message.role == "system" else self.system
        out.bad_cum = [*self.bad_cum, self.bad_cum[-1]]
        out._straddle = [*self._straddle, NEVER]
        out.counts = [*self.counts, cost]
        out._all = [*self._all, cost]
        out.keep_cum = [*self.keep_cum, self.keep_cum[-1] + cost]
        return out

    # -- per prefix -------------------------------------------------------------------------

    def newest_user(self, k: int) -> int:
        """Index of the newest user message (not tool output) in ``messages[:k]``, or -1."""
        pos = bisect.bisect_left(self.users, k)
        return self.users[pos - 1] if pos else -1

    def pins(self, k: int) -> tuple[int, ...]:
        """The pinned indices of prefix k: first system and newest user message, ascending."""
        user, system = self.newest_user(k), self.system
        if 0 <= system < k:
            if user < 0 or user == system:
                return (system,)
            return (system, user) if system < user else (user, system)
        return (user,) if user >= 0 else ()

    def required(self, k: int, budget: Budget, share: float = 1.0) -> tuple[tuple[int, ...], int]:
        """Pinned indices of prefix k and the tokens left for the rest of ``share`` × budget.

        The room is never negative: when the pins alone exceed ``share`` × the budget (but
        not the budget) nothing else is sent.

        Raises:
            BudgetUnreachableError: the pinned messages alone exceed the budget.
        """
        pins = self.pins(k)
        need = REPLY_PRIMING
        for i in pins:
            need += self.count(i)
        if need > budget.available:
            raise BudgetUnreachableError(need, budget.available, "first system + newest user")
        return pins, max(0, share_of(budget, share) - need)

    def open_members(self, k: int) -> list[int]:
        """Indices below k that belong to a unit completed only after k (never sent at k)."""
        lo = bisect.bisect_left(self._starts, k - self._span)
        hi = bisect.bisect_left(self._starts, k)
        return [j for u in self.units[lo:hi] if u.end >= k for j in u.members if j < k]

    def sendable(self, i: int, k: int) -> bool:
        """True when message i can be sent in prefix k (its unit is complete there)."""
        return self.unit_end[i] < k

    def valid_cut(self, s: int, k: int) -> bool:
        """True when starting (or ending) a run at s splits no unit that is complete at k."""
        return self._straddle[s] >= k

    def cost(self, a: int, b: int, skip: Sequence[int]) -> int:
        """Tokens of the sendable messages in [a, b), minus those at the indices in `skip`.

        `skip` lists pinned and open indices; they are never counted twice.
        """
        total = self.keep_cum[b] - self.keep_cum[a]
        for j in skip:
            if a <= j < b and self.unit_end[j] != NEVER:
                total -= self._all[j]
        return total

    def fit_suffix(self, k: int, room: int, lo: int, skip: Sequence[int]) -> int:
        """Smallest valid start s >= lo whose run [s, k) costs at most `room` tokens."""
        left = self._fit_back(k, room, lo, skip)
        while left < k and not self.valid_cut(left, k):
            left += 1
        return left

    def _fit_back(self, k: int, room: int, lo: int, skip: Sequence[int]) -> int:
        # A binary search on cost(mid, k, skip), inlined: a replay runs it at every probe.
        cum, end = self.keep_cum, self.keep_cum[k]
        ends, counts = self.unit_end, self._all
        minus = [(j, counts[j]) for j in skip if lo <= j < k and ends[j] != NEVER]
        left, right = lo, k  # cost(k, k) == 0 <= room
        while left < right:
            mid = (left + right) // 2
            cost = end - cum[mid]
            for j, n in minus:
                if j >= mid:
                    cost -= n
            if cost <= room:
                right = mid
            else:
                left = mid + 1
        return left

    def fit_prefix(self, a: int, b: int, k: int, room: int, skip: Sequence[int]) -> int:
        """Largest valid end e <= b whose run [a, e) costs at most `room` tokens."""
        left = self._fit_forward(a, b, room, skip)
        while left > a and not self.valid_cut(left, k):
            left -= 1
        return left

    def _fit_forward(self, a: int, b: int, room: int, skip: Sequence[int]) -> int:
        left, right = a, b
        while left < right:
            mid = (left + right + 1) // 2
            if self.cost(a, mid, skip) <= room:
                left = mid
            else:
                right = mid - 1
        return left


class LazyLayout(Layout):
    """A `Layout` for one prune: messages are counted when a selection first looks at them.

    The runs are found by walking from their fixed end and stopping at the first message that
    does not fit, so nothing beyond it is ever counted. Run costs only grow as a run gets
    longer, so the walk stops where the binary search of `Layout` lands.
    """

    def _count(self) -> None:
        pass  # on demand, see `count`

    def count(self, i: int) -> int:
        """Tokens of message i (counted on first use)."""
        c = self.counts[i]
        if c is None:
            c = self.counts[i] = self._counter.count(self.messages[i])
        return c

    def newest_user(self, k: int) -> int:
        """Index of the newest user message (not tool output) in ``messages[:k]``, or -1."""
        if "users" in self.__dict__:  # sliding_window(max_turns=...) lists them anyway
            return super().newest_user(k)
        return next((i for i in range(k - 1, -1, -1) if self.messages[i].is_user_turn), -1)

    def _weight(self, j: int, skip: Collection[int]) -> int:
        """What message j adds to a run: its tokens, or 0 when never sendable or skipped."""
        return 0 if self.unit_end[j] == NEVER or j in skip else self.count(j)

    def cost(self, a: int, b: int, skip: Sequence[int]) -> int:
        """Tokens of the sendable messages in [a, b), minus those at the indices in `skip`."""
        # The hot loop of a replay's window step: `_weight` inlined.
        ends, counts, skipped, total = self.unit_end, self.counts, frozenset(skip), 0
        for j in range(a, b):
            if ends[j] != NEVER and j not in skipped:
                c = counts[j]
                total += self.count(j) if c is None else c
        return total

    def _fit_back(self, k: int, room: int, lo: int, skip: Sequence[int]) -> int:
        ends, counts, skipped = self.unit_end, self.counts, frozenset(skip)
        s, used = k, 0
        while s > lo:
            j = s - 1
            if ends[j] != NEVER and j not in skipped:
                c = counts[j]
                used += self.count(j) if c is None else c
                if used > room:
                    break
            s -= 1
        return s

    def _fit_forward(self, a: int, b: int, room: int, skip: Sequence[int]) -> int:
        e, used, skipped = a, 0, frozenset(skip)
        while e < b:
            used += self._weight(e, skipped)
            if used > room:
                break
            e += 1
        return e


def _unsendable(i: int, m: Message, orphan: bool) -> Decision:
    if orphan:
        why = "tool result without its call"
    elif m.role == "tool":
        why = "its tool call lacks other results"
    else:
        why = "tool call without all its results"
    return Decision(index=i, message_id=m.id, action="dropped", reason=why)
