"""Strategies that rewrite some messages in place and let a fallback enforce the budget."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ctxlab.budget import Budget
from ctxlab.invariants import check
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._compose import compose, decision
from ctxlab.strategies._layout import prefix_of
from ctxlab.strategies.base import Action, BaseStrategy, Decision, Pruned
from ctxlab.strategies.keep_all import KeepAll
from ctxlab.tokens import TokenCounter

__all__ = ["Changes", "RewriteStrategy"]

#: index -> (action, reason) for the messages a rewrite changed.
Changes = Mapping[int, tuple[Action, str]]


class RewriteStrategy(BaseStrategy):
    """Base of `mask_tool_outputs` and `truncate_long`.

    Subclasses declare a ``fallback: BaseStrategy | None`` field and implement `_rewrite`,
    which must change a message the same way whatever prefix it appears in (so a replay can
    reuse rewrites through `cache`). Rewritten messages keep their id. With no fallback only
    what no provider accepts is left out (as `keep_all` does) and the result may exceed the
    budget: use it as a step of a pipeline whose later steps enforce it.
    """

    fallback: BaseStrategy | None

    @property
    def enforces_budget(self) -> bool:
        """True when a fallback enforces the budget after the rewrite."""
        return self.fallback is not None

    def _step(self) -> BaseStrategy | None:
        """The strategy applied after the rewrite: `fallback` unless a subclass adapts it."""
        return self.fallback

    def _rewrite(
        self, messages: Sequence[Message], counter: TokenCounter, cache: dict[str, Any]
    ) -> tuple[tuple[Message, ...], Changes]:
        raise NotImplementedError

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        return self._apply(conversation, budget, counter, {})

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        cache: dict[str, Any] = {}
        for k in probes:
            yield self._apply(prefix_of(conversation, k), budget, counter, cache)

    def _apply(
        self, conv: Conversation, budget: Budget, counter: TokenCounter, cache: dict[str, Any]
    ) -> Pruned:
        messages, changes = self._rewrite(conv.messages, counter, cache)
        originals = conv.messages

        def first() -> list[Decision]:
            return _decisions(originals, changes)

        # without a fallback, keep_all still leaves out what no provider accepts
        step = self._step() or KeepAll()
        second = step._prune(conv.with_messages(messages), budget, counter)
        return Pruned(
            conversation=conv,
            messages=second.messages,
            tokens=second.tokens,
            budget=budget,
            strategy=self.label,
            extra_usage=second.extra_usage,
            decide=lambda: compose(first(), second.decisions),
        )

    def _check(
        self, original: Conversation, pruned: Pruned, budget: Budget, counter: TokenCounter
    ) -> None:
        check(original, pruned, budget, counter, enforce_budget=self.enforces_budget)


def _decisions(originals: Sequence[Message], changes: Changes) -> list[Decision]:
    out = []
    for i, m in enumerate(originals):
        action, why = changes.get(i, ("kept", "unchanged"))
        into = m.id if action != "kept" else None
        out.append(decision(i, m.id, action, why, None, into))
    return out
