"""What every strategy shares: the `Strategy` protocol, `Pruned`, `Decision`, and `BaseStrategy`.

A strategy is a frozen dataclass whose fields are its parameters. `prune(conversation, budget,
counter)` returns a `Pruned`: the messages to send plus one `Decision` per original message.
`replay(conversation, probes, budget, counter)` yields the `Pruned` of each prefix
``messages[:k]`` for k in `probes`, identical to calling `prune` on each prefix but cheaper.
A `ResumableStrategy` (``summarize``, ``summary_window``) can also hand its running state over
to a later call on a longer conversation (`resume`): what a live session stores between turns.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol, runtime_checkable

from ctxlab.budget import Budget, as_budget
from ctxlab.errors import UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import ACTIONS, Action, Decision, Pruned, as_conversation
from ctxlab.tokens import TokenCounter, get_counter

__all__ = [
    "ACTIONS",
    "Action",
    "BaseStrategy",
    "Decision",
    "Pruned",
    "ResumableStrategy",
    "Resumed",
    "Strategy",
    "as_conversation",
    "debug_enabled",
]


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


@dataclass(frozen=True, kw_only=True)
class Resumed:
    """What `ResumableStrategy.resume` returns.

    Attributes:
        pruned: equal to ``prune(conversation)`` in messages, decisions and tokens; its
            ``extra_usage`` holds only the calls this step made (the folds since `state`).
        state: the state to hand to the next call, on a conversation that extends this one.
        resumed_at: how many leading messages the given state had already walked (0 when
            the walk started from the beginning).
        rejected: why the given state was not used (the walk then started over), else None.
    """

    pruned: Pruned
    state: str
    resumed_at: int = 0
    rejected: str | None = None


@runtime_checkable
class ResumableStrategy(Protocol):
    """A strategy whose running state can be stored and resumed from (a running summary)."""

    def resume(
        self, conversation: Conversation, budget: Budget, counter: TokenCounter, state: str | None
    ) -> Resumed:
        """``prune(conversation)``, starting from `state` (a previous call's) when it applies.

        A state made for another strategy, budget, counter or conversation, or one that does
        not match the conversation's leading messages, is not an error: the walk starts over
        and `Resumed.rejected` says why.
        """
        ...


def debug_enabled() -> bool:
    """True when ``CTXLAB_DEBUG`` is set: strategies then check their own output."""
    return os.environ.get("CTXLAB_DEBUG", "") not in ("", "0", "false")


class BaseStrategy:
    """Mixin for strategy dataclasses: argument coercion, `label`, debug checks, default replay.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)``, set `name` (the registry name) and
    implement `_prune`; stateful or windowed strategies override `_replay` to share work.
    """

    name: ClassVar[str] = ""

    @cached_property
    def label(self) -> str:
        """Registry name plus the parameters that differ from their defaults.

        Computed once per strategy (strategies are frozen): default factories build values
        (a pipeline's default steps), and a run asks for the label of every result.
        """
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
