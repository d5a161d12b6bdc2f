"""Plain functions ``list[Message] -> list[Message]`` as strategies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.invariants import check
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._compose import compose
from ctxlab.strategies.base import BaseStrategy, Decision, Pruned
from ctxlab.strategies.keep_all import KeepAll
from ctxlab.strategies.token_window import TokenWindow
from ctxlab.tokens import TokenCounter

__all__ = ["FunctionStrategy", "from_function"]

MessageFunction = Callable[[list[Message]], list[Message]]


@dataclass(frozen=True, kw_only=True)
class FunctionStrategy(BaseStrategy):
    """A strategy made of a function that takes and returns a list of messages.

    - The function gets a fresh list (the conversation itself is never exposed to mutation).
    - Messages it returns under an original id count as kept when unchanged and truncated when
      changed; messages with new ids are marked ``meta["synthetic"]``; originals it leaves out
      are dropped.
    - Then `fallback` (default `token_window`) enforces the budget, and the result is always
      checked with `ctxlab.invariants.check`: a function that drops the newest user message,
      reorders messages or breaks tool pairs raises `InvariantError` naming it.
    """

    name: ClassVar[str] = "function"
    function: MessageFunction
    title: str = ""
    fallback: BaseStrategy | None = field(default_factory=TokenWindow)

    @property
    def label(self) -> str:
        """The given title, else the function's name."""
        return self.title or getattr(self.function, "__name__", "function")

    @property
    def enforces_budget(self) -> bool:
        """True when a fallback enforces the budget after the function."""
        return self.fallback is not None

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        sent = self._call(conversation)
        first = conversation.with_messages(sent)
        decisions = _decisions(conversation, sent, self.label)
        # without a fallback, keep_all still leaves out what no provider accepts
        later = (self.fallback or KeepAll())._prune(first, budget, counter)
        result = Pruned(
            conversation=conversation,
            messages=later.messages,
            tokens=later.tokens,
            budget=budget,
            strategy=self.label,
            extra_usage=later.extra_usage,
            given_decisions=compose(decisions, later.decisions),
        )
        check(conversation, result, budget, counter, enforce_budget=self.enforces_budget)
        return result

    def _call(self, conversation: Conversation) -> list[Message]:
        returned = self.function(list(conversation.messages))
        if not isinstance(returned, (list, tuple)):
            raise UsageError(f"{self.label} must return a list of messages, not {returned!r}")
        known = {m.id for m in conversation.messages}
        out = []
        for m in returned:
            if not isinstance(m, Message):
                raise UsageError(f"{self.label} returned {m!r}, which is not a Message")
            if m.id not in known and not m.is_synthetic:
                m = m.replace(meta={**m.meta, "synthetic": True})
            out.append(m)
        return out

    def _check(
        self, original: Conversation, pruned: Pruned, budget: Budget, counter: TokenCounter
    ) -> None:
        pass  # `_prune` always checks user functions


def _decisions(conv: Conversation, sent: list[Message], label: str) -> list[Decision]:
    by_id = {m.id: m for m in sent}
    out = []
    for i, m in enumerate(conv.messages):
        other = by_id.get(m.id)
        if other is None:
            d = Decision(index=i, message_id=m.id, action="dropped", reason=f"left out by {label}")
        elif other == m:
            d = Decision(index=i, message_id=m.id, action="kept", reason=f"kept by {label}")
        else:
            why = f"changed by {label}"
            d = Decision(index=i, message_id=m.id, action="truncated", reason=why, into=m.id)
        out.append(d)
    return out


def from_function(
    fn: MessageFunction,
    name: str | None = None,
    *,
    fallback: BaseStrategy | None = TokenWindow(),  # noqa: B008 - frozen, never mutated
) -> FunctionStrategy:
    """Wrap a function ``list[Message] -> list[Message]`` as a strategy.

    Args:
        fn: the function; it must keep the first system message and the newest user message.
        name: the label used in reports (default: the function's ``__name__``).
        fallback: the strategy that enforces the budget afterwards (default `token_window`;
            None sends what the function returns, whatever the budget, less the messages no
            provider accepts).
    """
    return FunctionStrategy(function=fn, title=name or "", fallback=fallback)
