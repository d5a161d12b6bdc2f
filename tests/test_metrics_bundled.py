"""Metrics on bundled data against a second, straightforward implementation written here.

`compare(..., dump=DIR)` writes the context of every probe as JSONL; the functions below read
those contexts back and recompute each metric by brute force from the message ids and texts,
with none of the harness's shortcuts (precomputed occurrences, identity checks, numpy masks).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ctxlab import Conversation, Message, datasets, get_counter
from ctxlab.formats.openai_chat import from_openai
from ctxlab.keys import key_strings
from ctxlab.lab.harness import compare
from ctxlab.messages import thaw

COUNTER = get_counter()


def _text(m: Message) -> str:
    return "\n".join([m.text, *(f"{c.name} {c.arguments}" for c in m.tool_calls)])


def _norm(text: str) -> str:
    text = re.sub(r"[^\w\s]|_", "", text.lower())
    words = [w for w in text.split() if w not in ("a", "an", "the", "and")]
    return " ".join(words)


def _dumped(folder: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            record["context"] = from_openai(record["messages"], id_prefix=None)
            yield record


def _verbatim(conv: Conversation, context: Sequence[Message], k: int) -> set[str]:
    originals = {m.id: m for m in conv.messages[:k]}
    return {m.id for m in context if m.id in originals and originals[m.id] == m}


def _evidence_recall(conv: Conversation, context: Sequence[Message], k: int) -> float:
    ids = [m.id for m in conv.messages]
    kept = _verbatim(conv, context, k)
    scores = []
    for q in conv.annotations["questions"]:
        evidence = set(q["evidence"])
        if q["category"] == 5 or not evidence or not evidence <= set(ids[:k]):
            continue  # evidence missing from the conversation (a prefix) is never "before k"
        scores.append(len(evidence & kept) / len(evidence))
    return sum(scores) / len(scores) if scores else math.nan


def _answer_presence(conv: Conversation, context: Sequence[Message], k: int) -> float:
    ids = [m.id for m in conv.messages]
    haystack = " " + _norm(" ".join(_text(m) for m in context)) + " "
    hits = []
    for q in conv.annotations["questions"]:
        answer = _norm(str(q["answer"])) if q["answer"] is not None else ""
        evidence = set(q["evidence"])
        applies = evidence <= set(ids[:k]) if evidence else k == len(ids)
        if q["category"] == 5 or not answer or not applies:
            continue
        hits.append(f" {answer} " in haystack)
    return sum(hits) / len(hits) if hits else math.nan


def _key_recall(conv: Conversation, context: Sequence[Message], k: int) -> float:
    before = set().union(*(key_strings(_text(m)) for m in conv.messages[:k]))
    after = set().union(*(key_strings(_text(m)) for m in conv.messages[k:]))
    future = before & after
    held = set().union(*(key_strings(_text(m)) for m in context))
    return len(future & held) / len(future) if future else math.nan


def _sequence(m: Message) -> list[int]:
    seq = [-1, *COUNTER.encode(m.role), -2, *COUNTER.encode(m.text)]
    if m.name:
        seq += [-4, *COUNTER.encode(m.name)]
    for c in m.tool_calls:
        seq += [*COUNTER.encode(c.name), *COUNTER.encode(c.arguments)]
    return [*seq, -3]


def _lcp(a: Sequence[Message], b: Sequence[Message]) -> int:
    x = [t for m in a for t in _sequence(m)]
    y = [t for m in b for t in _sequence(m)]
    n = 0
    while n < min(len(x), len(y)) and x[n] == y[n]:
        n += 1
    return n


def _coverage(conv: Conversation, context: Sequence[Message], k: int) -> float:
    stop = __import__("ctxlab.lab.metrics.text", fromlist=["STOPWORDS"]).STOPWORDS
    kept = _verbatim(conv, context, k)
    gone = {w for m in conv.messages[:k] if m.id not in kept for w in _norm(_text(m)).split()}
    gone -= stop
    if not gone:
        return math.nan
    rewritten = [m for m in context if m.id not in kept]
    told = {w for m in rewritten for w in _norm(_text(m)).split()}
    return len(gone & told) / len(gone)


def _check(
    report: Any, convs: Sequence[Conversation], folder: Path, metrics: dict[str, Any]
) -> int:
    by_id = {c.id: c for c in convs}
    df = report.df.set_index(["conversation_id", "strategy", "budget", "probe"]).sort_index()
    records = sorted(
        _dumped(folder),
        key=lambda r: (r["conversation_id"], r["strategy"], r["budget"], r["probe"]),
    )
    contexts: dict[tuple[str, str, int], list[Message]] = {}
    shared: dict[tuple[str, str, int], list[float]] = {}
    for r in records:
        conv, key = by_id[r["conversation_id"]], (r["conversation_id"], r["strategy"], r["budget"])
        row = df.loc[(*key, r["probe"])]
        if r["budget_unreachable"]:
            assert not row["budget_ok"] and math.isnan(row["input_tokens"])
            shared.setdefault(key, []).append(math.nan)
            continue
        context = r["context"]
        assert row["input_tokens"] == COUNTER.count_messages(context) == r["tokens"]
        for column, brute in metrics.items():
            expected = brute(conv, context, r["probe"])
            assert row[column] == pytest.approx(expected, nan_ok=True, abs=1e-12), (column, key)
        previous = contexts.get(key)
        shared.setdefault(key, []).append(0 if previous is None else _lcp(previous, context))
        contexts[key] = context
    # prefix_stability: running Σ shared / Σ sent, NaN from a failed probe on.
    for key, values in shared.items():
        rows = df.loc[key].sort_index()
        expected = pd.Series(values).cumsum(skipna=False) / rows["input_tokens"].reset_index(
            drop=True
        ).cumsum(skipna=False)
        assert rows["prefix_stability"].to_numpy() == pytest.approx(
            expected.to_numpy(), nan_ok=True
        )
    return len(records)


def test_locomo_metrics_match_brute_force(tmp_path: Path) -> None:
    convs = datasets.load("locomo")[:2]
    strategies = [
        "token_window",
        "sliding_window",
        "importance",
        "truncate_long:max_tokens_per_message=20",
    ]
    report = compare(
        convs, strategies, [1000, 4000], probes="sessions", dump=tmp_path, progress=False
    )
    brute = {
        "evidence_recall": _evidence_recall,
        "answer_presence": _answer_presence,
        "key_string_recall": _key_recall,
        "dropped_content_coverage": _coverage,
    }
    assert _check(report, convs, tmp_path, brute) == len(report.df)


def test_metrics_on_a_cut_short_conversation_match_brute_force(tmp_path: Path) -> None:
    # The first three sessions of conv-26 (58 messages) keep every annotation of the whole
    # conversation; questions with evidence beyond the cut must not count.
    whole = datasets.load("locomo")[0]
    k = max(i for i, m in enumerate(whole.messages) if m.meta["session"] <= 3) + 1
    prefix = whole.prefix(k)
    report = compare(prefix, ["token_window", "keep_all"], [1000, 100_000], probes="sessions",
                     dump=tmp_path, progress=False)  # fmt: skip
    brute = {"evidence_recall": _evidence_recall, "answer_presence": _answer_presence}
    assert _check(report, [prefix], tmp_path, brute) == len(report.df)
    ids = [m.id for m in whole.messages]
    within = [
        q for q in whole.annotations["questions"]
        if q["category"] != 5 and q["evidence"] and max(ids.index(e) for e in q["evidence"]) < k
    ]  # fmt: skip
    end = report.df[report.df["probe"] == k]
    assert (k, len(within)) == (58, 20)  # measured on conv-26
    assert end["evidence_questions"].tolist() == [20.0] * 4
    # Answer presence also counts, at the end, the two questions that have no evidence.
    no_evidence = [
        q
        for q in whole.annotations["questions"]
        if q["category"] != 5 and not q["evidence"] and q.get("answer") is not None
    ]
    assert end["answer_questions"].tolist() == [20.0 + len(no_evidence)] * 4 == [22.0] * 4


def test_summaries_match_brute_force(tmp_path: Path) -> None:
    convs = datasets.load("locomo")[:1]
    report = compare(convs, ["summarize"], [2000], probes="sessions", dump=tmp_path, progress=False)
    assert report.df["dropped_content_coverage"].max() > 0  # summaries retell something
    brute = {
        "evidence_recall": _evidence_recall,
        "answer_presence": _answer_presence,
        "key_string_recall": _key_recall,
        "dropped_content_coverage": _coverage,
    }
    assert _check(report, convs, tmp_path, brute) == len(report.df)


def _action_recall(conv: Conversation, context: Sequence[Message], k: int) -> float:
    needed: list[str] = []
    for action in conv.annotations["gold_actions"]:
        kwargs = thaw(action["kwargs"])
        issued = [
            i
            for i, m in enumerate(conv.messages)
            for c in m.tool_calls
            if c.name == action["name"] and json.loads(c.arguments) == kwargs
        ]
        if not issued:
            issued = [
                i
                for i, m in enumerate(conv.messages)
                for c in m.tool_calls
                if c.name == action["name"]
            ]
        if not issued or issued[0] != k:
            continue
        before = "\n".join(_text(m) for m in conv.messages[:k])
        strings = set(_leaves(kwargs))
        needed += [s for s in sorted(strings) if len(s) >= 4 and s in before]
    if not needed:
        return math.nan
    text = "\n".join(_text(m) for m in context)
    return sum(s in text for s in needed) / len(needed)


def _exactly_issued(conv: Conversation) -> bool:
    calls = [(c.name, json.loads(c.arguments)) for m in conv.messages for c in m.tool_calls]
    gold = [(a["name"], thaw(a["kwargs"])) for a in conv.annotations["gold_actions"]]
    return bool(gold) and all(calls.count(g) == 1 for g in gold)


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)


def test_agent_run_metrics_match_brute_force(tmp_path: Path) -> None:
    # Runs whose every gold action is issued by exactly one call with its exact arguments:
    # there, the simple rule above is the harness's rule.
    convs = [c for c in datasets.load("taubench") if _exactly_issued(c)][:5]
    assert len(convs) == 5
    report = compare(
        convs, ["token_window", "mask_tool_outputs", "keep_all"], [3000, 8000],
        probes="assistant_turns", dump=tmp_path, progress=False,
    )  # fmt: skip
    assert report.df["action_argument_recall"].notna().sum() >= 5
    brute = {
        "action_argument_recall": _action_recall,
        "key_string_recall": _key_recall,
        "dropped_content_coverage": _coverage,
    }
    assert _check(report, convs, tmp_path, brute) == len(report.df)
    assert isinstance(report.df, pd.DataFrame)
