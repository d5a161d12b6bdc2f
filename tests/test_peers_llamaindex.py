"""``llamaindex_buffer`` and ``llamaindex_summary`` send exactly what LlamaIndex returns.

``llamaindex_buffer``: on bundled tau-bench, SWE-agent and LoCoMo conversations at budgets
1k-16k the adapter's messages equal, one by one, those of a ``ChatMemoryBuffer`` built directly
with LlamaIndex's defaults; the conversions keep text, tool calls and tool results on every bundled
conversation; the default tokenizer works offline with ``TIKTOKEN_CACHE_DIR`` set; breaches
show in the ``violations`` columns; without llama-index-core, naming it raises an error naming
the extra.

``llamaindex_summary``: a ``ChatSummaryMemoryBuffer`` driven directly as a chat engine drives
it (``get()`` before each reply), with the same scripted summarizer, holds at every probe the
messages the adapter sends; the summary replaces exactly the originals the summarizer was
given; its calls are billed at their probe; with the local llama.cpp model it writes a real
summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ToolCallBlock
from llama_index.core.memory import ChatMemoryBuffer, ChatSummaryMemoryBuffer
from peers_support import locomo_start, scripted_summarizer

from ctxlab import Conversation, datasets
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.providers import ScriptedProvider
from ctxlab.providers.local_llm import LocalLLMServer
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers._llamaindex import ID_KEY, from_llamaindex, to_llamaindex
from ctxlab.strategies.peers._llamaindex_llm import ProviderLLM
from ctxlab.strategies.peers._summary_calls import SummaryCalls
from ctxlab.tokens import get_counter

COUNTER = get_counter()
BUDGETS = [1000, 2000, 4000, 8000, 16000]
SAMPLE = [
    *datasets.load("taubench")[:2],
    *datasets.load("sweagent")[:2],
    datasets.load("locomo")[1],
]


@pytest.mark.parametrize("name", datasets.names())
def test_conversion_keeps_text_tool_calls_and_results(name: str) -> None:
    for conv in datasets.load(name):
        li = to_llamaindex(conv.messages)
        by_id = {m.id: m for m in conv.messages}
        assert all(a is b for a, b in zip(from_llamaindex(li, by_id), conv.messages, strict=True))
        for m, lm in zip(conv.messages, li, strict=True):
            assert lm.role.value == m.role and lm.content == m.text
            assert lm.additional_kwargs[ID_KEY] == m.id
            assert lm.additional_kwargs.get("tool_call_id") == m.tool_call_id
            calls = [b for b in lm.blocks if isinstance(b, ToolCallBlock)]
            assert [(b.tool_call_id, b.tool_name) for b in calls] == [
                (c.id, c.name) for c in m.tool_calls
            ]
        # without the ids (messages LlamaIndex wrote itself) the content comes back too
        for lm in li:
            del lm.additional_kwargs[ID_KEY]
        back = from_llamaindex(li, {})
        assert [(m.role, m.text, m.tool_calls, m.tool_call_id, m.name) for m in back] == [
            (m.role, m.text, m.tool_calls, m.tool_call_id, m.name) for m in conv.messages
        ]


@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_buffer_equals_chat_memory_buffer_called_directly(
    conv: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = get_strategy("llamaindex_buffer")
    dropped_any = False
    for budget in BUDGETS:
        monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)  # LlamaIndex's offline default
        direct = ChatMemoryBuffer.from_defaults(
            chat_history=to_llamaindex(conv.messages), token_limit=budget
        )
        want = direct.get()
        got = strategy.prune(conv, budget, COUNTER)
        assert [m.id for m in got.messages] == [lm.additional_kwargs[ID_KEY] for lm in want]
        assert [m.text for m in got.messages] == [lm.content for lm in want]
        assert got.tokens == COUNTER.count_messages(got.messages)  # ctxlab's count, not theirs
        kept = {d.message_id for d in got.decisions if d.action == "kept"}
        assert kept == {lm.additional_kwargs[ID_KEY] for lm in want}
        assert {d.action for d in got.decisions} <= {"kept", "dropped"}
        dropped_any |= len(want) < len(conv.messages)
    assert dropped_any


def test_tokenizer_works_offline_with_tiktoken_cache_dir_set(tmp_path: Path) -> None:
    code = (
        "from ctxlab import datasets; from ctxlab.strategies import get_strategy; "
        "c = datasets.load('sweagent')[0]; "
        "print(len(get_strategy('llamaindex_buffer').prune(c, 2000).messages))"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) > 0
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded into the user's cache


def test_buffer_breaches_are_counted_not_repaired() -> None:
    assert "llamaindex_buffer" in peer_names() and "llamaindex_buffer" not in default_names()
    convs = [c for c in SAMPLE if c.dataset in ("taubench", "sweagent")]
    report = compare(
        convs, ["llamaindex_buffer", "token_window"], [1000, 2000], metrics=[Violations()],
        progress=False,
    )  # fmt: skip
    df = report.df.dropna(subset=["violations"])
    peer = df[df["strategy"] == "llamaindex_buffer"]
    assert (df[df["strategy"] == "token_window"]["violations"] == 0).all()
    # it counts no role overhead and nothing for tool calls: over the budget by ctxlab's count
    assert peer["violations_over_budget"].sum() > 0
    assert (peer["over_budget_tokens"] > 0).sum() == peer["violations_over_budget"].sum()
    assert peer["violations_system_lost"].sum() > 0  # the system message is not pinned


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_index.core.memory", None)
    with pytest.raises(MissingDependencyError, match=r"ctxlab\[peers\]"):
        get_strategy("llamaindex_buffer")


def test_tool_call_arguments_round_trip_as_written() -> None:
    conv = datasets.load("taubench")[0]
    calls = [c for m in conv.messages for c in m.tool_calls]
    assert calls
    for lm in to_llamaindex(conv.messages):
        for b in lm.blocks:
            if isinstance(b, ToolCallBlock) and isinstance(b.tool_kwargs, dict):
                assert json.dumps(b.tool_kwargs) in {c.arguments for c in calls}


# -- llamaindex_summary ---------------------------------------------------------------------


def _drive_summary(
    conv: Conversation, probes: list[int], budget: int, provider: ScriptedProvider
) -> list[list[tuple[str, str]]]:
    """The buffer as a chat engine uses it: get() before each reply; a copy at each probe."""
    llm = ProviderLLM(SummaryCalls(provider=provider, temperature=0.0))
    memory = ChatSummaryMemoryBuffer.from_defaults(llm=llm, token_limit=budget)
    out = []
    for k, m in enumerate([*conv.messages, None]):
        if k in probes:
            copy = ChatSummaryMemoryBuffer.from_defaults(
                chat_history=list(memory.get_all()), llm=llm, token_limit=budget
            )
            out.append([(lm.role.value, lm.content or "") for lm in copy.get()])
        if m is None:
            break
        if m.role == "assistant" and memory.get_all():
            memory.get()
        memory.put(to_llamaindex([m])[0])
    return out


@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_summary_equals_the_buffer_driven_directly(
    conv: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)  # LlamaIndex's offline default
    n = len(conv.messages)
    probes = sorted({*range(1, n, max(1, n // 8)), n})
    summarized_any = False
    for budget in [1000, 4000]:
        want = _drive_summary(conv, probes, budget, scripted_summarizer())
        provider = scripted_summarizer()
        strategy = get_strategy("llamaindex_summary", provider=provider)
        got = list(strategy.replay(conv, probes, budget, COUNTER))
        assert [[(m.role, m.text) for m in p.messages] for p in got] == want
        requests = [call.messages[-1].text for call in provider.calls]
        for p in got:
            summaries = [m for m in p.messages if m.is_synthetic]
            assert len(summaries) <= 1
            for d in p.decisions:  # every original is kept, or replaced by the summary sent
                m = p.conversation.messages[d.index]
                if d.action == "summarized":
                    assert d.into == summaries[0].id and m.id in summaries[0].meta["summary_of"]
                    assert any(m.text in r for r in requests)  # the summarizer was given it
                else:
                    assert d.action == "kept" and m in p.messages
            assert p.tokens == COUNTER.count_messages(p.messages)
            summarized_any |= bool(summaries)
        # the summarizer's tokens are billed at the probe where its calls were made
        assert sum(p.extra_usage.requests for p in got) == len(provider.calls)
        assert sum(p.extra_usage.input_tokens for p in got) == 100 * len(provider.calls)
    # (short ones may only ever overflow by their system message, which LlamaIndex returns
    # as is, unsummarized, over the limit)
    assert summarized_any or conv.dataset != "locomo"


def test_summary_calls_are_billed_in_the_report() -> None:
    provider = scripted_summarizer()
    strategy = get_strategy("llamaindex_summary", provider=provider)
    report = compare(
        [locomo_start(60)], [strategy], [600], metrics=["extra_input_tokens", "cost_usd"],
        model="gpt-4o-mini", progress=False,
    )  # fmt: skip
    df = report.df
    assert len(provider.calls) > 0
    assert df["extra_input_tokens"].sum() == 100 * len(provider.calls)
    assert df["cost_usd"].sum() > 0


def test_summary_needs_a_provider() -> None:
    with pytest.raises(UsageError, match="provider="):
        get_strategy("llamaindex_summary")


def test_summary_with_the_local_model(local_llm: LocalLLMServer) -> None:
    conv = locomo_start(40)
    strategy = get_strategy(
        "llamaindex_summary", provider=local_llm.provider_spec, max_tokens=48, cache=True
    )
    report = compare(
        [conv], [strategy], [400], metrics=["extra_input_tokens", "extra_output_tokens"],
        model="gpt-4o-mini", probes=[20, 40], progress=False,
    )  # fmt: skip
    pruned = strategy.prune(conv, 400)  # the cached replies: the same walk, no new calls
    summary = next(m for m in pruned.messages if m.is_synthetic)
    assert summary.role == "system" and summary.text.strip()
    assert {d.into for d in pruned.decisions if d.action == "summarized"} == {summary.id}
    assert report.df["extra_input_tokens"].sum() > 0
    assert report.df["extra_output_tokens"].sum() > 0
    print(f"\nLlamaIndex summary by the local model: {summary.text!r}")
