"""What every strategy shares: the `Strategy` protocol, `Pruned`, `Decision`, and `BaseStrategy`.

A strategy is a frozen dataclass whose fields are its parameters. `prune(conversation, budget,
counter)` returns a `Pruned`: the messages to send plus one `Decision` per original message.
`replay(conversation, probes, budget, counter)` yields the `Pruned` of each prefix
``messages[:k]`` for k in `probes`, identical to calling `prune` on each prefix but cheaper.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, runtime_checkable

from ctxlab.budget import Budget, as_budget
from ctxlab.errors import UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.tokens import TokenCounter, get_counter
from ctxlab.usage import Usage

__all__ = [
    "ACTIONS",
    "Action",
    "BaseStrategy",
    "Decision",
    "Pruned",
    "Strategy",
    "as_conversation",
    "debug_enabled",
]

Action: TypeAlias = Literal["kept", "dropped", "summarized", "masked", "truncated"]
ACTIONS: tuple[Action, ...] = ("kept", "dropped", "summarized", "masked", "truncated")


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """What a strategy did with one original message.

    Attributes:
        index: position of the message in the original conversation (0-based).
        message_id: the original message's id.
        action: kept (verbatim), dropped, summarized (folded into a synthetic message),
            masked (content replaced by a placeholder), truncated (content cut).
        reason: a short human explanation ("outside the window", "pinned: system"...).
        score: the importance score, for strategies that score messages.
        into: id of the message that now carries this one's content: the summary for
            ``summarized``; the message itself (same id) for ``masked``/``truncated``.
    """

    index: int
    message_id: str
    action: Action
    reason: str
    score: float | None = None
    into: str | None = None


@dataclass(frozen=True, kw_only=True)
class Pruned:
    """The outcome of pruning one conversation (or one prefix of it) to a budget.

    Attributes:
        conversation: the conversation that was pruned (for a replay, the prefix).
        messages: what would be sent, summaries and placeholders included.
        tokens: ``counter.count_messages(messages)`` with the counter the strategy was given.
        budget: the budget it was pruned to.
        strategy: the strategy's label.
        extra_usage: tokens of the LLM calls the strategy made for this result (summaries);
            they are outside the budget.
        decisions: one `Decision` per message of `conversation`, in order (computed lazily
            when the strategy supplies `decide`).
    """

    conversation: Conversation
    messages: tuple[Message, ...]
    tokens: int
    budget: Budget
    strategy: str
    extra_usage: Usage = field(default_factory=Usage)
    decide: Callable[[], Sequence[Decision]] | None = field(default=None, repr=False, compare=False)
    given_decisions: Sequence[Decision] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def decisions(self) -> tuple[Decision, ...]:
        """One decision per original message, in order."""
        if self.given_decisions is not None:
            return tuple(self.given_decisions)
        if self.decide is not None:
            return tuple(self.decide())
        return _decisions_by_id(self.conversation, self.messages)

    @property
    def budget_ok(self) -> bool:
        """True when the messages fit the budget's available tokens."""
        return self.tokens <= self.budget.available

    @cached_property
    def kept_ids(self) -> frozenset[str]:
        """Ids of the original messages that are sent verbatim."""
        return frozenset(d.message_id for d in self.decisions if d.action == "kept")

    def count(self, action: Action) -> int:
        """How many original messages got this action."""
        return sum(1 for d in self.decisions if d.action == action)

    def __repr__(self) -> str:
        return (
            f"Pruned(strategy={self.strategy!r}, messages={len(self.messages)}/"
            f"{len(self.conversation.messages)}, tokens={self.tokens}, budget={self.budget})"
        )

    def _repr_html_(self) -> str:
        from ctxlab._html import pruned_html

        return pruned_html(self)


def _decisions_by_id(conv: Conversation, sent: Sequence[Message]) -> tuple[Decision, ...]:
    """Decisions inferred by comparing ids and contents (used by function strategies)."""
    by_id = {m.id: m for m in sent}
    out = []
    for i, m in enumerate(conv.messages):
        other = by_id.get(m.id)
        if other is None:
            out.append(Decision(index=i, message_id=m.id, action="dropped", reason="not returned"))
        elif other == m:
            out.append(Decision(index=i, message_id=m.id, action="kept", reason="returned as is"))
        else:
            out.append(
                Decision(
                    index=i,
                    message_id=m.id,
                    action="truncated",
                    reason="returned with other content",
                    into=m.id,
                )
            )
    return tuple(out)


@runtime_checkable
class Strategy(Protocol):
    """Anything that prunes a conversation to a budget."""

    @property
    def label(self) -> str:
        """Registry name plus non-default parameters, e.g. ``sliding_window(max_messages=20)``."""
        ...

    def prune(
        self,
        conversation: Conversation | Sequence[Message],
        budget: Budget | int,
        counter: TokenCounter | None = None,
    ) -> Pruned:
        """Prune a conversation to the budget."""
        ...

    def replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget | int,
        counter: TokenCounter | None = None,
    ) -> Iterator[Pruned]:
        """Yield ``prune(conversation.prefix(k))`` for each k in `probes`."""
        ...


def debug_enabled() -> bool:
    """True when ``CTXLAB_DEBUG`` is set: strategies then check their own output."""
    return os.environ.get("CTXLAB_DEBUG", "") not in ("", "0", "false")


def as_conversation(value: Conversation | Sequence[Message]) -> Conversation:
    """Accept a `Conversation` or a plain sequence of messages."""
    if isinstance(value, Conversation):
        return value
    return Conversation(id="adhoc", messages=tuple(value))


class BaseStrategy:
    """Mixin for strategy dataclasses: argument coercion, `label`, debug checks, default replay.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)``, set `name` (the registry name) and
    implement `_prune`; stateful or windowed strategies override `_replay` to share work.
    """

    name: ClassVar[str] = ""

    @property
    def label(self) -> str:
        """Registry name plus the parameters that differ from their defaults."""
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.init or not f.repr:
                continue
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING:
                default: Any = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = dataclasses.MISSING
            if value != default:
                parts.append(f"{f.name}={_short(value)}")
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    def prune(
        self,
        conversation: Conversation | Sequence[Message],
        budget: Budget | int,
        counter: TokenCounter | None = None,
    ) -> Pruned:
        """Prune a conversation to the budget (see the class docstring for guarantees)."""
        conv, bud, cnt = as_conversation(conversation), as_budget(budget), counter or get_counter()
        result = self._prune(conv, bud, cnt)
        if debug_enabled():
            self._check(conv, result, bud, cnt)
        return result

    def replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget | int,
        counter: TokenCounter | None = None,
    ) -> Iterator[Pruned]:
        """Yield the `Pruned` of ``conversation.prefix(k)`` for each k in `probes`, in order."""
        conv, bud, cnt = as_conversation(conversation), as_budget(budget), counter or get_counter()
        ks = list(probes)
        for a, b in itertools.pairwise(ks):
            if b < a:
                raise UsageError(f"replay probes must be non-decreasing, got {a} then {b}")
        if ks and (ks[0] < 0 or ks[-1] > len(conv.messages)):
            raise UsageError(f"replay probes must lie in [0, {len(conv.messages)}]")
        debug = debug_enabled()
        for result in self._replay(conv, ks, bud, cnt):
            if debug:
                self._check(result.conversation, result, bud, cnt)
            yield result

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        raise NotImplementedError

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        for k in probes:
            yield self._prune(conversation.prefix(k), budget, counter)

    def _check(
        self, original: Conversation, pruned: Pruned, budget: Budget, counter: TokenCounter
    ) -> None:
        from ctxlab.invariants import check

        check(original, pruned, budget, counter)

    def __repr__(self) -> str:
        return f"<strategy {self.label}>"


def _short(value: Any) -> str:
    if isinstance(value, BaseStrategy):
        return value.label
    if isinstance(value, (list, tuple)) and all(isinstance(v, BaseStrategy) for v in value):
        return "[" + ", ".join(v.label for v in value) + "]"
    if callable(value) and hasattr(value, "__name__"):
        return str(value.__name__)
    return repr(value)
