"""``agents_tool_trim`` sends exactly what the Agents SDK's ``ToolOutputTrimmer`` returns.

The conversion to the SDK's input items and back is lossless on every bundled conversation;
on tau-bench, SWE-agent and LoCoMo conversations at budgets 1k-16k the adapter's messages,
converted again, equal item by item what the trimmer returns when called directly; the
trimmer ignores the budget, and the ``violations`` columns show it; without the SDK, naming
it raises an error naming the extra.
"""

from __future__ import annotations

import json
import sys

import pytest
from agents.extensions import ToolOutputTrimmer
from agents.run_config import CallModelData, ModelInputData

from ctxlab import Conversation, datasets
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers.agents_tool_trim import from_agents, to_agents
from ctxlab.tokens import get_counter

COUNTER = get_counter()
BUDGETS = [1000, 2000, 4000, 8000, 16000]
SAMPLE = [
    *datasets.load("taubench")[:3],
    *datasets.load("sweagent")[:2],
    datasets.load("locomo")[0],
]
PARAMS = [{}, {"recent_turns": 1, "max_output_chars": 200, "preview_chars": 50}]


@pytest.mark.parametrize("name", datasets.names())
def test_conversion_is_lossless_on_every_bundled_conversation(name: str) -> None:
    for conv in datasets.load(name):
        converted = to_agents(conv.messages)
        back = from_agents(converted, conv.messages)
        assert all(a is b for a, b in zip(back, conv.messages, strict=True))
        outputs = {i["call_id"]: i["output"] for i in converted.items if "output" in i}
        calls = [i for i in converted.items if i["type"] == "function_call"]
        for m in conv.messages:
            if m.role == "tool":
                assert outputs[m.tool_call_id] == m.text
        want = [(c.id, c.name, c.arguments) for m in conv.messages for c in m.tool_calls]
        assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == want


def test_a_changed_output_comes_back_as_that_tool_result() -> None:
    conv = SAMPLE[0]
    converted = to_agents(conv.messages)
    j = next(n for n, i in enumerate(converted.items) if i["type"] == "function_call_output")
    converted.items[j] = {**converted.items[j], "output": "[Trimmed]"}
    back = from_agents(converted, conv.messages)
    m = conv.messages[converted.owners[j]]
    changed = [b for a, b in zip(conv.messages, back, strict=True) if a is not b]
    assert [(b.id, b.text, b.tool_call_id) for b in changed] == [
        (m.id, "[Trimmed]", m.tool_call_id)
    ]


@pytest.mark.parametrize("params", PARAMS, ids=json.dumps)
@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_output_equals_the_trimmer_called_directly(conv: Conversation, params: dict) -> None:
    strategy = get_strategy("agents_tool_trim", **params)
    converted = to_agents(conv.messages)
    data = ModelInputData(input=converted.items, instructions=converted.instructions)
    want = ToolOutputTrimmer(**params)(CallModelData(model_data=data, agent=None, context=None))
    for budget in BUDGETS:  # the trimmer takes no budget: every budget gives the same output
        got = strategy.prune(conv, budget, COUNTER)
        again = to_agents(got.messages)
        assert again.items == want.input and again.instructions == want.instructions
        assert [m.id for m in got.messages] == [m.id for m in conv.messages]
        assert got.tokens == COUNTER.count_messages(got.messages)
        cut = {d.message_id for d in got.decisions if d.action == "truncated"}
        changed = {m.id for m, o in zip(got.messages, conv.messages, strict=True) if m is not o}
        assert cut == changed and all(conv[conv.index_of(i)].role == "tool" for i in cut)


def test_trims_tau_bench_but_never_a_single_task_agent_run() -> None:
    """Old means before the recent_turns-th user message from the end (at least the last).

    A SWE-agent run has one user message, the task, so everything after it is "recent".
    """
    strategy = get_strategy("agents_tool_trim")
    tau = [strategy.prune(c, 4000).count("truncated") for c in datasets.load("taubench")[:10]]
    swe = [strategy.prune(c, 4000).count("truncated") for c in datasets.load("sweagent")]
    assert sum(tau) > 0 and sum(swe) == 0
    ones = get_strategy("agents_tool_trim", recent_turns=1)
    assert sum(ones.prune(c, 4000).count("truncated") for c in datasets.load("sweagent")) == 0


def test_budget_breaches_are_counted_not_repaired() -> None:
    assert "agents_tool_trim" in peer_names() and "agents_tool_trim" not in default_names()
    convs = [c for c in SAMPLE if c.dataset in ("taubench", "sweagent")]
    report = compare(
        convs, ["agents_tool_trim", "token_window"], [2000], metrics=[Violations()],
        progress=False,
    )  # fmt: skip
    df = report.df.dropna(subset=["violations"])
    peer = df[df["strategy"] == "agents_tool_trim"]
    assert (df[df["strategy"] == "token_window"]["violations"] == 0).all()
    assert peer["violations_over_budget"].sum() > 0 and peer["over_budget_tokens"].max() > 0
    assert peer["violations_orphan_result"].sum() == 0  # it never drops a message


def test_parameters_from_a_spec_and_bad_values() -> None:
    strategy = get_strategy("agents_tool_trim", trimmable_tools=["get_user_details"])
    assert strategy.trimmable_tools == ("get_user_details",)
    assert strategy.label == "agents_tool_trim(trimmable_tools=('get_user_details',))"
    with pytest.raises(UsageError, match="recent_turns"):
        get_strategy("agents_tool_trim", recent_turns=0)


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "agents.extensions", None)
    with pytest.raises(MissingDependencyError, match=r"ctxlab\[peers\]"):
        get_strategy("agents_tool_trim")
