"""The rules every pruned conversation obeys, checked in one place.

`check(original, pruned, budget, counter)` raises `InvariantError` naming the first broken rule:

- `pruned` describes `original` (same messages) and holds one decision per original message;
- every message sent is an original one (same id, original order, role and tool fields
  unchanged; content changed only when its decision says masked or truncated) or a synthetic
  one (fresh id, ``meta["synthetic"]``, no copied ``dia_id``);
- the first system message and the newest user message (the newest ``user`` message not tagged
  ``tool_output``) are sent verbatim;
- every tool call sent has all its results after it, every tool result sent has its call before
  it, and the context does not end on a tool call;
- ``pruned.tokens == counter.count_messages(pruned.messages)`` and, unless the strategy ignores
  budgets (``keep_all``), it is at most ``budget.available``. A strategy must raise
  `BudgetUnreachableError` instead of returning when, and only when, the first system message
  plus the newest user message alone need more (`required_tokens`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ctxlab.budget import Budget, as_budget
from ctxlab.errors import InvariantError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Decision, Pruned, as_conversation
from ctxlab.tokens import TokenCounter

__all__ = [
    "KINDS",
    "MustKeep",
    "Violation",
    "ViolationKind",
    "check",
    "must_keep",
    "required_tokens",
    "violations",
]

#: What a broken rule is about. ``order``: an original sent twice or out of order;
#: ``malformed``: bookkeeping (ids, ``meta["synthetic"]``, role or tool fields changed,
#: ``pruned.tokens``, decisions); ``budget_unreachable``: a result returned where the strategy
#: should have raised `BudgetUnreachableError`.
ViolationKind: TypeAlias = Literal[
    "over_budget",
    "orphan_result",
    "dangling_call",
    "system_lost",
    "user_lost",
    "order",
    "malformed",
    "budget_unreachable",
]
KINDS: tuple[ViolationKind, ...] = (
    "over_budget",
    "orphan_result",
    "dangling_call",
    "system_lost",
    "user_lost",
    "order",
    "malformed",
    "budget_unreachable",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Violation:
    """One broken rule.

    Attributes:
        kind: what the rule is about (`ViolationKind`).
        detail: what was found, naming the message.
    """

    kind: ViolationKind
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MustKeep:
    """Positions of the messages no strategy may drop or change.

    Attributes:
        system: index of the first system message, or None.
        user: index of the newest user message not tagged ``tool_output``, or None.
    """

    system: int | None
    user: int | None

    @property
    def indices(self) -> tuple[int, ...]:
        """The pinned positions, ascending."""
        return tuple(sorted(i for i in (self.system, self.user) if i is not None))


def must_keep(messages: Sequence[Message]) -> MustKeep:
    """Find the first system message and the newest user message of a conversation."""
    system = next((i for i, m in enumerate(messages) if m.role == "system"), None)
    user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].is_user_turn), None)
    return MustKeep(system=system, user=user)


def required_tokens(messages: Sequence[Message], counter: TokenCounter) -> int:
    """Tokens of a request holding only the must-keep messages (reply priming included)."""
    pins = must_keep(messages)
    return counter.count_messages(messages[i] for i in pins.indices)


def check(
    original: Conversation | Sequence[Message],
    pruned: Pruned,
    budget: Budget | int,
    counter: TokenCounter,
    *,
    enforce_budget: bool | None = None,
) -> None:
    """Raise `InvariantError` when `pruned` breaks a rule (see the module docstring).

    Args:
        original: the conversation that was pruned.
        pruned: the strategy's result.
        budget: the budget it was pruned to.
        counter: the counter the strategy was given.
        enforce_budget: check the token budget; by default every strategy but ``keep_all``.
    """
    conv = as_conversation(original)
    where = f"strategy {pruned.strategy!r} on conversation {conv.id!r}"
    for found in _breaches(conv, pruned, as_budget(budget), counter, enforce_budget):
        raise InvariantError(f"{where}: {found.detail}")


def violations(
    original: Conversation | Sequence[Message],
    pruned: Pruned,
    budget: Budget | int | None,
    counter: TokenCounter,
    *,
    enforce_budget: bool | None = None,
    decisions: bool = True,
) -> list[Violation]:
    """Every rule `pruned` breaks, in the order `check` looks for them; never raises.

    For results that are measured rather than trusted (peer libraries): `check` raises the
    first of these. With `budget` None the token budget is not checked (``over_budget`` and
    ``budget_unreachable`` never appear). With `decisions` False, ``pruned.decisions`` is
    neither built nor checked: only what would be sent is (the context's messages and
    ``pruned.tokens``).
    """
    conv = as_conversation(original)
    bud = None if budget is None else as_budget(budget)
    enforce = False if budget is None else enforce_budget
    return list(_breaches(conv, pruned, bud, counter, enforce, decisions))


def _breaches(
    conv: Conversation,
    pruned: Pruned,
    budget: Budget | None,
    counter: TokenCounter,
    enforce_budget: bool | None,
    decisions: bool = True,
) -> Iterator[Violation]:
    if pruned.conversation.messages != conv.messages:
        yield Violation(
            kind="malformed",
            detail="pruned.conversation is not the conversation that was pruned (or it changed)",
        )
    positions: dict[str, int] = {}
    yield from _check_messages(conv, pruned.messages, positions)
    yield from _check_pins(conv, pruned.messages)
    yield from _check_tool_pairs(pruned.messages)
    yield from _check_tokens(conv, pruned, budget, counter, enforce_budget)
    if decisions:
        yield from _check_decisions(conv, pruned, positions)


def _check_messages(
    conv: Conversation, sent: Sequence[Message], positions: dict[str, int]
) -> Iterator[Violation]:
    """Ids unique, originals in order with their role and tool fields, synthetics marked.

    Fills `positions` (message id to its place in `sent`).
    """
    seen: set[str] = set()
    dia_ids: set[object] | None = None  # of the originals, gathered only when needed
    last = -1
    for j, m in enumerate(sent):
        if m.id in seen:
            yield Violation(
                kind="order", detail=f"message id {m.id!r} is sent twice (position {j})"
            )
        seen.add(m.id)
        try:
            i = conv.index_of(m.id)
        except KeyError:
            if not m.is_synthetic:
                what = f"message {j} has a new id {m.id!r} but no meta['synthetic']"
                yield Violation(kind="malformed", detail=what)
            elif "dia_id" in m.meta and m.meta["dia_id"] in (
                dia_ids := dia_ids if dia_ids is not None else _dia_ids(conv)
            ):
                what = f"synthetic message {m.id!r} copies dia_id {m.meta['dia_id']!r}"
                yield Violation(kind="malformed", detail=what)
            continue
        if i <= last:
            what = f"original message {i} ({m.id!r}) is sent out of order, after {last}"
            yield Violation(kind="order", detail=what)
        last = max(last, i)
        o = conv.messages[i]
        if (m.role, m.tool_calls, m.tool_call_id) != (o.role, o.tool_calls, o.tool_call_id):
            what = f"message {i} ({m.id!r}) changed its role or tool calls"
            yield Violation(kind="malformed", detail=what)
    positions.update({m.id: j for j, m in enumerate(sent)})


def _dia_ids(conv: Conversation) -> set[object]:
    return {m.meta["dia_id"] for m in conv.messages if "dia_id" in m.meta}


def _same(a: Message, b: Message) -> bool:
    """``a == b``, without comparing every field of a message with itself."""
    return a is b or a == b


def _check_pins(conv: Conversation, sent: Sequence[Message]) -> Iterator[Violation]:
    pins = must_keep(conv.messages)
    by_id = {m.id: m for m in sent}
    pinned: tuple[tuple[int | None, str, ViolationKind], ...] = (
        (pins.system, "first system message", "system_lost"),
        (pins.user, "newest user message", "user_lost"),
    )
    for index, what, kind in pinned:
        if index is None:
            continue
        m = conv.messages[index]
        if m.id not in by_id:
            detail = f"the {what} (index {index}, id {m.id!r}) was dropped"
            yield Violation(kind=kind, detail=detail)
        elif not _same(by_id[m.id], m):
            detail = f"the {what} (index {index}, id {m.id!r}) was changed"
            yield Violation(kind=kind, detail=detail)


def _check_tool_pairs(sent: Sequence[Message]) -> Iterator[Violation]:
    ends_on_call = bool(sent) and sent[-1].role == "assistant" and bool(sent[-1].tool_calls)
    if ends_on_call:
        what = f"the context ends on a tool call ({sent[-1].id!r}) with no results"
        yield Violation(kind="dangling_call", detail=what)
    open_calls: dict[str, str] = {}
    answered: set[str] = set()
    for m in sent:
        if m.role == "assistant" and m.tool_calls:
            yield from _require_answers(open_calls, answered)
            open_calls = {c.id: m.id for c in m.tool_calls}
            answered = set()
        elif m.role == "tool":
            if m.tool_call_id not in open_calls:
                what = f"tool result {m.id!r} answers call {m.tool_call_id!r}, not sent"
                yield Violation(kind="orphan_result", detail=what)
            answered.add(str(m.tool_call_id))
    if not ends_on_call:
        yield from _require_answers(open_calls, answered)


def _require_answers(open_calls: dict[str, str], answered: set[str]) -> Iterator[Violation]:
    for call_id, owner in open_calls.items():
        if call_id not in answered:
            what = f"tool call {call_id!r} of message {owner!r} is sent without its result"
            yield Violation(kind="dangling_call", detail=what)


def _check_tokens(
    conv: Conversation,
    pruned: Pruned,
    budget: Budget | None,
    counter: TokenCounter,
    enforce_budget: bool | None,
) -> Iterator[Violation]:
    actual = counter.count_messages(pruned.messages)
    if pruned.tokens != actual:
        what = f"pruned.tokens is {pruned.tokens} but the messages count {actual}"
        yield Violation(kind="malformed", detail=what)
    if enforce_budget is None:
        enforce_budget = pruned.strategy != "keep_all"
    if budget is None or not enforce_budget:
        return
    required = required_tokens(conv.messages, counter)
    if required > budget.available:
        yield Violation(
            kind="budget_unreachable",
            detail=f"the must-keep messages need {required} tokens > {budget.available} "
            "available: the strategy should have raised BudgetUnreachableError",
        )
    elif actual > budget.available:
        what = f"{actual} tokens exceed the {budget.available} available"
        yield Violation(kind="over_budget", detail=what)


def _check_decisions(
    conv: Conversation, pruned: Pruned, positions: dict[str, int]
) -> Iterator[Violation]:
    decisions = pruned.decisions
    if len(decisions) != len(conv.messages):
        what = f"{len(decisions)} decisions for {len(conv.messages)} messages"
        yield Violation(kind="malformed", detail=what)
        return
    for i, (m, d) in enumerate(zip(conv.messages, decisions, strict=True)):
        if d.index != i or d.message_id != m.id:
            what = f"decision {i} describes message {d.index} ({d.message_id!r})"
            yield Violation(kind="malformed", detail=what)
        elif (problem := _decision_problem(m, d, pruned.messages, positions)) is not None:
            yield Violation(kind="malformed", detail=problem)


def _decision_problem(
    m: Message, d: Decision, sent: Sequence[Message], positions: dict[str, int]
) -> str | None:
    j = positions.get(m.id)
    action = d.action
    if action == "kept":
        if j is not None and _same(sent[j], m):
            return None
        problem = "but is not sent verbatim"
    elif action == "dropped":
        if j is None:
            return None
        problem = "but is sent"
    elif action in ("masked", "truncated"):
        if not (j is None or _same(sent[j], m) or d.into != m.id):
            return None
        problem = "but is not sent under its id with changed content"
    elif action == "summarized":
        carrier = positions.get(d.into or "")
        if j is None and carrier is not None and sent[carrier].is_synthetic:
            return None
        problem = "but does not point to a synthetic message that is sent"
    else:
        return None
    return f"message {d.index} ({m.id!r}) is {action!r} {problem}"
