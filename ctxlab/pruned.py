"""What a strategy returns: `Pruned`, the messages to send, and one `Decision` per original.

A core value: strategies build it, the invariant checker and the lab read it. Its HTML view
is imported lazily from `ctxlab.widgets` when a notebook displays it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeAlias

from ctxlab.budget import Budget
from ctxlab.messages import Conversation, Message
from ctxlab.usage import Usage

__all__ = ["ACTIONS", "Action", "Decision", "Pruned", "as_conversation"]

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


_NO_USAGE = Usage()


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
    extra_usage: Usage = field(default=_NO_USAGE)  # usages are immutable: one zero for all
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
        from ctxlab.widgets._html import pruned_html

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


def as_conversation(value: Conversation | Sequence[Message]) -> Conversation:
    """Accept a `Conversation` or a plain sequence of messages."""
    if isinstance(value, Conversation):
        return value
    return Conversation(id="adhoc", messages=tuple(value))
