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

from collections.abc import Sequence
from dataclasses import dataclass

from ctxlab.budget import Budget, as_budget
from ctxlab.errors import InvariantError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Decision, Pruned, as_conversation
from ctxlab.tokens import TokenCounter

__all__ = ["MustKeep", "check", "must_keep", "required_tokens"]


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
    user = next((i for i in range(len(messages) - 1, -1, -1) if _is_user_turn(messages[i])), None)
    return MustKeep(system=system, user=user)


def _is_user_turn(message: Message) -> bool:
    return message.role == "user" and not message.is_tool_output


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
    if pruned.conversation.messages != conv.messages:
        _fail(where, "pruned.conversation is not the conversation that was pruned (or it changed)")
    positions = _check_messages(conv, pruned.messages, where)
    _check_pins(conv, pruned.messages, where)
    _check_tool_pairs(pruned.messages, where)
    _check_tokens(conv, pruned, as_budget(budget), counter, where, enforce_budget)
    _check_decisions(conv, pruned, positions, where)


def _fail(where: str, what: str) -> None:
    raise InvariantError(f"{where}: {what}")


def _check_messages(conv: Conversation, sent: Sequence[Message], where: str) -> dict[str, int]:
    """Ids unique, originals in order with their role and tool fields, synthetics marked."""
    seen: set[str] = set()
    dia_ids = {m.meta["dia_id"] for m in conv.messages if "dia_id" in m.meta}
    last = -1
    for j, m in enumerate(sent):
        if m.id in seen:
            _fail(where, f"message id {m.id!r} is sent twice (position {j})")
        seen.add(m.id)
        try:
            i = conv.index_of(m.id)
        except KeyError:
            if not m.is_synthetic:
                _fail(where, f"message {j} has a new id {m.id!r} but no meta['synthetic']")
            if m.meta.get("dia_id") in dia_ids:
                _fail(where, f"synthetic message {m.id!r} copies dia_id {m.meta['dia_id']!r}")
            continue
        if i <= last:
            _fail(where, f"original message {i} ({m.id!r}) is sent out of order, after {last}")
        last = i
        o = conv.messages[i]
        if (m.role, m.tool_calls, m.tool_call_id) != (o.role, o.tool_calls, o.tool_call_id):
            _fail(where, f"message {i} ({m.id!r}) changed its role or tool calls")
    return {m.id: j for j, m in enumerate(sent)}


def _check_pins(conv: Conversation, sent: Sequence[Message], where: str) -> None:
    pins = must_keep(conv.messages)
    by_id = {m.id: m for m in sent}
    for index, what in ((pins.system, "first system message"), (pins.user, "newest user message")):
        if index is None:
            continue
        m = conv.messages[index]
        if m.id not in by_id:
            _fail(where, f"the {what} (index {index}, id {m.id!r}) was dropped")
        if by_id[m.id] != m:
            _fail(where, f"the {what} (index {index}, id {m.id!r}) was changed")


def _check_tool_pairs(sent: Sequence[Message], where: str) -> None:
    if sent and sent[-1].role == "assistant" and sent[-1].tool_calls:
        _fail(where, f"the context ends on a tool call ({sent[-1].id!r}) with no results")
    open_calls: dict[str, str] = {}
    answered: set[str] = set()
    for m in sent:
        if m.role == "assistant" and m.tool_calls:
            _require_answers(open_calls, answered, where)
            open_calls = {c.id: m.id for c in m.tool_calls}
            answered = set()
        elif m.role == "tool":
            if m.tool_call_id not in open_calls:
                _fail(where, f"tool result {m.id!r} answers call {m.tool_call_id!r}, not sent")
            answered.add(str(m.tool_call_id))
    _require_answers(open_calls, answered, where)


def _require_answers(open_calls: dict[str, str], answered: set[str], where: str) -> None:
    for call_id, owner in open_calls.items():
        if call_id not in answered:
            _fail(where, f"tool call {call_id!r} of message {owner!r} is sent without its result")


def _check_tokens(
    conv: Conversation,
    pruned: Pruned,
    budget: Budget,
    counter: TokenCounter,
    where: str,
    enforce_budget: bool | None,
) -> None:
    actual = counter.count_messages(pruned.messages)
    if pruned.tokens != actual:
        _fail(where, f"pruned.tokens is {pruned.tokens} but the messages count {actual}")
    if enforce_budget is None:
        enforce_budget = pruned.strategy != "keep_all"
    if not enforce_budget:
        return
    required = required_tokens(conv.messages, counter)
    if required > budget.available:
        _fail(
            where,
            f"the must-keep messages need {required} tokens > {budget.available} available: "
            "the strategy should have raised BudgetUnreachableError",
        )
    if actual > budget.available:
        _fail(where, f"{actual} tokens exceed the {budget.available} available")


def _check_decisions(
    conv: Conversation, pruned: Pruned, positions: dict[str, int], where: str
) -> None:
    decisions = pruned.decisions
    if len(decisions) != len(conv.messages):
        _fail(where, f"{len(decisions)} decisions for {len(conv.messages)} messages")
    for i, (m, d) in enumerate(zip(conv.messages, decisions, strict=True)):
        if d.index != i or d.message_id != m.id:
            _fail(where, f"decision {i} describes message {d.index} ({d.message_id!r})")
        _check_decision(m, d, pruned.messages, positions, where)


def _check_decision(
    m: Message, d: Decision, sent: Sequence[Message], positions: dict[str, int], where: str
) -> None:
    j = positions.get(m.id)
    label = f"message {d.index} ({m.id!r}) is {d.action!r}"
    if d.action == "kept" and (j is None or sent[j] != m):
        _fail(where, f"{label} but is not sent verbatim")
    elif d.action in ("masked", "truncated") and (j is None or sent[j] == m or d.into != m.id):
        _fail(where, f"{label} but is not sent under its id with changed content")
    elif d.action == "dropped" and j is not None:
        _fail(where, f"{label} but is sent")
    elif d.action == "summarized":
        carrier = positions.get(d.into or "")
        if j is not None or carrier is None or not sent[carrier].is_synthetic:
            _fail(where, f"{label} but does not point to a synthetic message that is sent")
