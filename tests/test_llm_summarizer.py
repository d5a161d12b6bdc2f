"""LLMSummarizer: behaviour with a scripted model, a recorded local model, and a live one."""

from __future__ import annotations

import json
import math
import pickle
import time

import llm_scenarios
import pytest

from ctxlab import datasets
from ctxlab.errors import ProviderHTTPError, ProviderResponseError, UsageError
from ctxlab.lab.harness import compare
from ctxlab.messages import Conversation, Message
from ctxlab.providers import ScriptedProvider, cost_usd, get_provider
from ctxlab.providers.local_llm import LocalLLMServer
from ctxlab.providers.scripted import ScriptedCall
from ctxlab.strategies.summarize import Summarize
from ctxlab.summarizers import ExtractiveSummarizer
from ctxlab.summarizers.llm import LLMSummarizer
from ctxlab.tokens import get_counter
from ctxlab.usage import Usage

COUNTER = get_counter()


def locomo(k: int = 60) -> Conversation:
    return next(c for c in datasets.load("locomo") if c.id == "conv-26").prefix(k)


def numbered() -> ScriptedProvider:
    """Replies 'Summary N. ...' so each call's output is recognisable."""
    n = 0

    def reply(messages: tuple[Message, ...]) -> str:
        nonlocal n
        n += 1
        return f"Summary {n}. Caroline and Melanie talked about support groups."

    return ScriptedProvider(reply)


def request_of(call: ScriptedCall) -> str:
    return call.messages[-1].text


def test_each_call_sends_the_previous_summary_and_only_the_new_messages() -> None:
    provider = numbered()
    conv = locomo()
    pruned = Summarize(summarizer=LLMSummarizer(provider)).prune(conv, 800)
    assert len(provider.calls) >= 2
    first, second = request_of(provider.calls[0]), request_of(provider.calls[1])
    assert "Summary so far:\n(nothing yet)" in first
    assert "Summary so far:\nSummary 1." in second
    # The first fold's messages are not sent again: only the newly folded ones are.
    first_turn = conv.messages[1].text
    assert first_turn in first and first_turn not in second
    summary = next(m for m in pruned.messages if m.is_synthetic)
    assert summary.text.endswith(f"Summary {len(provider.calls)}. Caroline and Melanie "
                                 "talked about support groups.")  # fmt: skip
    assert provider.calls[0].messages[0].role == "system"
    assert provider.calls[0].options["temperature"] == 0.0


def test_transcript_keeps_speakers_dates_and_tool_calls_readable() -> None:
    conv = next(c for c in datasets.load("taubench") if any(m.tool_calls for m in c.messages))
    call = next(m for m in conv.messages if m.tool_calls)
    upto = conv.messages.index(call) + 2  # the call and its result
    provider = ScriptedProvider(cycle=True, replies=["The user asked for a booking."])
    LLMSummarizer(provider).summarize(None, conv.messages[1:upto], 200, COUNTER)
    sent = "".join(request_of(c) for c in provider.calls)
    tc = call.tool_calls[0]
    assert f"assistant: (calls {tc.name} {tc.arguments})" in sent
    assert f"tool result ({tc.name}):" in sent


def test_locomo_input_has_speaker_names_and_session_dates() -> None:
    provider = ScriptedProvider(["ok."])
    LLMSummarizer(provider).summarize(None, locomo(20).messages[16:20], 100, COUNTER)
    sent = request_of(provider.calls[0])
    assert "DATE: 1:56 pm on 8 May, 2023\nCaroline: Totally agree, Mel." in sent
    assert "DATE: 1:14 pm on 25 May, 2023\nMelanie: Hey Caroline, since we last chatted" in sent


def test_a_failed_call_raises_and_never_becomes_a_summary() -> None:
    provider = ScriptedProvider([ProviderHTTPError("openai-compatible", 500, "boom: overloaded")])
    with pytest.raises(ProviderHTTPError):
        Summarize(summarizer=LLMSummarizer(provider)).prune(locomo(), 800)


def test_an_empty_reply_is_an_error_not_an_empty_summary() -> None:
    provider = ScriptedProvider(["   "])
    with pytest.raises(ProviderResponseError, match="empty summary"):
        LLMSummarizer(provider).summarize(None, locomo(6).messages, 100, COUNTER)


def test_fallback_writes_the_summary_and_the_decisions_say_so() -> None:
    error = ProviderHTTPError("openai-compatible", 503, "boom: overloaded")
    provider = ScriptedProvider([error], cycle=True)
    summarizer = LLMSummarizer(provider, fallback=ExtractiveSummarizer())
    pruned = Summarize(summarizer=summarizer).prune(locomo(), 800)
    summary = next(m for m in pruned.messages if m.is_synthetic)
    assert "boom" not in summary.text and "503" not in summary.text
    assert "[Caroline]" in summary.text  # the extractive summarizer's lines
    folded = [d for d in pruned.decisions if d.action == "summarized"]
    assert folded
    for d in folded:
        assert "LLM summary failed (ProviderHTTPError 503)" in d.reason
        assert "ExtractiveSummarizer used instead" in d.reason
    assert pruned.extra_usage == Usage()  # failed calls report nothing; the fallback is free


def test_fallback_keeps_the_usage_of_calls_that_succeeded() -> None:
    provider = ScriptedProvider(["Part one.", ProviderHTTPError("x", 500, "boom")])
    summarizer = LLMSummarizer(
        provider, fallback=ExtractiveSummarizer(), max_input_tokens=200, max_message_tokens=50
    )
    result = summarizer.summarize(None, locomo(40).messages, 100, COUNTER)
    assert len(provider.calls) == 2 and result.usage.requests == 1
    assert result.note.startswith("LLM summary failed")
    assert "Part one." not in result.text  # the fallback restarts from the previous summary


def test_big_folds_are_sent_in_chunks_each_extending_the_last() -> None:
    provider = numbered()
    summarizer = LLMSummarizer(provider, max_input_tokens=300, max_message_tokens=100)
    result = summarizer.summarize("Earlier facts.", locomo(60).messages, 100, COUNTER)
    assert len(provider.calls) > 2
    assert "Summary so far:\nEarlier facts." in request_of(provider.calls[0])
    for i, call in enumerate(provider.calls[1:], start=1):
        assert f"Summary so far:\nSummary {i}." in request_of(call)
        transcript = request_of(call).split("New messages:\n", 1)[1]
        assert COUNTER.count_text(transcript) <= 300 + 40  # + the request's own lines
    assert result.usage.requests == len(provider.calls)


def test_no_new_messages_asks_to_shorten_the_summary() -> None:
    provider = ScriptedProvider(["Shorter."])
    result = LLMSummarizer(provider).summarize("A long summary. " * 20, [], 30, COUNTER)
    assert result.text == "Shorter."
    assert "Shorten this summary to at most 22 words" in request_of(provider.calls[0])


def test_long_replies_are_cut_to_the_limit_at_a_sentence_boundary() -> None:
    reply = "Caroline went to a support group. " * 40 + "Melanie paints."
    provider = ScriptedProvider([f"Updated summary: {reply}"])
    result = LLMSummarizer(provider, max_summary_tokens=50).summarize(
        None, locomo(10).messages, 400, COUNTER
    )
    assert COUNTER.count_text(result.text) <= 50
    assert result.text.startswith("Caroline went") and result.text.endswith("group.")
    # The model's max_tokens leaves room for its own tokenizer; the counter has the last word.
    assert provider.calls[0].options["max_tokens"] == math.ceil(50 * 1.25) + 8


def test_summarizer_tokens_show_up_in_compare_as_extra_usage_and_cost() -> None:
    provider = numbered()
    conv = locomo(120)
    strategy = Summarize(summarizer=LLMSummarizer(provider))
    report = compare(
        [conv], [strategy], [1000], probes="sessions", model="gpt-4o-mini", progress=False
    )
    df = report.df
    # The scripted model bills each prompt as the counter counts it.
    assert df["extra_input_tokens"].sum() == sum(
        COUNTER.count_messages(c.messages) for c in provider.calls
    )
    assert df["extra_output_tokens"].sum() > 0
    assert df["extra_input_tokens"].gt(0).sum() >= 2  # folds happen at several probes
    billed = Usage(
        input_tokens=int(df["input_tokens"].sum() + df["extra_input_tokens"].sum()),
        output_tokens=int(df["extra_output_tokens"].sum()),
    )
    assert df["cost_usd"].iloc[-1] == pytest.approx(cost_usd(billed, "gpt-4o-mini"))
    assert "LLMSummarizer('scripted:scripted'" in df["strategy"].iloc[0]


def test_a_spec_string_makes_the_summarizer_picklable() -> None:
    summarizer = LLMSummarizer("scripted", max_summary_tokens=40)
    strategy = Summarize(summarizer=summarizer)
    copy = pickle.loads(pickle.dumps(strategy))
    assert copy == strategy and copy.label == strategy.label
    # The scripted provider echoes the request; the summary is cut to the limit.
    result = copy.summarizer.summarize(None, locomo(8).messages, 40, COUNTER)
    assert 0 < COUNTER.count_text(result.text) <= 40


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(UsageError, match="placeholder"):
        LLMSummarizer("scripted", prompt="Summarize {topic}")
    with pytest.raises(UsageError, match="max_summary_tokens"):
        LLMSummarizer("scripted", max_summary_tokens=2)


# -- the recorded local model (no server) ---------------------------------------------------


def test_cassette_replays_the_local_model_offline() -> None:
    expected = json.loads(llm_scenarios.EXPECTED.read_text(encoding="utf-8"))
    assert llm_scenarios.summaries(llm_scenarios.replay_provider()) == expected
    assert any(e["summary"] for e in expected) and sum(e["requests"] for e in expected) >= 2


def test_cassette_replay_through_compare_bills_the_recorded_usage() -> None:
    expected = json.loads(llm_scenarios.EXPECTED.read_text(encoding="utf-8"))
    df = llm_scenarios.run(llm_scenarios.replay_provider()).df
    assert df["extra_input_tokens"].tolist() == [float(e["input_tokens"]) for e in expected]
    assert df["extra_output_tokens"].tolist() == [float(e["output_tokens"]) for e in expected]
    assert df["input_tokens"].tolist() == [float(e["tokens"]) for e in expected]
    assert (df["input_tokens"] <= llm_scenarios.BUDGET).all()
    assert df["cost_usd"].is_monotonic_increasing and df["cost_usd"].iloc[-1] > 0


# -- the real local model ------------------------------------------------------------------


def test_summarize_with_the_local_model_in_compare(local_llm: LocalLLMServer) -> None:
    conv = llm_scenarios.conversation(sessions=2)
    provider = get_provider(local_llm.provider_spec, timeout=600)
    # Cached replies: the replay below reads the summaries without calling the model again.
    strategy = Summarize(summarizer=LLMSummarizer(provider, max_summary_tokens=48, cache=True))
    start = time.perf_counter()
    report = compare(
        [conv],
        [strategy],
        [600],
        probes=llm_scenarios.probes(conv),
        model="gpt-4o-mini",
        progress=False,
    )
    took = time.perf_counter() - start
    pruned = list(strategy.replay(conv, [len(conv.messages)], 600))[-1]
    provider.close()
    df = report.df
    calls = int((df["extra_input_tokens"] > 0).sum())
    assert df["extra_input_tokens"].iloc[-1] > 0 and df["extra_output_tokens"].iloc[-1] > 0
    assert (df["input_tokens"] <= 600).all() and df["budget_ok"].all()
    assert df["cost_usd"].iloc[-1] > 0
    summary = next(m for m in pruned.messages if m.is_synthetic)
    body = summary.text.split("\n", 1)[1]
    assert body.strip() and COUNTER.count_text(body) <= 48
    print(f"\nlocal summary ({took:.1f} s for {calls} probes with calls): {body!r}")
