"""Property tests for `summarize`, `summary_window` and `importance` on generated conversations.

Run with ``HYPOTHESIS_PROFILE=ci`` for the full count (1,000 examples per test).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st
from strategy_helpers import conversations

from ctxlab.errors import BudgetUnreachableError
from ctxlab.invariants import check, required_tokens
from ctxlab.messages import Conversation, Message
from ctxlab.strategies import get_strategy
from ctxlab.strategies.base import BaseStrategy
from ctxlab.strategies.summarize import Summarize
from ctxlab.summarizers import SummaryResult
from ctxlab.tokens import TokenCounter, get_counter
from ctxlab.usage import Usage

COUNTER = get_counter()
NAMES = ("summarize", "summary_window", "importance")

budgets = st.one_of(st.integers(1, 300), st.integers(300, 6000), st.integers(6000, 40_000))


@st.composite
def interleaved(draw: st.DrawFn) -> Conversation:
    """A generated conversation where user turns sometimes sit between a call and its results."""
    conv = draw(conversations())
    msgs = list(conv.messages)
    for _ in range(draw(st.integers(0, 3))):
        calls = [i for i, m in enumerate(msgs) if m.tool_calls]
        if not calls:
            break
        at = draw(st.sampled_from(calls)) + 1
        msgs.insert(at, Message(role="user", content=draw(st.sampled_from(["", "go on"]))))
    return conv.with_messages(msgs)


any_conversation = st.one_of(conversations(), interleaved())


class BillingSummarizer:
    """Deterministic LLM stand-in: keeps first words of each message and bills tokens."""

    def summarize(
        self,
        previous_summary: str | None,
        new_messages: Sequence[Message],
        max_tokens: int,
        counter: TokenCounter,
    ) -> SummaryResult:
        lines = (previous_summary or "").splitlines()
        lines += [f"[{m.role}] {' '.join(m.text.split()[:5])}" for m in new_messages]
        while lines and counter.count_text("\n".join(lines)) > max_tokens:
            lines.pop(0)
        text = "\n".join(lines)
        return SummaryResult(
            text=text,
            usage=Usage(
                input_tokens=counter.count_messages(new_messages),
                output_tokens=len(lines),
                requests=1,
            ),
        )


def _prune_or_unreachable(strategy: BaseStrategy, conv: Conversation, budget: int) -> None:
    need = required_tokens(conv.messages, COUNTER)
    try:
        pruned = strategy.prune(conv, budget, COUNTER)
    except BudgetUnreachableError as exc:
        assert need > budget and exc.required == need
        return
    assert need <= budget
    check(conv, pruned, budget, COUNTER)


@given(conv=any_conversation, budget=budgets, name=st.sampled_from(NAMES))
def test_invariants_hold_or_budget_is_unreachable(
    conv: Conversation, budget: int, name: str
) -> None:
    snapshot = copy.deepcopy(conv)
    _prune_or_unreachable(get_strategy(name), conv, budget)
    assert conv == snapshot


@given(
    conv=any_conversation,
    budget=budgets,
    name=st.sampled_from(NAMES),
    keep_last=st.integers(0, 5),
)
def test_replay_equals_prune_on_every_prefix(
    conv: Conversation, budget: int, name: str, keep_last: int
) -> None:
    strategy = (
        get_strategy(name, keep_last=keep_last) if name != "importance" else get_strategy(name)
    )
    n = len(conv.messages)
    reachable = [k for k in range(n + 1) if required_tokens(conv.messages[:k], COUNTER) <= budget]
    for k, got in zip(reachable, strategy.replay(conv, reachable, budget, COUNTER), strict=True):
        prefix = conv.prefix(k)
        want = strategy.prune(prefix, budget, COUNTER)
        assert got == want, k
        assert got.decisions == want.decisions, k
        check(prefix, got, budget, COUNTER)


@given(conv=any_conversation, budget=budgets)
def test_summarizer_usage_adds_up_over_a_replay(conv: Conversation, budget: int) -> None:
    strategy = Summarize(summarizer=BillingSummarizer(), keep_last=1)
    n = len(conv.messages)
    reachable = [k for k in range(n + 1) if required_tokens(conv.messages[:k], COUNTER) <= budget]
    if not reachable or reachable[-1] != n:
        return
    total = Usage()
    for result in strategy.replay(conv, reachable, budget, COUNTER):
        total = total + result.extra_usage
        assert result.tokens <= budget
    cold = strategy.prune(conv, budget, COUNTER)
    assert cold.extra_usage == total
    summaries = [m for m in cold.messages if m.is_synthetic]
    assert len(summaries) <= 1
    if summaries:
        folded = [d.message_id for d in cold.decisions if d.action == "summarized"]
        assert list(summaries[0].meta["summary_of"]) == folded
