"""`ctxlab.invariants.check` rejects every broken rule with a message that names it."""

from __future__ import annotations

import dataclasses

import pytest
from strategy_helpers import agent_conversation, conv

from ctxlab.errors import InvariantError
from ctxlab.invariants import check, must_keep, required_tokens
from ctxlab.messages import Message, ToolCall
from ctxlab.strategies import get_strategy
from ctxlab.strategies.base import Decision, Pruned
from ctxlab.tokens import get_counter

COUNTER = get_counter()
BIG = 100_000


def pruned_of(original, messages, decisions=None, tokens=None, strategy="test") -> Pruned:
    return Pruned(
        conversation=original,
        messages=tuple(messages),
        tokens=COUNTER.count_messages(messages) if tokens is None else tokens,
        budget=dataclasses.replace(get_strategy("token_window").prune(original, BIG).budget),
        strategy=strategy,
        given_decisions=decisions,
    )


def test_must_keep_finds_first_system_and_newest_real_user_message() -> None:
    c = conv(
        Message(role="user", content="hi", id="u0"),
        Message(role="system", content="one", id="s1"),
        Message(role="system", content="two", id="s2"),
        Message(role="user", content="task", id="u3"),
        Message(role="user", content="observation", id="o4", meta={"tool_output": True}),
    )
    pins = must_keep(c.messages)
    assert (pins.system, pins.user, pins.indices) == (1, 3, (1, 3))
    assert required_tokens(c.messages, COUNTER) == COUNTER.count_messages([c[1], c[3]])
    assert must_keep([]).indices == ()
    assert required_tokens([], COUNTER) == 3  # reply priming only


def test_a_correct_result_passes() -> None:
    c = agent_conversation()
    check(c, get_strategy("token_window").prune(c, 600, COUNTER), 600, COUNTER)


@pytest.mark.parametrize(
    ("drop", "message"),
    [("sys", "first system message .* was dropped"), ("last", "newest user message .* dropped")],
)
def test_pinned_messages_must_be_sent(drop: str, message: str) -> None:
    c = agent_conversation()
    sent = [m for m in c.messages if m.id != drop]
    with pytest.raises(InvariantError, match=message):
        check(c, pruned_of(c, sent), BIG, COUNTER)


def test_the_newest_user_message_must_be_verbatim() -> None:
    c = agent_conversation()
    sent = [m.replace(content="shortened") if m.id == "last" else m for m in c.messages]
    with pytest.raises(InvariantError, match=r"newest user message .* was changed"):
        check(c, pruned_of(c, sent), BIG, COUNTER)


def test_tool_pairs() -> None:
    c = agent_conversation()
    no_result = [m for m in c.messages if m.id != "r2"]
    with pytest.raises(InvariantError, match="tool call 'c2' of message 'a2' is sent without"):
        check(c, pruned_of(c, no_result), BIG, COUNTER)
    no_call = [m for m in c.messages if m.id != "a2"]
    with pytest.raises(InvariantError, match="tool result 'r2' answers call 'c2', not sent"):
        check(c, pruned_of(c, no_call), BIG, COUNTER)


def test_context_must_not_end_on_a_tool_call() -> None:
    call = ToolCall(id="c9", name="t")
    c = conv(
        Message(role="user", content="go", id="u"),
        Message(role="assistant", tool_calls=(call,), id="a"),
    )
    with pytest.raises(InvariantError, match="ends on a tool call"):
        check(c, pruned_of(c, c.messages), BIG, COUNTER)


def test_order_ids_and_synthetic_marks() -> None:
    c = agent_conversation()
    swapped = list(c.messages)
    swapped[2], swapped[4] = swapped[4], swapped[2]
    with pytest.raises(InvariantError, match="out of order"):
        check(c, pruned_of(c, swapped), BIG, COUNTER)
    twice = [*c.messages[:3], c.messages[1], *c.messages[3:]]
    with pytest.raises(InvariantError, match="sent twice"):
        check(c, pruned_of(c, twice), BIG, COUNTER)
    unmarked = [c[0], Message(role="assistant", content="summary", id="new"), *c.messages[1:]]
    with pytest.raises(InvariantError, match="new id 'new' but no meta\\['synthetic'\\]"):
        check(c, pruned_of(c, unmarked), BIG, COUNTER)
    copied = Message(role="assistant", content="s", meta={"synthetic": True, "dia_id": "D1:1"})
    tagged = c.with_messages([c[0].replace(meta={"dia_id": "D1:1"}), *c.messages[1:]])
    with pytest.raises(InvariantError, match="copies dia_id"):
        check(tagged, pruned_of(tagged, [tagged[0], copied, *tagged.messages[1:]]), BIG, COUNTER)


def test_role_and_tool_fields_may_not_change() -> None:
    c = agent_conversation()
    sent = [m.replace(tool_call_id="other") if m.id == "r1" else m for m in c.messages]
    with pytest.raises(InvariantError, match=r"'r1'.*changed its role or tool calls"):
        check(c, pruned_of(c, sent), BIG, COUNTER)


def test_tokens_must_be_exact_and_within_budget() -> None:
    c = agent_conversation()
    with pytest.raises(InvariantError, match=r"pruned\.tokens is 5 but the messages count"):
        check(c, pruned_of(c, c.messages, tokens=5), BIG, COUNTER)
    whole = COUNTER.count_messages(c.messages)
    with pytest.raises(InvariantError, match=f"{whole} tokens exceed the {whole - 1} available"):
        check(c, pruned_of(c, c.messages), whole - 1, COUNTER)
    check(c, pruned_of(c, c.messages, strategy="keep_all"), whole - 1, COUNTER)  # exempt
    check(c, pruned_of(c, c.messages), whole - 1, COUNTER, enforce_budget=False)


def test_an_unreachable_budget_must_have_raised() -> None:
    c = agent_conversation()
    need = required_tokens(c.messages, COUNTER)
    pinned = [m for m in c.messages if m.id in ("sys", "last")]
    with pytest.raises(InvariantError, match="should have raised BudgetUnreachableError"):
        check(c, pruned_of(c, pinned), need - 1, COUNTER)


def test_decisions_must_match_what_is_sent() -> None:
    c = agent_conversation()
    sent = [m for m in c.messages if m.id not in ("a0", "r0")]

    def decisions(action_of_a0: str) -> list[Decision]:
        return [
            Decision(
                index=i,
                message_id=m.id,
                action=(action_of_a0 if m.id == "a0" else "kept")
                if m.id not in ("r0",)
                else "dropped",
                reason="x",
            )
            for i, m in enumerate(c.messages)
        ]

    check(c, pruned_of(c, sent, decisions("dropped")), BIG, COUNTER)
    with pytest.raises(InvariantError, match="'a0'\\) is 'kept' but is not sent verbatim"):
        check(c, pruned_of(c, sent, decisions("kept")), BIG, COUNTER)
    with pytest.raises(InvariantError, match="is 'summarized' but does not point"):
        check(c, pruned_of(c, sent, decisions("summarized")), BIG, COUNTER)
    with pytest.raises(InvariantError, match="decisions for"):
        check(c, pruned_of(c, sent, decisions("dropped")[:-1]), BIG, COUNTER)


def test_pruned_must_describe_the_original() -> None:
    c = agent_conversation()
    other = c.prefix(3)
    with pytest.raises(InvariantError, match="not the conversation that was pruned"):
        check(c, pruned_of(other, other.messages), BIG, COUNTER)
