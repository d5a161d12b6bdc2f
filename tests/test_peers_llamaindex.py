"""``llamaindex_buffer`` sends exactly what LlamaIndex's ``ChatMemoryBuffer.get()`` returns.

On bundled tau-bench, SWE-agent and LoCoMo conversations at budgets 1k-16k the adapter's
messages equal, one by one, those of a ``ChatMemoryBuffer`` built directly with LlamaIndex's
defaults; the conversions keep text, tool calls and tool results on every bundled
conversation; the default tokenizer works offline with ``TIKTOKEN_CACHE_DIR`` set; breaches
show in the ``violations`` columns; without llama-index-core, naming it raises an error naming
the extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ToolCallBlock
from llama_index.core.memory import ChatMemoryBuffer

from ctxlab import Conversation, datasets
from ctxlab.errors import MissingDependencyError
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers._llamaindex import ID_KEY, from_llamaindex, to_llamaindex
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
