"""The shortcuts that make pruning and replays fast give exactly what the plain way gives.

- BM25 from kept term statistics equals a `bm25s` index built over the same documents, bit for
  bit, and per-prefix scores equal scoring each prefix alone;
- a single window prune counts only the messages it looks at (newest first) and selects what a
  fully counted layout selects;
- one tool-call grouping serves every strategy, duplicate results included;
- a pipeline replay resumes its summary walk where the inputs agree and starts over where
  they do not; an error of its first step comes at the probe where pruning that prefix fails.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategy_helpers import agent_conversation

from ctxlab import datasets
from ctxlab.errors import BudgetUnreachableError
from ctxlab.messages import Conversation, Message, ToolCall
from ctxlab.scoring import (
    KeyDensity,
    Pins,
    Recency,
    Relevance,
    bm25_scores,
    default_scorer,
    prefix_scores,
    terms,
)
from ctxlab.strategies import get_strategy
from ctxlab.strategies._layout import Layout, LazyLayout
from ctxlab.strategies._tool_units import NEVER, sendable_ends, units_of
from ctxlab.strategies.mask_tool_outputs import placeholder_text
from ctxlab.strategies.summarize import Summarize
from ctxlab.tokens import TiktokenCounter, get_counter

COUNTER = get_counter()
LOCOMO = datasets.load("locomo")
TAU = datasets.load("taubench")


def bm25s_reference(documents: list[tuple[str, ...]], weights: dict[str, float]) -> list[float]:
    """What an index of the `bm25s` library scores, summed in sorted term order."""
    import bm25s

    if not documents or not weights or not any(documents):
        return [0.0] * len(documents)
    index = bm25s.BM25()
    index.index([list(d) for d in documents], show_progress=False)
    data, indices, indptr = (index.scores[k] for k in ("data", "indices", "indptr"))
    totals = np.zeros(len(documents))
    cols, vals = [], []
    for term in sorted(weights):
        tid = index.vocab_dict.get(term)
        if tid is None or term == "":
            continue
        start, end = int(indptr[tid]), int(indptr[tid + 1])
        cols.append(indices[start:end])
        vals.append(data[start:end].astype(np.float64) * weights[term])
    if cols:
        totals = np.bincount(np.concatenate(cols), np.concatenate(vals), minlength=len(documents))
    return [float(x) for x in totals]


def test_bm25_is_bm25s_bit_for_bit_on_bundled_conversations() -> None:
    rng = random.Random(3)
    checked = 0
    for conv in [*LOCOMO[:3], *rng.sample(TAU, 4), *datasets.load("sweagent")[:4]]:
        docs = [terms(m.text) for m in conv.messages]
        for _ in range(4):
            k = rng.randint(1, len(docs))
            query = terms(conv.messages[rng.randrange(k)].text)
            weights = {t: 1.0 + rng.random() for t in query} or {"x": 1.0}
            assert bm25_scores(docs[:k], weights) == bm25s_reference(docs[:k], weights)
            checked += 1
    assert checked == 44


_word = st.sampled_from(("red", "apple", "car", "green", "zebra", "éte", "naïve", "x1", "ab", ""))


@given(
    docs=st.lists(st.lists(_word, max_size=12).map(tuple), min_size=1, max_size=12),
    weights=st.dictionaries(_word, st.floats(0.1, 5.0), min_size=1, max_size=5),
)
def test_bm25_is_bm25s_bit_for_bit_on_generated_documents(
    docs: list[tuple[str, ...]], weights: dict[str, float]
) -> None:
    assert bm25_scores(docs, weights) == bm25s_reference(docs, weights)


@pytest.mark.parametrize(
    "scorer",
    [default_scorer(), Relevance(query="pottery class"), Recency(half_life=3), KeyDensity()],
    ids=["default", "relevance-query", "recency", "key-density"],
)
def test_prefix_scores_equal_scoring_each_prefix(scorer) -> None:
    for conv in (LOCOMO[0].prefix(120), max(TAU[:10], key=len)):
        of = prefix_scores(scorer, conv, COUNTER)
        for k in range(0, len(conv.messages) + 1, 7):
            assert of(k) == scorer.score(conv.prefix(k), COUNTER)


def test_prefix_scores_fall_back_to_scoring_each_prefix() -> None:
    class Lengths:
        def score(self, conversation: Conversation, counter) -> list[float]:
            return [float(len(m.text)) / len(conversation.messages) for m in conversation]

    conv = LOCOMO[1].prefix(30)
    of = prefix_scores(Lengths(), conv, COUNTER)
    assert of(10) == Lengths().score(conv.prefix(10), COUNTER)
    pins = Pins(ids={conv.messages[3].id})
    assert prefix_scores(pins, conv, COUNTER)(5) == pins.score(conv.prefix(5), COUNTER)


@pytest.mark.parametrize("budget", [2_000, 8_000])
def test_a_cold_token_window_prune_counts_only_the_newest_messages(budget: int) -> None:
    conv = next(c for c in LOCOMO if c.id == "conv-43")
    cold = TiktokenCounter("o200k_base")  # its own, empty cache
    pruned = get_strategy("token_window").prune(conv, budget, cold)
    counted = cold.cache_size()
    # the window, the pins and the one message that no longer fitted, nothing older
    assert counted <= len(pruned.messages) + 2 < len(conv.messages) // 2
    warm = get_strategy("token_window").prune(conv, budget, COUNTER)
    assert (pruned.messages, pruned.tokens, pruned.decisions) == (
        warm.messages,
        warm.tokens,
        warm.decisions,
    )


@pytest.mark.parametrize("name", ["token_window", "sliding_window", "head_tail", "keep_all"])
def test_lazy_and_counted_layouts_select_the_same(name: str) -> None:
    strategy = get_strategy(name, **({"head": 3} if name == "head_tail" else {}))
    for conv in (LOCOMO[2], *TAU[:40:8], *datasets.load("sweagent")[:5]):
        whole = COUNTER.count_messages(conv.messages)
        eager = Layout(conv.messages, COUNTER)
        for share in (0.1, 0.3, 0.7, 1.2):
            budget = get_counter().count_messages(conv.messages[:1]) + int(whole * share)
            lazy = LazyLayout(conv.messages, COUNTER)
            try:
                a = strategy._select(lazy, len(conv.messages), _budget(budget))
            except BudgetUnreachableError:
                with pytest.raises(BudgetUnreachableError):
                    strategy._select(eager, len(conv.messages), _budget(budget))
                continue
            b = strategy._select(eager, len(conv.messages), _budget(budget))
            assert (a.messages(), a.tokens(), a.decisions()) == (
                b.messages(),
                b.tokens(),
                b.decisions(),
            )


def _budget(n: int):
    from ctxlab.budget import Budget

    return Budget(max_tokens=n)


def _duplicate_result() -> Conversation:
    call = ToolCall(id="c1", name="f", arguments="{}")
    return Conversation(
        id="dup",
        messages=(
            Message(role="system", content="sys", id="s"),
            Message(role="user", content="hello there", id="u"),
            Message(role="assistant", content="", tool_calls=(call,), id="a"),
            Message(role="tool", content="result one", tool_call_id="c1", id="r1"),
            Message(role="assistant", content="so", id="x"),
            Message(role="tool", content="result two", tool_call_id="c1", id="r2"),
            Message(role="user", content="again", id="u2"),
        ),
    )


@pytest.mark.parametrize("name", ["keep_all", "token_window", "importance", "summarize"])
def test_a_second_result_for_an_answered_call_is_an_orphan_everywhere(name: str) -> None:
    conv = _duplicate_result()
    strategy = get_strategy(name)
    probes = range(len(conv.messages) + 1)
    replayed = [r.messages for r in strategy.replay(conv, probes, 10_000, COUNTER)]
    pruned = [strategy.prune(conv.prefix(k), 10_000, COUNTER).messages for k in probes]
    assert replayed == pruned
    assert [m.id for m in pruned[-1]] == ["s", "u", "a", "r1", "x", "u2"]


def test_window_grouping_is_the_unit_tracker_grouping() -> None:
    for conv in (_duplicate_result(), *TAU[:30], *datasets.load("sweagent")):
        msgs = conv.messages
        grouping = sendable_ends(msgs)
        units, tracker = units_of(msgs, [0] * len(msgs))
        for unit in units:
            for j in unit.members:
                expected = unit.end if unit.state == "ok" else NEVER
                assert grouping.end[j] == expected
        assert grouping.orphans == {
            i for i, why in tracker.bad_reason.items() if why == "tool result without its call"
        }


def _masked(conv: Conversation, upto: int) -> Conversation:
    """The conversation with tool outputs before message `upto` replaced by placeholders."""
    out = [
        m.replace(content=placeholder_text("read_file", 99, 1))
        if m.role == "tool" and i < upto
        else m
        for i, m in enumerate(conv.messages)
    ]
    return conv.with_messages(out)


@given(
    plan=st.lists(st.tuples(st.integers(4, 16), st.integers(0, 16), st.integers(0, 16)), max_size=8)
)
def test_a_resumer_prunes_like_prune_whatever_it_is_told(plan) -> None:
    conv = agent_conversation(turns=6, output_words=120)
    strategy = Summarize(keep_last=2)
    budget = COUNTER.count_messages(conv.messages) // 2
    resumer = strategy.resumer(_budget(budget), COUNTER)
    for k, upto, stable in plan:
        prefix = _masked(conv, upto).prefix(k)
        got = resumer.prune(prefix, stable)
        want = strategy.prune(prefix, budget, COUNTER)
        assert (got.messages, got.tokens, got.decisions, got.extra_usage) == (
            want.messages,
            want.tokens,
            want.decisions,
            want.extra_usage,
        )


def test_a_pipeline_replay_fails_at_the_probe_where_its_first_step_fails() -> None:
    conv = agent_conversation(turns=4, output_words=60)
    huge = Message(role="user", content="word " * 3000, id="huge")
    conv = conv.with_messages([*conv.messages, Message(role="assistant", content="ok"), huge])
    strategy = get_strategy("pipeline", steps=["token_window", "summarize", "token_window"])
    budget = 2_000
    probes = list(range(1, len(conv.messages) + 1))
    expected = []
    for k in probes:
        try:
            expected.append(strategy.prune(conv.prefix(k), budget, COUNTER).messages)
        except BudgetUnreachableError:
            break
    assert len(expected) == len(probes) - 1  # only the last prefix holds the huge message
    got = []
    with pytest.raises(BudgetUnreachableError):
        for result in strategy.replay(conv, probes, budget, COUNTER):
            got.append(result.messages)
    assert got == expected
