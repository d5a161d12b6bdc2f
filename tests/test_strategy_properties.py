"""Property tests: generated conversations through every strategy and `check`.

Generated conversations have parallel tool calls (some never answered), orphan tool results,
empty and huge contents, several system messages and observations tagged ``tool_output``. With
the ``ci`` hypothesis profile (1,000 examples per test) these tests run well over 10,000
examples in total; the default profile runs 100 per test.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategy_helpers import NEEDS_MODEL, conversations, prepared

from ctxlab.errors import BudgetUnreachableError
from ctxlab.invariants import check, must_keep, required_tokens
from ctxlab.messages import Conversation
from ctxlab.strategies import get_strategy, names, peer_names
from ctxlab.strategies.base import BaseStrategy, Pruned
from ctxlab.strategies.head_tail import HeadTail
from ctxlab.strategies.mask_tool_outputs import MaskToolOutputs
from ctxlab.strategies.sliding_window import SlidingWindow
from ctxlab.strategies.token_window import TokenWindow
from ctxlab.strategies.truncate_long import TruncateLong
from ctxlab.tokens import get_counter

COUNTER = get_counter()


@st.composite
def cases(draw: st.DrawFn) -> tuple[Conversation, int]:
    """A conversation and a budget near one of its thresholds, or anywhere."""
    conv = draw(conversations())
    need = required_tokens(conv.messages, COUNTER)
    whole = COUNTER.count_messages(conv.messages)
    budget = draw(
        st.one_of(
            st.sampled_from([need - 1, need, need + 1, whole]),
            st.integers(need, max(need, whole + 50)),
            st.integers(1, max(1, whole + 50)),
        )
    )
    return conv, max(1, budget)


def prune_and_check(strategy: BaseStrategy, conv: Conversation, budget: int) -> Pruned | None:
    """Prune, check, and require BudgetUnreachableError exactly when the pins do not fit."""
    snapshot = copy.deepcopy(conv.messages)
    need = required_tokens(conv.messages, COUNTER)
    exempt = not getattr(strategy, "enforces_budget", True)
    try:
        pruned = strategy.prune(conv, budget, COUNTER)
    except BudgetUnreachableError as exc:
        assert not exempt and need > budget, f"raised although {need} <= {budget}"
        assert exc.required == need
        return None
    assert exempt or need <= budget, f"no BudgetUnreachableError although {need} > {budget}"
    check(conv, pruned, budget, COUNTER, enforce_budget=not exempt)
    assert conv.messages == snapshot
    return pruned


@pytest.mark.parametrize("name", [n for n in names() if n not in peer_names()])
@given(case=cases())
def test_every_registered_strategy_keeps_the_invariants(name: str, case) -> None:
    conv, budget = case
    prune_and_check(get_strategy(name), prepared(name, conv), budget)


BUILDERS: list[Callable[[int], BaseStrategy]] = [
    lambda n: SlidingWindow(max_messages=n),
    lambda n: SlidingWindow(max_turns=n),
    lambda n: HeadTail(head=n - 1),
    lambda n: MaskToolOutputs(keep_last=n - 1),
    lambda n: MaskToolOutputs(keep_last=n - 1, fallback=None),
    lambda n: TruncateLong(max_tokens_per_message=10 * n),
    lambda n: get_strategy(
        "pipeline",
        steps=[TruncateLong(max_tokens_per_message=30 * n), MaskToolOutputs(keep_last=n - 1)],
    ),
]


@given(case=cases(), builder=st.sampled_from(BUILDERS), n=st.integers(1, 5))
def test_strategies_with_parameters_keep_the_invariants(case, builder, n: int) -> None:
    conv, budget = case
    prune_and_check(builder(n), conv, budget)


# The summary peers need a model; test_strategies_replay checks them with a scripted one (their
# extra_usage is per probe in a replay, all calls in a prune).
@given(
    conv=conversations(),
    name=st.sampled_from([n for n in names() if n not in NEEDS_MODEL]),
    share=st.floats(0.2, 1.5),
)
def test_replay_equals_prune_on_every_prefix(conv: Conversation, name: str, share: float) -> None:
    strategy = get_strategy(name)
    conv = prepared(name, conv)
    budget = max(1, int(COUNTER.count_messages(conv.messages) * share))
    expected: list[Pruned | type[BudgetUnreachableError]] = []
    for k in range(len(conv.messages) + 1):
        try:
            expected.append(strategy.prune(conv.prefix(k), budget, COUNTER))
        except BudgetUnreachableError:
            expected.append(BudgetUnreachableError)
    got: list[Pruned | type[BudgetUnreachableError]] = []
    try:
        got.extend(strategy.replay(conv, range(len(conv.messages) + 1), budget, COUNTER))
    except BudgetUnreachableError:
        got.append(BudgetUnreachableError)
    # a replay stops at the first prefix whose pinned messages do not fit
    bad = [k for k, e in enumerate(expected) if e is BudgetUnreachableError]
    assert len(got) == (bad[0] + 1 if bad else len(expected))
    for a, b in zip(got, expected[: len(got)], strict=True):
        assert same(a, b)


def same(a: object, b: object) -> bool:
    if not isinstance(a, Pruned) or not isinstance(b, Pruned):
        return a is b
    return (
        a.conversation.messages == b.conversation.messages
        and a.messages == b.messages
        and a.tokens == b.tokens
        and a.decisions == b.decisions
        and a.extra_usage == b.extra_usage
    )


@given(case=cases(), keep_last=st.integers(0, 3))
def test_masking_never_changes_assistant_system_or_user_turns(case, keep_last: int) -> None:
    conv, budget = case
    pruned = prune_and_check(MaskToolOutputs(keep_last=keep_last, fallback=None), conv, budget)
    assert pruned is not None
    originals = {m.id: m for m in conv.messages}
    for m in pruned.messages:
        if not originals[m.id].is_tool_output:
            assert m == originals[m.id]
    outputs = [m.id for m in conv.messages if m.is_tool_output]
    recent = set(outputs[len(outputs) - keep_last :]) if keep_last else set()
    assert all(originals[m.id] == m for m in pruned.messages if m.id in recent)


@given(case=cases())
def test_token_window_cannot_take_one_more_older_message(case) -> None:
    conv, budget = case
    pruned = prune_and_check(TokenWindow(), conv, budget)
    if pruned is None:
        return
    pins = set(must_keep(conv.messages).indices)
    run = [conv.index_of(m.id) for m in pruned.messages if conv.index_of(m.id) not in pins]
    start = run[0] if run else len(conv.messages)
    # whatever was dropped just before the run is unsendable, a partial unit, or does not fit
    before = [d for d in pruned.decisions[:start] if d.index not in pins]
    if before and before[-1].reason == "older than the window that fits the budget":
        i = before[-1].index
        m = conv[i]
        if m.role not in ("tool",) and not m.tool_calls:
            assert pruned.tokens + COUNTER.count(m) > budget


@given(case=cases(), cap=st.integers(1, 400))
def test_truncation_respects_the_cap_where_text_allows(case, cap: int) -> None:
    conv, budget = case
    pruned = prune_and_check(TruncateLong(max_tokens_per_message=cap, fallback=None), conv, budget)
    assert pruned is not None
    for d in pruned.decisions:
        if d.action == "truncated":
            sent = next(m for m in pruned.messages if m.id == d.message_id)
            assert COUNTER.count(sent) < COUNTER.count(conv[d.index])
            assert "tokens removed from the middle" in sent.text
