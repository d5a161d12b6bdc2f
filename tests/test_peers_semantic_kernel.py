"""``sk_truncate`` holds exactly what Semantic Kernel's truncation reducer holds.

An application keeps its history in the reducer and awaits ``reduce()`` before each request;
driving the reducer that way directly, on bundled tau-bench, SWE-agent and LoCoMo
conversations at several counts, gives, message by message, what the adapter sends at each
probe (and `prune` of every prefix equals the replay's probe there). The conversions keep
text, tool calls and tool results on every bundled conversation; the adapter runs inside a
running event loop (a notebook cell); breaches show in the ``violations`` columns; without
semantic-kernel, naming it raises an error naming the extra.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from semantic_kernel.contents import (
    ChatHistoryTruncationReducer,
    FunctionCallContent,
    FunctionResultContent,
)

from ctxlab import Conversation, datasets
from ctxlab.errors import MissingDependencyError
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers._semantic_kernel import ID_KEY, from_sk, to_sk
from ctxlab.tokens import get_counter

COUNTER = get_counter()
SAMPLE = [
    *datasets.load("taubench")[:2],
    *datasets.load("sweagent")[:2],
    datasets.load("locomo")[1],
]
COUNTS = [(4, 0), (10, 10), (30, 5)]


@pytest.mark.parametrize("name", datasets.names())
def test_conversion_keeps_text_tool_calls_and_results(name: str) -> None:
    for conv in datasets.load(name):
        for m in conv.messages:
            sm = to_sk(m)
            assert from_sk(sm, m, m.id) is m and sm.metadata[ID_KEY] == m.id
            calls = [i for i in sm.items if isinstance(i, FunctionCallContent)]
            assert [(i.id, i.name, i.arguments) for i in calls] == [
                (c.id, c.name, c.arguments) for c in m.tool_calls
            ]
            results = [i for i in sm.items if isinstance(i, FunctionResultContent)]
            assert [(r.id, r.result) for r in results] == (
                [(m.tool_call_id, m.text)] if m.role == "tool" else []
            )
            new = from_sk(sm, None, "x")  # a message the reducer wrote: rebuilt from its items
            assert (new.role, new.text, new.tool_calls, new.tool_call_id, new.name) == (
                m.role, m.text, m.tool_calls, m.tool_call_id, m.name,
            )  # fmt: skip


async def _drive(conv: Conversation, probes: list[int], target: int, threshold: int) -> list[Any]:
    """The reducer as an application uses it: reduce before each reply; a copy at each probe."""
    history = ChatHistoryTruncationReducer(target_count=target, threshold_count=threshold)
    out = []
    for k, m in enumerate(conv.messages):
        if k in probes:
            copy = ChatHistoryTruncationReducer(
                target_count=target, threshold_count=threshold, messages=list(history.messages)
            )
            await copy.reduce()
            out.append([sm.metadata[ID_KEY] for sm in copy.messages])
        if m.role == "assistant" and history.messages:
            await history.reduce()
        history.add_message(to_sk(m))
    return out


@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_truncate_equals_the_reducer_driven_directly(conv: Conversation) -> None:
    n = len(conv.messages)
    probes = sorted({*range(1, n, max(1, n // 12)), n - 1})
    cut_any = False
    for target, threshold in COUNTS:
        strategy = get_strategy("sk_truncate", target_count=target, threshold_count=threshold)
        want = asyncio.run(_drive(conv, probes, target, threshold))
        got = list(strategy.replay(conv, probes, 4000, COUNTER))
        assert [[m.id for m in p.messages] for p in got] == want
        for k, p in zip(probes[::4], got[::4], strict=False):
            assert [m.id for m in strategy.prune(conv.prefix(k), 4000).messages] == [
                m.id for m in p.messages
            ]
        for p in got:
            assert all(m is conv.messages[p.conversation.messages.index(m)] for m in p.messages)
            assert {d.action for d in p.decisions} <= {"kept", "dropped"}
            assert p.tokens == COUNTER.count_messages(p.messages)
        cut_any |= any(len(p.messages) < len(p.conversation.messages) for p in got)
    assert cut_any


def test_runs_inside_a_running_event_loop() -> None:
    conv = SAMPLE[0]
    strategy = get_strategy("sk_truncate", target_count=4, threshold_count=0)

    async def in_a_cell() -> list[str]:
        return [m.id for m in strategy.prune(conv, 4000).messages]

    assert asyncio.run(in_a_cell()) == [m.id for m in strategy.prune(conv, 4000).messages]


def test_truncate_breaches_are_counted_not_repaired() -> None:
    assert "sk_truncate" in peer_names() and "sk_truncate" not in default_names()
    convs = [c for c in SAMPLE if c.dataset in ("taubench", "sweagent")]
    report = compare(
        convs, ["sk_truncate", "token_window"], [1000, 2000], metrics=[Violations()],
        progress=False,
    )  # fmt: skip
    df = report.df.dropna(subset=["violations"])
    peer = df[df["strategy"] == "sk_truncate"]
    assert (df[df["strategy"] == "token_window"]["violations"] == 0).all()
    assert peer["violations_over_budget"].sum() > 0  # it counts messages, not tokens
    assert (peer["over_budget_tokens"] > 0).sum() == peer["violations_over_budget"].sum()


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "semantic_kernel", None)
    with pytest.raises(MissingDependencyError, match=r"ctxlab\[peers\]"):
        get_strategy("sk_truncate")
