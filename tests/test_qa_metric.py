"""QAAccuracy and LoCoMo's official answer scores."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Iterable
from typing import Any

import llm_scenarios
import pandas as pd
import pytest

from ctxlab import datasets
from ctxlab.errors import UsageError
from ctxlab.lab.harness import acompare, compare
from ctxlab.lab.metrics.qa import QAAccuracy
from ctxlab.lab.metrics.qa_score import (
    adversarial_score,
    multi_hop_f1,
    normalise_answer,
    score,
    token_f1,
)
from ctxlab.lab.report import Report
from ctxlab.messages import Conversation, Message
from ctxlab.providers import Completion, ScriptedProvider
from ctxlab.providers.local_llm import LocalLLMServer
from ctxlab.tokens import get_counter

COUNTER = get_counter()

# -- LoCoMo's official scores, values computed by hand --------------------------------------


def test_normalisation_follows_the_official_rule() -> None:
    assert normalise_answer("The Cat, and a Dog!") == "cat dog"
    assert normalise_answer("1,000 (approx.)") == "1000 approx"
    assert normalise_answer("an  apple   pie") == "apple pie"
    # Only ASCII punctuation goes: the official rule keeps a curly apostrophe.
    assert normalise_answer("Mel’s") == "mel’s"


def test_token_f1_stems_and_counts_shared_tokens() -> None:
    assert token_f1("running dogs", "run dog") == 1.0  # Porter: running->run, dogs->dog
    # paint+potteri vs potteri: precision 1/2, recall 1 -> 2/3
    assert token_f1("painting pottery", "pottery") == pytest.approx(2 / 3)
    # 7 may 2023 vs "8 may 2023": 2 of 3 on each side -> 2/3
    assert token_f1("8 May 2023", "7 May, 2023") == pytest.approx(2 / 3)
    assert token_f1("", "anything") == 0.0
    assert token_f1("the a an", "the") == 0.0  # both empty after normalisation


def test_multi_hop_f1_gives_partial_credit_per_gold_part() -> None:
    # gold parts swimming (1), hiking (0), camping (1) -> 2/3
    assert multi_hop_f1("camping, swimming", "swimming, hiking, camping") == pytest.approx(2 / 3)
    # gold "beach": f1("beach trip", "beach") = 2/3; "mountains": 0 -> mean 1/3
    assert multi_hop_f1("beach trip", "beach, mountains") == pytest.approx(1 / 3)


def test_score_applies_each_category_rule() -> None:
    assert score(1, "beach trip", "beach, mountains") == pytest.approx(1 / 3)
    # category 2/4: plain token F1, commas do not split
    assert score(4, "beach trip", "beach, mountains") == pytest.approx(0.5)
    # category 3: only the gold text before ';' counts
    assert score(3, "likely no", "Likely no; she needed the support") == 1.0
    assert score(5, "Not mentioned in the conversation", None) == 1.0
    assert score(5, "No information available.", None) == 1.0
    assert adversarial_score("She went to Paris") == 0.0
    with pytest.raises(UsageError):
        score(4, "x", None)
    with pytest.raises(UsageError):
        score(9, "x", "y")


# -- the metric with a scripted model -------------------------------------------------------


def conv26() -> Conversation:
    return next(c for c in datasets.load("locomo") if c.id == "conv-26")


def run(metric: QAAccuracy, conv: Conversation, strategies: Iterable[str], probes: Any) -> Report:
    return asyncio.run(
        acompare(
            [conv],
            list(strategies),
            [2000],
            metrics=["input_tokens", "cost_usd", metric],
            probes=probes,
            model="gpt-4o-mini",
            progress=False,
        )
    )


def gold_answerer(messages: tuple[Message, ...]) -> str:
    """Answers with the gold answer when the question's evidence is in the prompt, else 'no'."""
    prompt = messages[-1].text
    conv = conv26()
    by_id = {m.id: m for m in conv.messages}
    for q in conv.annotations["questions"]:
        if f"Question: {q['question']}" in prompt and q["answer"] is not None:
            seen = all(by_id[e].text.strip() in prompt for e in q["evidence"] if e in by_id)
            # (for category 3 only the part before ';' is the answer; the rest is a reason)
            return str(q["answer"]).split(";")[0] if seen else "I do not know"
    return "I do not know"


def test_questions_are_asked_where_they_apply_and_scored_officially() -> None:
    conv = conv26()
    provider = ScriptedProvider(gold_answerer)
    qa = QAAccuracy(provider, progress=False)
    report = run(qa, conv, ["keep_all", "token_window"], [100, 200])
    answers = report.tables["qa_answers"]
    # Brute force: a question applies at k when all its resolvable evidence is before k.
    index = {m.id: i for i, m in enumerate(conv.messages)}
    for k in (100, 200):
        expected = {
            i for i, q in enumerate(conv.annotations["questions"])
            if q["category"] != 5 and q["answer"] is not None
            and (ev := [index[e] for e in q["evidence"] if e in index]) and max(ev) < k
        }  # fmt: skip
        for strategy in ("keep_all", "token_window"):
            asked = answers[(answers.probe == k) & (answers.strategy == strategy)]
            assert set(asked.question_index) == expected
    df = report.df.set_index(["strategy", "probe"])
    # keep_all sends everything: every answer is the gold one, F1 = 1 in every category.
    assert df.loc[("keep_all", 200), "qa_f1"] == 1.0
    for cat in ("multi_hop", "temporal", "open_domain", "single_hop"):
        assert df.loc[("keep_all", 200), f"qa_f1_{cat}"] == 1.0
    # token_window forgets early evidence at 2000 tokens: lower F1, and the per-probe mean is
    # the mean of the kept answers' scores.
    tw = answers[(answers.strategy == "token_window") & (answers.probe == 200)]
    assert df.loc[("token_window", 200), "qa_f1"] == pytest.approx(tw.score.mean())
    assert df.loc[("token_window", 200), "qa_f1"] < 1.0
    assert df.loc[("token_window", 200), "qa_questions"] == len(tw)
    temporal = tw[tw.category == 2]
    assert df.loc[("token_window", 200), "qa_f1_temporal"] == pytest.approx(temporal.score.mean())


def test_evaluation_calls_are_reported_but_never_billed_to_the_strategy() -> None:
    conv = conv26()
    provider = ScriptedProvider(gold_answerer)
    with_qa = run(
        QAAccuracy(provider, progress=False, max_questions=5, cache=False),
        conv,
        ["token_window"],
        [200],
    )
    without = asyncio.run(
        acompare(
            [conv],
            ["token_window"],
            [2000],
            metrics=["input_tokens", "cost_usd"],
            probes=[200],
            model="gpt-4o-mini",
            progress=False,
        )
    )
    row = with_qa.df.iloc[0]
    assert row["qa_input_tokens"] == sum(COUNTER.count_messages(c.messages) for c in provider.calls)
    assert row["qa_output_tokens"] > 0
    assert row["extra_input_tokens"] == 0 or math.isnan(row["extra_input_tokens"])
    assert row["cost_usd"] == without.df.iloc[0]["cost_usd"]


def test_answers_are_cached_so_a_rerun_makes_no_call() -> None:
    conv = conv26()
    provider = ScriptedProvider(gold_answerer)
    qa = QAAccuracy(provider, progress=False, max_questions=6)
    first = run(qa, conv, ["token_window"], [150])
    calls = len(provider.calls)
    second = run(qa, conv, ["token_window"], [150])
    assert len(provider.calls) == calls > 0
    assert second.tables["qa_answers"]["cached"].all()
    assert not first.tables["qa_answers"]["cached"].any()
    pd.testing.assert_frame_equal(first.df, second.df)
    assert qa.answers.empty  # each report took its answers with it


def test_max_questions_takes_categories_in_turn() -> None:
    qa = QAAccuracy(ScriptedProvider(cycle=True, replies=["x"]), progress=False, max_questions=8)
    report = run(qa, conv26(), ["keep_all"], "end")
    cats = report.tables["qa_answers"].category.value_counts().to_dict()
    assert cats == {1: 2, 2: 2, 3: 2, 4: 2}


def test_judge_replies_are_parsed_strictly() -> None:
    judge = ScriptedProvider(["CORRECT", "WRONG", "correct.", "I think CORRECT"], cycle=True)
    qa = QAAccuracy(
        ScriptedProvider(cycle=True, replies=["x"]),
        judge=judge,
        progress=False,
        max_questions=4,
        concurrency=1,
        cache=False,
    )
    report = run(qa, conv26(), ["keep_all"], "end")
    answers = report.tables["qa_answers"].sort_values("question_index")
    grades = answers.judge.tolist()
    assert grades[:3] == [1.0, 0.0, 1.0] and math.isnan(grades[3])
    row = report.df.iloc[0]
    assert row["qa_judge"] == pytest.approx(2 / 3)
    assert row["qa_judge_invalid"] == 1
    sent = judge.calls[0].messages[-1].text
    assert "Gold answer:" in sent and "Model answer: x" in sent


def test_adversarial_questions_use_two_options_and_the_abstention_check() -> None:
    def pick(messages: tuple[Message, ...]) -> str:
        prompt = messages[-1].text
        return "(a)" if "(a) Not mentioned" in prompt else "(b)"

    qa = QAAccuracy(ScriptedProvider(pick), adversarial=True, progress=False, cache=False)
    report = run(qa, conv26(), ["token_window"], "end")
    answers = report.tables["qa_answers"]
    adv = answers[answers.category == 5]
    assert len(adv) == 47 and (adv.answer == "Not mentioned in the conversation").all()
    assert report.df.iloc[0]["qa_adversarial"] == 1.0
    assert "qa_adversarial" not in QAAccuracy("scripted").columns


def test_async_calls_stay_within_the_concurrency_limit() -> None:
    live, peak = 0, 0

    class Slow(ScriptedProvider):
        async def acomplete(self, messages: Any, **kwargs: Any) -> Completion:
            nonlocal live, peak
            live += 1
            peak = max(peak, live)
            await asyncio.sleep(0.01)
            live -= 1
            return self.complete(messages, **kwargs)

    qa = QAAccuracy(Slow(cycle=True, replies=["x"]), concurrency=3, progress=False, cache=False)
    run(qa, conv26(), ["keep_all", "token_window"], [200, 419])
    assert peak == 3


def test_sync_compute_gives_the_same_values_as_the_async_path() -> None:
    from ctxlab.lab.metrics.base import Cell, Probe, facts_for
    from ctxlab.strategies import get_strategy

    conv, budget = conv26(), 2000
    facts = facts_for(conv, COUNTER)
    strategy = get_strategy("token_window")
    probes = tuple(
        Probe(k=k, pruned=strategy.prune(conv.prefix(k), budget, COUNTER), facts=facts)
        for k in (150, 300)
    )
    from ctxlab.budget import Budget

    cell = Cell(
        facts=facts, strategy="token_window", budget=Budget(max_tokens=budget), probes=probes
    )
    qa = QAAccuracy(ScriptedProvider(gold_answerer), progress=False, cache=False)
    assert qa.compute(cell) == asyncio.run(qa.acompute(cell))


def test_compare_runs_it_in_threads_with_the_same_results_as_acompare() -> None:
    def qa() -> QAAccuracy:
        return QAAccuracy(ScriptedProvider(gold_answerer), max_questions=6, progress=False)

    async_report = run(qa(), conv26(), ["token_window"], [150, 300])
    sync_report = compare(
        [conv26()], ["token_window"], [2000], metrics=["input_tokens", "cost_usd", qa()],
        probes=[150, 300], model="gpt-4o-mini", progress=False,
    )  # fmt: skip
    pd.testing.assert_frame_equal(sync_report.df, async_report.df)
    sync_answers = sync_report.tables["qa_answers"].drop(columns="cached")
    async_answers = async_report.tables["qa_answers"].drop(columns="cached")
    pd.testing.assert_frame_equal(sync_answers, async_answers)


# -- the real local model -------------------------------------------------------------------


def test_qa_with_the_local_model(local_llm: LocalLLMServer) -> None:
    conv = llm_scenarios.conversation()
    qa = QAAccuracy(local_llm.provider_spec, max_questions=4, concurrency=1, progress=False)
    start = time.perf_counter()
    report = asyncio.run(
        acompare(
            [conv],
            ["token_window"],
            [600],
            metrics=["input_tokens", qa],
            probes="end",
            progress=False,
        )
    )
    took = time.perf_counter() - start
    row = report.df.iloc[0]
    answers = report.tables["qa_answers"]
    assert row["qa_questions"] == len(answers) == 4
    assert answers.answer.str.strip().str.len().gt(0).all()
    assert 0.0 <= row["qa_f1"] <= 1.0 and row["qa_input_tokens"] > 0
    assert set(answers.category) == {1, 2, 3, 4}
    cats = [c for c in report.df.columns if c.startswith("qa_f1_")]
    print(f"\nlocal QA ({took:.1f} s): " + ", ".join(f"{c}={row[c]:.3f}" for c in ["qa_f1", *cats]),
          file=sys.stderr)  # fmt: skip
    print(answers[["category", "question", "gold", "answer", "score"]].to_string(), file=sys.stderr)
