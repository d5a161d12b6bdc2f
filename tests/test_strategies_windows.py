"""Behaviour of the window strategies: keep_all, token_window, sliding_window, head_tail."""

from __future__ import annotations

import pytest
from strategy_helpers import agent_conversation, conv, ids

from ctxlab import datasets
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.invariants import check, must_keep, required_tokens
from ctxlab.messages import Message, ToolCall
from ctxlab.strategies import get_strategy
from ctxlab.strategies.head_tail import HeadTail
from ctxlab.strategies.sliding_window import SlidingWindow
from ctxlab.strategies.token_window import TokenWindow
from ctxlab.tokens import get_counter

COUNTER = get_counter()


@pytest.fixture(scope="module")
def locomo():
    return datasets.load("locomo")[0]


@pytest.fixture(scope="module")
def taubench():
    return max(datasets.load("taubench"), key=lambda c: len(c.messages))


# -- keep_all ---------------------------------------------------------------------------------


def test_keep_all_sends_everything_and_ignores_the_budget(locomo) -> None:
    pruned = get_strategy("keep_all").prune(locomo, 1000, COUNTER)
    assert pruned.messages == locomo.messages
    assert pruned.tokens == COUNTER.count_messages(locomo.messages) > 1000
    assert not pruned.budget_ok
    assert pruned.count("kept") == len(locomo.messages)
    check(locomo, pruned, 1000, COUNTER)  # exempt from the budget, not from the rest


def test_keep_all_leaves_out_a_call_still_waiting_for_results(taubench) -> None:
    call_at = next(i for i, m in enumerate(taubench.messages) if m.tool_calls)
    prefix = taubench.prefix(call_at + 1)  # ends on the call, before its result
    pruned = get_strategy("keep_all").prune(prefix, 10**6, COUNTER)
    assert ids(pruned.messages) == ids(prefix.messages[:call_at])
    assert pruned.decisions[call_at].reason == "tool call without all its results"


# -- token_window -----------------------------------------------------------------------------


def test_token_window_is_pinned_plus_the_longest_newest_run_that_fits(taubench) -> None:
    budget = required_tokens(taubench.messages, COUNTER) + 900
    pruned = TokenWindow().prune(taubench, budget, COUNTER)
    check(taubench, pruned, budget, COUNTER)
    pins = must_keep(taubench.messages).indices
    kept = [taubench.index_of(m.id) for m in pruned.messages]
    run = [i for i in kept if i not in pins]
    assert pins[0] == 0 and set(pins) <= set(kept)
    assert run == list(range(run[0], len(taubench.messages)))
    # one more (whole unit of) older message would not fit
    start = run[0] - 1
    while taubench[start].role == "tool":
        start -= 1
    bigger = {*pins, *range(start, len(taubench.messages))}
    assert COUNTER.count_messages(taubench[i] for i in sorted(bigger)) > budget
    assert pruned.decisions[1].reason == "older than the window that fits the budget"


def test_token_window_keeps_an_old_newest_user_message_in_agent_runs() -> None:
    c = agent_conversation(turns=8)
    c = c.with_messages(c.messages[:-1])  # the newest user message is now the task
    pruned = TokenWindow().prune(c, 1200, COUNTER)
    assert ids(pruned.messages)[:2] == ["sys", "task"]
    assert pruned.decisions[1].reason == "pinned: newest user message"
    assert ids(pruned.messages)[-1] == "done"


def test_token_window_never_starts_inside_a_tool_unit() -> None:
    calls = (ToolCall(id="p1", name="a"), ToolCall(id="p2", name="b"))
    c = conv(
        Message(role="user", content="go", id="u"),
        Message(role="assistant", tool_calls=calls, id="a"),
        Message(role="tool", content="x " * 50, tool_call_id="p1", id="r1"),
        Message(role="tool", content="small", tool_call_id="p2", id="r2"),
        Message(role="assistant", content="ok", id="end"),
    )
    only_tail = COUNTER.count_messages([c[0], c[3], c[4]])
    pruned = TokenWindow().prune(c, only_tail, COUNTER)
    assert ids(pruned.messages) == ["u", "end"]  # r2 alone would orphan it


def test_token_window_raises_exactly_when_the_pins_do_not_fit(taubench) -> None:
    need = required_tokens(taubench.messages, COUNTER)
    assert len(TokenWindow().prune(taubench, need, COUNTER).messages) == 2
    with pytest.raises(BudgetUnreachableError) as info:
        TokenWindow().prune(taubench, need - 1, COUNTER)
    assert (info.value.required, info.value.budget) == (need, need - 1)


def test_token_window_counts_each_message_once_and_builds_decisions_lazily(
    locomo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTXLAB_DEBUG", raising=False)  # debug checks read every decision
    calls = []

    class Spy(type(COUNTER)):  # type: ignore[misc]
        def count_text(self, text: str) -> int:
            calls.append(text)
            return super().count_text(text)

    spy = Spy("o200k_base")
    results = list(TokenWindow().replay(locomo, range(len(locomo.messages) + 1), 2000, spy))
    texts = {t for m in locomo.messages for t in (m.role, m.text, m.name or "")}
    assert len(calls) <= len(texts) + len(locomo.messages)  # batch misses are counted once
    assert spy.cache_size() == len({(m.role, m.content, m.name) for m in locomo.messages})
    assert all("decisions" not in r.__dict__ for r in results)
    assert len(results[-1].decisions) == len(locomo.messages)


# -- sliding_window ---------------------------------------------------------------------------


def test_sliding_window_keeps_the_last_messages_plus_the_pins(taubench) -> None:
    pruned = SlidingWindow(max_messages=6).prune(taubench, 10**6, COUNTER)
    pins = must_keep(taubench.messages).indices
    kept = [taubench.index_of(m.id) for m in pruned.messages]
    window = [i for i in kept if i not in pins]
    n = len(taubench.messages)
    assert set(pins) <= set(kept) and set(window) <= set(range(n - 6, n))
    assert len(window) >= 4  # at most one unit cut off at the window's start
    assert pruned.decisions[1].action == "dropped"


def test_sliding_window_counts_turns(locomo) -> None:
    pruned = SlidingWindow(max_turns=3).prune(locomo, 10**6, COUNTER)
    users = [m for m in pruned.messages if m.role == "user"]
    assert len(users) == 3 and pruned.messages[-1] == locomo.messages[-1]


def test_sliding_window_falls_back_to_the_budget(locomo) -> None:
    wide = SlidingWindow(max_messages=200)
    pruned = wide.prune(locomo, 800, COUNTER)
    assert pruned.tokens <= 800 < COUNTER.count_messages(locomo.messages[-200:])
    assert pruned.messages == TokenWindow().prune(locomo, 800, COUNTER).messages


def test_sliding_window_parameters() -> None:
    assert SlidingWindow().label == "sliding_window"
    assert SlidingWindow(max_turns=2).label == "sliding_window(max_turns=2)"
    with pytest.raises(UsageError, match="not both"):
        SlidingWindow(max_messages=3, max_turns=2)
    with pytest.raises(UsageError, match=">= 1"):
        get_strategy("sliding_window", max_messages=0)


# -- head_tail --------------------------------------------------------------------------------


def test_head_tail_keeps_the_task_statement_and_the_newest_messages(taubench) -> None:
    budget = required_tokens(taubench.messages, COUNTER) + 800
    pruned = HeadTail().prune(taubench, budget, COUNTER)
    check(taubench, pruned, budget, COUNTER)
    assert ids(pruned.messages)[:2] == [taubench[0].id, taubench[1].id]
    assert pruned.messages[-1] == taubench.messages[-1]
    assert pruned.decisions[1].reason == "head"
    assert "between the head and the tail" in {d.reason for d in pruned.decisions}


def test_head_tail_widens_the_head_to_whole_units() -> None:
    c = agent_conversation(turns=3, output_words=20)
    pruned = HeadTail(head=2).prune(c, 10**6, COUNTER)  # head: task + a0, widened to r0
    assert [d.reason for d in pruned.decisions[:4]] == ["pinned: system", "head", "head", "head"]
    tight = COUNTER.count_messages([c[0], c[1], c[2], c[3], c[-1]])
    pruned = HeadTail(head=2).prune(c, tight, COUNTER)
    assert ids(pruned.messages) == ["sys", "task", "a0", "r0", "last"]
