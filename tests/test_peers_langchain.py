"""``langchain_trim`` sends exactly what LangChain's ``trim_messages`` returns, unrepaired.

On bundled tau-bench, SWE-agent and LoCoMo conversations at budgets 1k-16k, with both
counters, the adapter's messages equal, one by one, those of ``trim_messages`` called directly;
its breaches show in the ``violations`` columns; without langchain-core, naming it raises an
error naming the extra.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately, trim_messages

from ctxlab import Conversation, datasets
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab._specs import strategy_from
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers.langchain_trim import SPLITTERS, from_langchain, to_langchain
from ctxlab.tokens import get_counter

COUNTER = get_counter()
BUDGETS = [1000, 2000, 4000, 8000, 16000]


def _sample() -> list[Conversation]:
    return [
        *datasets.load("taubench")[:3],
        *datasets.load("sweagent")[:2],
        datasets.load("locomo")[0],
    ]


SAMPLE = _sample()


def test_conversion_keeps_text_tool_calls_and_results() -> None:
    for conv in SAMPLE:
        lc = to_langchain(conv.messages)
        by_id = {m.id: m for m in conv.messages}
        assert all(a is b for a, b in zip(from_langchain(lc, by_id), conv.messages, strict=True))
        for m, lm in zip(conv.messages, lc, strict=True):
            assert lm.id == m.id and lm.content == m.text
            if isinstance(lm, AIMessage):
                got = [(c["id"], c["name"], c["args"]) for c in lm.tool_calls]
                assert got == [(c.id, c.name, json.loads(c.arguments)) for c in m.tool_calls]
            if isinstance(lm, ToolMessage):
                assert lm.tool_call_id == m.tool_call_id


@pytest.mark.parametrize("counter", ["approximate", "exact"])
@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_output_equals_trim_messages_called_directly(conv: Conversation, counter: str) -> None:
    strategy = get_strategy("langchain_trim", counter=counter)
    by_id = {m.id: m for m in conv.messages}

    def exact(messages: list[BaseMessage]) -> int:
        return COUNTER.count_messages(from_langchain(messages, by_id))

    token_counter: Callable[[list[BaseMessage]], int] = (
        count_tokens_approximately if counter == "approximate" else exact
    )
    dropped_any = False
    for budget in BUDGETS:
        want = trim_messages(
            to_langchain(conv.messages),
            max_tokens=budget,
            token_counter=token_counter,
            strategy="last",
            include_system=True,
            start_on="human",
            allow_partial=False,
        )
        got = strategy.prune(conv, budget, COUNTER)
        assert [m.id for m in got.messages] == [m.id for m in want]
        assert [m.text for m in got.messages] == [m.content for m in want]
        assert got.tokens == COUNTER.count_messages(got.messages)  # ctxlab's count, not theirs
        actions = {d.message_id: d.action for d in got.decisions}
        assert {i for i, a in actions.items() if a == "kept"} == {m.id for m in want}
        dropped_any |= len(want) < len(conv.messages)
    assert dropped_any


def test_peers_run_only_when_named_and_breaches_are_counted() -> None:
    assert "langchain_trim" in peer_names() and "langchain_trim" not in default_names()
    convs = [c for c in SAMPLE if c.dataset in ("taubench", "sweagent")]
    loose = get_strategy("langchain_trim", start_on=None)
    report = compare(
        convs, [loose, "token_window"], [2000, 4000], metrics=[Violations()], progress=False
    )
    df = report.df.dropna(subset=["violations"])
    peer = df[df["strategy"] == loose.label]
    assert (df[df["strategy"] == "token_window"]["violations"] == 0).all()
    assert peer["violations_orphan_result"].sum() > 0  # a tool result cut from its call
    assert (peer["violations"] >= peer["violations_orphan_result"]).all()


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core.messages", None)
    with pytest.raises(MissingDependencyError, match=r"ctxlab\[peers\]"):
        get_strategy("langchain_trim")


def _paragraphs(text: str) -> list[str]:
    parts = text.split("\n\n")
    return [p + "\n\n" for p in parts[:-1]] + parts[-1:]


@pytest.mark.parametrize("splitter", ["sentences", "words", _paragraphs], ids=str)
def test_text_splitter_by_name_or_function_equals_trim_messages(splitter: object) -> None:
    strategy = get_strategy("langchain_trim", allow_partial=True, text_splitter=splitter)
    function = SPLITTERS[splitter] if isinstance(splitter, str) else splitter
    cut_any = False
    for conv in SAMPLE:
        for budget in BUDGETS[:3]:
            want = trim_messages(
                to_langchain(conv.messages),
                max_tokens=budget,
                token_counter=count_tokens_approximately,
                strategy="last",
                include_system=True,
                start_on="human",
                allow_partial=True,
                text_splitter=function,
            )
            got = strategy.prune(conv, budget, COUNTER)
            assert [m.id for m in got.messages] == [m.id for m in want]
            assert [m.text for m in got.messages] == [m.content for m in want]
            cut_any |= got.count("truncated") > 0
    assert cut_any


def test_text_splitter_from_a_spec_string() -> None:
    strategy = strategy_from("langchain_trim:allow_partial=true,text_splitter=words")
    assert strategy.label == "langchain_trim(allow_partial=True, text_splitter='words')"
    assert all("".join(SPLITTERS["words"](m.text)) == m.text for m in SAMPLE[0].messages)
    with pytest.raises(UsageError, match="text_splitter"):
        get_strategy("langchain_trim", text_splitter="paragraphs")
