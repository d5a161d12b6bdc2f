"""``litellm_trim`` sends exactly what ``litellm.utils.trim_messages`` returns, unrepaired.

On bundled tau-bench, SWE-agent and LoCoMo conversations at budgets 1k-16k the adapter's
messages equal, one by one, those LiteLLM returns when called directly on the same OpenAI
dicts; its orphan tool results show in the ``violations`` columns; the process's
``TIKTOKEN_CACHE_DIR`` survives the call.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctxlab import Conversation, datasets
from ctxlab.formats.openai_chat import to_openai
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers.litellm_trim import litellm_trim_messages
from ctxlab.tokens import get_counter

COUNTER = get_counter()
BUDGETS = [1000, 2000, 4000, 8000, 16000]
SAMPLE = [
    *datasets.load("taubench")[:2],
    *datasets.load("sweagent")[:2],
    datasets.load("locomo")[0],
]
TRIM = litellm_trim_messages()  # imported once: LiteLLM takes seconds to import


@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_output_equals_litellm_called_directly(
    conv: Conversation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    strategy = get_strategy("litellm_trim")
    dropped_any = False
    for budget in BUDGETS:
        want = TRIM(to_openai(conv.messages), max_tokens=budget)  # sets TIKTOKEN_CACHE_DIR
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
        got = strategy.prune(conv, budget, COUNTER)
        assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)  # the adapter puts it back
        assert [m.role for m in got.messages] == [d["role"] for d in want]
        assert [m.text for m in got.messages] == [d.get("content") or "" for d in want]
        assert [m.tool_call_id for m in got.messages] == [d.get("tool_call_id") for d in want]
        assert got.tokens == COUNTER.count_messages(got.messages)
        dropped_any |= len(want) < len(conv.messages)
    assert dropped_any


def test_orphan_tool_results_are_counted_not_repaired() -> None:
    assert "litellm_trim" in peer_names() and "litellm_trim" not in default_names()
    convs = [c for c in SAMPLE if c.dataset in ("taubench", "sweagent")]
    report = compare(
        convs, ["litellm_trim", "token_window"], [2000, 4000], metrics=[Violations()],
        progress=False,
    )  # fmt: skip
    df = report.df.dropna(subset=["violations"])
    peer = df[df["strategy"] == "litellm_trim"]
    assert (df[df["strategy"] == "token_window"]["violations"] == 0).all()
    assert len(peer) > 0 and peer["violations"].sum() > 0
    assert (peer["violations"] >= peer["violations_orphan_result"]).all()
