"""What every metric shares: the `Metric` protocol and the replay data a metric reads.

A replay of one conversation under one strategy and one budget is a `Cell`: its `Probe`s, in
order, each holding the `Pruned` context of the prefix ``messages[:k]`` (or None when the
strategy raised `BudgetUnreachableError` there). A metric turns a cell into one value per probe
for each of its columns; metrics that only look at one probe at a time subclass `ProbeMetric`
and write `value`. What a metric needs to precompute about a conversation (normalised texts,
key strings, question lookups) goes into `Facts.memo`, computed once per conversation and
shared by every strategy and budget that the same process replays.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from ctxlab.budget import Budget
from ctxlab.messages import Conversation, Message
from ctxlab.strategies.base import Pruned
from ctxlab.tokens import TokenCounter

__all__ = [
    "Aggregate",
    "AsyncMetric",
    "Cell",
    "Facts",
    "Metric",
    "Probe",
    "ProbeMetric",
    "Values",
    "facts_for",
]

#: How `Report.summary` aggregates a column: the mean over probes; each conversation's value
#: at its last probe (running totals such as cumulative tokens); or each conversation's sum
#: over its probes (additive per-probe quantities such as the strategy's own LLM tokens),
#: shown as ``<column>_total`` beside the mean per probe.
Aggregate: TypeAlias = Literal["mean", "last", "total"]
#: One value per probe for each column a metric fills.
Values: TypeAlias = Mapping[str, Sequence[float]]
T = TypeVar("T")
NAN = math.nan


class Facts:
    """Per-conversation data computed once and shared by every replay of that conversation.

    Attributes:
        conversation: the whole conversation.
        counter: the token counter of the run.
        counts: tokens of each message (``counter.count``), as an int array.
        priming: the reply-priming tokens a request adds (``count_messages([])``).
        index: message id to position.
        by_object: ``id()`` of each message object to its position (strategies return the
            original objects for what they keep, so this finds them without comparing).
    """

    def __init__(self, conversation: Conversation, counter: TokenCounter) -> None:
        self.conversation = conversation
        self.counter = counter
        self.counts = np.asarray(counter.count_many(conversation.messages), dtype=np.int64)
        self._prefix = np.concatenate(([0], np.cumsum(self.counts)))
        self.priming = counter.count_messages(())
        self.index = {m.id: i for i, m in enumerate(conversation.messages)}
        self.by_object = {id(m): i for i, m in enumerate(conversation.messages)}
        self._memo: dict[str, Any] = {}
        self._texts: dict[str, dict[str, Any]] = {}

    @property
    def n(self) -> int:
        """Number of messages."""
        return len(self.conversation.messages)

    def tokens_before(self, k: int) -> int:
        """Tokens of a request holding the whole prefix ``messages[:k]`` (nothing pruned)."""
        return int(self._prefix[k]) + self.priming

    def memo(self, key: str, build: Callable[[Facts], T]) -> T:
        """``build(self)``, computed on first use and cached under `key`."""
        try:
            value: T = self._memo[key]
        except KeyError:
            value = self._memo[key] = build(self)
        return value

    def per_text(self, key: str, text: str, build: Callable[[str], T]) -> T:
        """``build(text)``, cached under (`key`, `text`) for this conversation.

        For what metrics derive from the text of rewritten messages (summaries, truncations,
        placeholders): the same ones recur across probes, budgets and strategies.
        """
        cache = self._texts.setdefault(key, {})
        try:
            value: T = cache[text]
        except KeyError:
            value = cache[text] = build(text)
        return value


_CACHE: OrderedDict[tuple[Any, ...], Facts] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def facts_for(conversation: Conversation, counter: TokenCounter) -> Facts:
    """The `Facts` of a conversation, reused across the tasks a process runs.

    Work is split per conversation x strategy, so a worker usually replays the same
    conversation several times in a row; the key covers every message and the annotations,
    so two different conversations never share facts.
    """
    key = (id(counter), conversation.id, str(conversation.source), _fingerprint(conversation))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    facts = Facts(conversation, counter)
    with _CACHE_LOCK:
        _CACHE[key] = facts
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return facts


def _fingerprint(conversation: Conversation) -> int:
    messages = tuple(
        (m.id, m.role, m.content, m.name, m.tool_calls, m.tool_call_id, m.timestamp, m.meta)
        for m in conversation.messages
    )
    return hash((messages, conversation.annotations))


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One probe of a replay: the context sent after the first `k` messages.

    At a question probe the request is the whole conversation plus one new user message, the
    question (`asked`); `k` is then the conversation's length, `question` the question's
    position in ``annotations["questions"]``, and retention metrics are about that question
    only. The question message is never counted as retained content.

    Attributes:
        k: the prefix length (the probe index in reports).
        pruned: the strategy's result, or None when it raised `BudgetUnreachableError`.
        facts: the conversation's shared facts.
        question: at a question probe, the question's index; else None.
        asked: at a question probe, the question message appended to the conversation.
    """

    k: int
    pruned: Pruned | None
    facts: Facts = field(repr=False, compare=False)
    question: int | None = None
    asked: Message | None = field(default=None, repr=False, compare=False)

    @property
    def tokens_before(self) -> int:
        """Tokens of the request with nothing pruned (the question included, if any)."""
        extra = self.facts.counter.count(self.asked) if self.asked is not None else 0
        return self.facts.tokens_before(self.k) + extra

    @cached_property
    def order(self) -> npt.NDArray[np.int64]:
        """Per context position, the original message's index if sent verbatim, else -1.

        Rewritten messages (summaries, masks, truncations) are -1; the question of a question
        probe is -2.
        """
        if self.pruned is None:
            return np.zeros(0, dtype=np.int64)
        sent = self.pruned.messages
        # Strategies hand back the original objects, so identity finds almost every one.
        found = np.fromiter(
            map(self.facts.by_object.get, map(id, sent), repeat(-1)), np.int64, len(sent)
        )
        originals, index = self.facts.conversation.messages, self.facts.index
        for pos in np.flatnonzero((found < 0) | (found >= self.k)).tolist():
            j = index.get(sent[pos].id, -1)
            found[pos] = j if 0 <= j < self.k and originals[j] == sent[pos] else -1
        if self.asked is not None:
            for pos in range(len(sent) - 1, -1, -1):
                if sent[pos] is self.asked:
                    found[pos] = -2
                    break
        return found

    @cached_property
    def kept(self) -> npt.NDArray[np.bool_]:
        """Boolean mask over the conversation's messages: sent verbatim at this probe."""
        kept = np.zeros(self.facts.n, dtype=np.bool_)
        kept[self.order[self.order >= 0]] = True
        return kept

    @cached_property
    def context_key(self) -> tuple[Any, ...]:
        """What identifies the probe's context: equal keys, equal contexts.

        The prefix length, the question asked, the verbatim originals by position (`order`),
        and the role, name, content and tool calls of every other message (ids and meta aside).
        """
        others = tuple((m.role, m.name, m.content, m.tool_calls) for _, m in self.others)
        return (self.k, self.question, self.order.tobytes(), others)

    @cached_property
    def others(self) -> tuple[tuple[int, Message], ...]:
        """Context messages that are not verbatim originals, with their position.

        Those are summaries, placeholders and truncated messages (not the question asked).
        """
        if self.pruned is None:
            return ()
        sent = self.pruned.messages
        return tuple((int(pos), sent[pos]) for pos in np.flatnonzero(self.order == -1))


@dataclass(frozen=True, kw_only=True)
class Cell:
    """The replay of one conversation under one strategy at one budget.

    Attributes:
        facts: the conversation's shared facts (conversation, counter, token counts).
        strategy: the strategy's label.
        budget: the budget.
        probes: one `Probe` per probe point, in order.
        note: why the strategy could not run on this conversation ("" when it ran).
    """

    facts: Facts
    strategy: str
    budget: Budget
    probes: tuple[Probe, ...]
    note: str = ""
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def conversation(self) -> Conversation:
        """The whole conversation."""
        return self.facts.conversation

    def memo(self, key: str, build: Callable[[Cell], T]) -> T:
        """``build(self)``, computed on first use: lets metrics share per-cell work."""
        try:
            value: T = self._memo[key]
        except KeyError:
            value = self._memo[key] = build(self)
        return value


@runtime_checkable
class Metric(Protocol):
    """A measurement over a replay: one value per probe for each of its `columns`.

    Attributes:
        name: the name used in ``compare(metrics=[...])``.
        columns: report columns the metric fills (its main column first).
        aggregate: how the summary aggregates the main column (see `Aggregate`).
        is_async: True for metrics that also have an awaitable `acompute` (e.g. an LLM
            judge): `acompare` awaits it, `compare` calls `compute` (a metric whose
            `compute` raises NotImplementedError can only run under `acompare`).
    """

    @property
    def name(self) -> str:
        """The metric's name."""
        ...

    @property
    def columns(self) -> tuple[str, ...]:
        """Report columns this metric fills."""
        ...

    @property
    def aggregate(self) -> Aggregate:
        """How the summary aggregates it."""
        ...

    @property
    def is_async(self) -> bool:
        """Whether it must be awaited."""
        ...

    def applies(self, conversation: Conversation) -> bool:
        """False when the conversation lacks what the metric needs (its values are NaN)."""
        ...

    def compute(self, cell: Cell) -> Values:
        """One value per probe of `cell` for each column (NaN where undefined)."""
        ...


class AsyncMetric(Protocol):
    """A metric that awaits something (an LLM judge): `acompare` calls `acompute`."""

    def acompute(self, cell: Cell) -> Awaitable[Values]:
        """Like `Metric.compute`, awaited."""
        ...


class ProbeMetric:
    """Base for metrics computed one probe at a time: subclasses set `name`, write `value`.

    Probes whose budget could not be met get NaN without calling `value`. A subclass whose
    value depends only on the probe's prefix length and context (`Probe.context_key`) sets
    `by_context`: the value is then computed once per distinct context of a conversation
    (contexts recur: at every budget the whole prefix fits in, under every strategy that
    keeps the same messages).
    """

    name: ClassVar[str] = ""
    aggregate: ClassVar[Aggregate] = "mean"
    is_async: ClassVar[bool] = False
    by_context: ClassVar[bool] = False

    @property
    def columns(self) -> tuple[str, ...]:
        """Just the metric's own column."""
        return (self.name,)

    def applies(self, conversation: Conversation) -> bool:
        """Applies to every conversation unless a subclass says otherwise."""
        return True

    def compute(self, cell: Cell) -> Values:
        """`value` at each probe; NaN where the strategy could not meet the budget."""
        if not self.by_context:
            return {
                self.name: [NAN if p.pruned is None else self.value(cell, p) for p in cell.probes]
            }
        # Keyed by the metric itself (frozen, so equal parameters give equal keys).
        values: dict[Any, float] = cell.facts.memo("probe_values", lambda _: {})
        out = []
        for p in cell.probes:
            if p.pruned is None:
                out.append(NAN)
                continue
            key = (self, p.context_key)
            found = values.get(key)
            if found is None:
                found = values[key] = self.value(cell, p)
            out.append(found)
        return {self.name: out}

    def value(self, cell: Cell, probe: Probe) -> float:
        """The metric at one probe whose `pruned` is set."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<metric {self.name}>"
