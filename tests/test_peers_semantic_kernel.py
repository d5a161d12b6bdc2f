"""``sk_truncate`` and ``sk_summarize`` hold exactly what Semantic Kernel's reducers hold.

An application keeps its history in the reducer and awaits ``reduce()`` before each request;
driving the reducer that way directly, on bundled tau-bench, SWE-agent and LoCoMo
conversations at several counts, gives, message by message, what the adapter sends at each
probe (and `prune` of every prefix equals the replay's probe there). The conversions keep
text, tool calls and tool results on every bundled conversation; the adapter runs inside a
running event loop (a notebook cell); breaches show in the ``violations`` columns; without
semantic-kernel, naming it raises an error naming the extra. ``sk_summarize``, with the same
scripted model behind the reducer driven directly, sends the same messages; its summary
replaces exactly the originals the model was given (tool calls and results, which the reducer
leaves out of the summary by default, are dropped); its calls are billed at their probe; with
the local llama.cpp model it writes a real summary.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from peers_support import locomo_start, scripted_summarizer
from semantic_kernel.connectors.ai.prompt_execution_settings import PromptExecutionSettings
from semantic_kernel.contents import (
    ChatHistorySummarizationReducer,
    ChatHistoryTruncationReducer,
    FunctionCallContent,
    FunctionResultContent,
)

from ctxlab import Conversation, datasets
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.providers import ScriptedProvider
from ctxlab.providers.local_llm import LocalLLMServer
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers._semantic_kernel import ID_KEY, from_sk, to_sk
from ctxlab.strategies.peers._sk_service import ProviderChatService
from ctxlab.strategies.peers._summary_calls import SummaryCalls
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


# -- sk_summarize ---------------------------------------------------------------------------


async def _drive_summary(
    conv: Conversation, probes: list[int], provider: ScriptedProvider, **counts: int
) -> list[list[tuple[str, str]]]:
    """The summarization reducer as an application uses it, with the same scripted model."""
    service = ProviderChatService.over(SummaryCalls(provider=provider))
    settings = PromptExecutionSettings(extension_data={"temperature": 0.0})

    def reducer(messages: list[Any]) -> ChatHistorySummarizationReducer:
        return ChatHistorySummarizationReducer(
            service=service, execution_settings=settings, messages=messages, **counts
        )

    history = reducer([])
    out = []
    for k, m in enumerate([*conv.messages, None]):
        if k in probes:
            copy = reducer(list(history.messages))
            await copy.reduce()
            out.append([(sm.role.value, from_sk(sm, None, "x").text) for sm in copy.messages])
        if m is None:
            break
        if m.role == "assistant" and history.messages:
            await history.reduce()
        history.add_message(to_sk(m))
    return out


@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_summarize_equals_the_reducer_driven_directly(conv: Conversation) -> None:
    n = len(conv.messages)
    probes = sorted({*range(1, n, max(1, n // 10)), n})
    for target, threshold in [(4, 2), (10, 10)]:
        counts = {"target_count": target, "threshold_count": threshold}
        want = asyncio.run(_drive_summary(conv, probes, scripted_summarizer(), **counts))
        provider = scripted_summarizer()
        strategy = get_strategy("sk_summarize", provider=provider, **counts)
        got = list(strategy.replay(conv, probes, 4000, COUNTER))
        assert [[(m.role, m.text) for m in p.messages] for p in got] == want
        given = [{m.text for m in call.messages} for call in provider.calls]
        for p in got:
            summaries = [m for m in p.messages if m.is_synthetic]
            assert len(summaries) <= 1 and all(s.role == "assistant" for s in summaries)
            for d in p.decisions:
                m = p.conversation.messages[d.index]
                if d.action == "summarized":  # the summarizer was given it, or its summary
                    assert d.into == summaries[0].id and m.id in summaries[0].meta["summary_of"]
                    assert any(m.text in g for g in given)
                elif d.action == "dropped":  # removed unsummarized: tool calls and results
                    assert m.role == "tool" or m.tool_calls
                else:
                    assert d.action == "kept" and m in p.messages
        assert sum(p.extra_usage.input_tokens for p in got) == 100 * len(provider.calls)
        if conv.dataset == "locomo":
            assert any(p.count("summarized") for p in got)


def test_summarize_calls_are_billed_in_the_report() -> None:
    provider = scripted_summarizer()
    strategy = get_strategy("sk_summarize", provider=provider, target_count=6, threshold_count=2)
    report = compare(
        [locomo_start(60)], [strategy], [600], metrics=["extra_input_tokens", "cost_usd"],
        model="gpt-4o-mini", progress=False,
    )  # fmt: skip
    assert len(provider.calls) > 0
    assert report.df["extra_input_tokens"].sum() == 100 * len(provider.calls)
    assert report.df["cost_usd"].sum() > 0


def test_summarize_needs_a_provider() -> None:
    with pytest.raises(UsageError, match="provider="):
        get_strategy("sk_summarize")


def test_summarize_with_the_local_model(local_llm: LocalLLMServer) -> None:
    conv = locomo_start(40)
    strategy = get_strategy(
        "sk_summarize", provider=local_llm.provider_spec, max_tokens=48, cache=True,
        target_count=6, threshold_count=2,
    )  # fmt: skip
    report = compare(
        [conv], [strategy], [400], metrics=["extra_input_tokens", "extra_output_tokens"],
        model="gpt-4o-mini", probes=[20, 40], progress=False,
    )  # fmt: skip
    pruned = strategy.prune(conv, 400)  # the cached replies: the same walk, no new calls
    summary = next(m for m in pruned.messages if m.is_synthetic)
    assert summary.role == "assistant" and summary.text.strip()
    assert {d.into for d in pruned.decisions if d.action == "summarized"} == {summary.id}
    assert report.df["extra_input_tokens"].sum() > 0
    assert report.df["extra_output_tokens"].sum() > 0
    print(f"\nSemantic Kernel summary by the local model: {summary.text!r}")
