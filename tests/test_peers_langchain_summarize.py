"""``langchain_summarize`` sends exactly what LangChain's ``SummarizationMiddleware`` returns.

On bundled tau-bench, SWE-agent and LoCoMo conversations at budgets 1k-16k, the adapter's
messages equal, one by one, the state ``before_model`` returns when called directly (with
ctxlab's extractive summarizer through LangChain's ``summarizer=`` hook, and with a provider
prompted by LangChain); the summarizer's calls are billed in ``extra_usage``; the recorded
SmolLM2 cassette replays offline; breaches show in the ``violations`` columns.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import peer_scenarios
import pytest
from langchain.agents.middleware.summarization import SummarizationMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import BaseMessage

from ctxlab import Conversation, Message, datasets
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.providers import ScriptedProvider
from ctxlab.strategies import default_names, get_strategy, peer_names
from ctxlab.strategies.peers._langchain_model import ProviderChatModel
from ctxlab.strategies.peers.langchain_trim import to_langchain
from ctxlab.summarizers import ExtractiveSummarizer
from ctxlab.tokens import get_counter

COUNTER = get_counter()
BUDGETS = [1000, 2000, 4000, 8000, 16000]
SAMPLE = [
    *datasets.load("taubench")[:3],
    *datasets.load("sweagent")[:2],
    datasets.load("locomo")[0],
]
PARAMS: list[dict[str, Any]] = [
    {},
    {"keep": ("fraction", 0.5), "trigger": ("fraction", 0.8), "counter": "exact"},
]


def _as_ctxlab(messages: Sequence[BaseMessage], by_id: dict[str, Message]) -> list[Message]:
    return [by_id[m.id].replace(content=m.text) for m in messages]


def _direct(
    conv: Conversation, budget: int, params: dict[str, Any], **kwargs: Any
) -> dict[str, Any] | None:
    """``before_model`` of the middleware built by hand, on the conversation's messages."""
    by_id = {m.id: m for m in conv.messages}
    kwargs.setdefault(
        "model", GenericFakeChatModel(messages=iter(()), profile={"max_input_tokens": budget})
    )
    if params.get("counter") == "exact":
        kwargs["token_counter"] = lambda ms: COUNTER.count_messages(_as_ctxlab(ms, by_id))
    if "summarizer" not in kwargs:
        extractive = ExtractiveSummarizer()

        def summarize(ms: list[BaseMessage]) -> str:
            return extractive.summarize(None, _as_ctxlab(ms, by_id), 400, COUNTER).text

        kwargs["summarizer"] = summarize
    middleware = SummarizationMiddleware(
        trigger=params.get("trigger", ("fraction", 1.0)),
        keep=params.get("keep", ("messages", 20)),
        **kwargs,
    )
    result: dict[str, Any] | None = middleware.before_model(
        {"messages": to_langchain(conv.messages)}, None
    )
    return result


def _assert_same(got: Any, want: dict[str, Any] | None, conv: Conversation) -> None:
    if want is None:
        assert got.messages == conv.messages and got.count("kept") == len(conv.messages)
        return
    head, *preserved = want["messages"][1:]
    summary, *rest = got.messages
    assert summary.text == head.text and summary.is_synthetic and summary.role == "user"
    assert [m.id for m in rest] == [m.id for m in preserved]
    assert [m.text for m in rest] == [m.text for m in preserved]
    folded = [d for d in got.decisions if d.action == "summarized"]
    assert {d.into for d in folded} == {summary.id}
    assert len(folded) + len(rest) == len(conv.messages)


@pytest.mark.parametrize("params", PARAMS, ids=json.dumps)
@pytest.mark.parametrize("conv", SAMPLE, ids=lambda c: f"{c.dataset}:{c.id}")
def test_output_equals_the_middleware_called_directly(
    conv: Conversation, params: dict[str, Any]
) -> None:
    strategy = get_strategy("langchain_summarize", **params)
    summarized_any = False
    for budget in BUDGETS:
        got = strategy.prune(conv, budget, COUNTER)
        want = _direct(conv, budget, params)
        _assert_same(got, want, conv)
        assert got.tokens == COUNTER.count_messages(got.messages)
        assert got.extra_usage.requests == 0  # the extractive summarizer calls no model
        summarized_any |= want is not None
    if len(conv.messages) > 20:  # more than LangChain keeps by default: 1k is below it
        assert summarized_any


def _scripted() -> ScriptedProvider:
    return ScriptedProvider(lambda ms: f"{len(ms)} message(s), {len(ms[-1].text)} characters")


@pytest.mark.parametrize("conv", SAMPLE[:1] + SAMPLE[3:], ids=lambda c: f"{c.dataset}:{c.id}")
def test_a_provider_is_prompted_by_langchain_and_billed(conv: Conversation) -> None:
    keep = {"keep": ("fraction", 0.5)}
    strategy = get_strategy("langchain_summarize", provider=_scripted(), **keep)
    calls = 0
    for budget in (1000, 4000):
        got = strategy.prune(conv, budget, COUNTER)
        model = ProviderChatModel(provider=_scripted(), max_tokens=400,
                                  profile={"max_input_tokens": budget})  # fmt: skip
        want = _direct(conv, budget, keep, model=model, summarizer=None)
        _assert_same(got, want, conv)
        assert got.extra_usage == sum(model.usage, got.extra_usage.__class__())
        calls += got.extra_usage.requests
        if want is not None:
            assert got.extra_usage.requests == 1 and got.extra_usage.input_tokens > 0
            assert "Context Extraction Assistant" not in got.messages[0].text  # the reply only
    assert calls > 0


def test_the_recorded_local_model_replays_offline() -> None:
    expected = json.loads(peer_scenarios.EXPECTED.read_text(encoding="utf-8"))
    assert peer_scenarios.summaries(peer_scenarios.replay_provider()) == expected
    assert sum(e["requests"] for e in expected) >= 3 and all(e["summary"] for e in expected)


def test_the_system_message_is_summarized_away_and_counted() -> None:
    conv = datasets.load("taubench")[0]
    got = get_strategy("langchain_summarize").prune(conv, 2000, COUNTER)
    assert got.decisions[0].action == "summarized" and conv.messages[0].role == "system"
    again = get_strategy("langchain_summarize").prune(conv, 2000, COUNTER)
    assert again.messages == got.messages  # the summary's id too: replays name it the same
    report = compare([conv], ["langchain_summarize"], [2000], metrics=[Violations()],
                     progress=False)  # fmt: skip
    assert report.df["violations_system_lost"].iloc[-1] == 1


def test_breaches_are_counted_not_repaired() -> None:
    assert "langchain_summarize" in peer_names() and "langchain_summarize" not in default_names()
    convs = [c for c in SAMPLE if c.dataset in ("taubench", "sweagent")]
    report = compare(
        convs, ["langchain_summarize", "token_window"], [2000], metrics=[Violations()],
        progress=False,
    )  # fmt: skip
    df = report.df.dropna(subset=["violations"])
    peer = df[df["strategy"] == "langchain_summarize"]
    assert (df[df["strategy"] == "token_window"]["violations"] == 0).all()
    assert peer["over_budget_tokens"].max() > 0  # 20 messages kept, whatever their size


def test_parameters_from_a_spec_and_bad_values() -> None:
    from ctxlab.lab._specs import strategy_from

    strategy = strategy_from('langchain_summarize:trigger=[["messages",30],["tokens",900]]')
    assert strategy.trigger == (("messages", 30), ("tokens", 900))  # type: ignore[attr-defined]
    assert (
        get_strategy("langchain_summarize", trigger=None).prune(SAMPLE[0], 1000).count("summarized")
        == 0
    )  # LangChain's own default: never
    with pytest.raises(UsageError, match="keep"):
        get_strategy("langchain_summarize", keep=("fraction", 2.0))


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain.agents.middleware.summarization", None)
    with pytest.raises(MissingDependencyError, match=r"ctxlab\[peers\]"):
        get_strategy("langchain_summarize")
