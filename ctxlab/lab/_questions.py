"""Question probes: the request a memory is judged on when a question is asked afterwards.

LoCoMo's questions are asked after the conversation. At a question probe the request is the
whole conversation plus one new user message whose content is the question text, exactly; a
strategy prunes that (the question is the newest user message, so it is pinned and counted in
the budget), and retention is measured for that one question. A question applies when it is
of categories 1-4 and all its evidence ids resolve to turns of the conversation (the rule of
`evidence_recall`).

Strategies that can answer many such requests from work shared across them offer
``branches(conversation, extras, budgets, counter)``: for each extra message x, the result of
``prune(conversation + x, budget)`` at each budget (None where the budget cannot be met).
`branch_results` uses it when a strategy has it, and plain `prune` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Pruned
from ctxlab.tokens import TokenCounter

__all__ = [
    "ADVERSARIAL",
    "applicable_questions",
    "branch_results",
    "category_of",
    "check_questions",
    "question_message",
    "with_question",
]

ADVERSARIAL = 5


def category_of(question: Mapping[str, Any]) -> int:
    """The LoCoMo category of a question (0 when missing or not a number)."""
    try:
        return max(int(question.get("category") or 0), 0)
    except (TypeError, ValueError):
        return 0


def applicable_questions(conversation: Conversation) -> tuple[int, ...]:
    """Indices of the questions a question probe is made for (see the module docstring)."""
    ids = {m.id for m in conversation.messages}
    out = []
    for q, item in enumerate(conversation.annotations.get("questions") or ()):
        evidence = list(item.get("evidence") or ())
        text = item.get("question")
        if category_of(item) in (0, ADVERSARIAL) or not evidence or not isinstance(text, str):
            continue
        if text.strip() and all(e in ids for e in evidence):
            out.append(q)
    return tuple(out)


def question_message(conversation: Conversation, q: int) -> Message:
    """The user message asking question `q`: its text exactly, marked in ``meta``."""
    item = conversation.annotations["questions"][q]
    return Message(
        role="user",
        content=str(item["question"]),
        id=f"{conversation.id}:question-{q}",
        meta={"question_index": q, "question_probe": True},
    )


def with_question(conversation: Conversation, question: Message) -> Conversation:
    """The conversation with the question appended as its newest message."""
    return Conversation(
        id=conversation.id,
        messages=(*conversation.messages, question),
        source=conversation.source,
        annotations=conversation.annotations,
    )


def check_questions(conversations: Sequence[Conversation]) -> None:
    """Raise `UsageError` naming the datasets whose conversations have no questions."""
    missing: dict[str, int] = {}
    for conv in conversations:
        if not conv.annotations.get("questions"):
            name = conv.dataset or str(conv.source or conv.id)
            missing[name] = missing.get(name, 0) + 1
    if missing:
        listed = ", ".join(
            f"{name!r} ({n} conversation{'s' * (n > 1)})" for name, n in missing.items()
        )
        raise UsageError(
            f"probes='questions' needs conversations with question annotations (LoCoMo format); "
            f"none in {listed}. Use probes='auto' for them, or leave them out."
        )


def branch_results(
    strategy: Any,
    conversation: Conversation,
    extras: Sequence[Message],
    budgets: Sequence[Budget],
    counter: TokenCounter,
) -> list[list[Pruned | None]]:
    """``[budget][extra]``: the strategy's result for the conversation plus each extra message."""
    branches = getattr(strategy, "branches", None)
    if callable(branches):
        per_extra = list(branches(conversation, extras, budgets, counter))
    else:
        per_extra = [
            [_prune_or_none(strategy, with_question(conversation, x), b, counter) for b in budgets]
            for x in extras
        ]
    return [[row[b] for row in per_extra] for b in range(len(budgets))]


def _prune_or_none(
    strategy: Any, conversation: Conversation, budget: Budget, counter: TokenCounter
) -> Pruned | None:
    try:
        result: Pruned = strategy.prune(conversation, budget, counter)
    except BudgetUnreachableError:
        return None
    return result
