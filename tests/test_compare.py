"""`compare` / `acompare`: inputs, probes, failing budgets, executors, and the shapes prior work
reports, on bundled data."""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from ctxlab import Budget, Conversation, Message, datasets
from ctxlab.errors import UsageError
from ctxlab.lab.harness import Report, acompare, compare
from ctxlab.lab.metrics import Cell, ProbeMetric, Values
from ctxlab.lab.report import COLUMNS
from ctxlab.strategies import get_strategy


@pytest.fixture(scope="module")
def locomo() -> list[Conversation]:
    return datasets.load("locomo")


@pytest.fixture(scope="module")
def tau() -> list[Conversation]:
    return datasets.load("taubench")[:6]


def test_report_has_the_exact_columns_and_types(locomo: list[Conversation]) -> None:
    report = compare(
        locomo[0], ["token_window", get_strategy("sliding_window", max_messages=20)],
        [Budget(max_tokens=2000), 1000], progress=False,
    )  # fmt: skip
    df = report.df
    assert tuple(df.columns[: len(COLUMNS)]) == COLUMNS
    assert {"cost_usd_cached", "evidence_recall_temporal", "tokens_before"} <= set(df.columns)
    assert df["budget"].dtype == "int64" and df["probe"].dtype == "int64"
    assert df["budget_ok"].dtype == bool
    assert list(dict.fromkeys(df["strategy"])) == [
        "token_window",
        "sliding_window(max_messages=20)",
    ]
    assert sorted(set(df["budget"])) == [1000, 2000]
    sessions = {m.meta["session"] for m in locomo[0].messages}
    assert len(df) == 2 * 2 * len(sessions)  # auto probes = one per LoCoMo session
    assert isinstance(report, Report) and "Report(" in repr(report)


def test_inputs_may_be_names_paths_and_specs(data_dir: Path) -> None:
    path = data_dir / "taubench" / "gpt-4o-airline-dev.json"
    by_path = compare(path, "token_window", 8000, probes="end", metrics=[], progress=False)
    assert len(by_path.df) == 152 and set(by_path.df["dataset"]) == {"taubench"}
    spec = compare(
        "sweagent", ["sliding_window:max_messages=6"], [4000], probes="end", progress=False
    )
    assert set(spec.df["strategy"]) == {"sliding_window(max_messages=6)"}


def test_probe_specs(locomo: list[Conversation], tau: list[Conversation]) -> None:
    conv = tau[0]
    turns = [i for i, m in enumerate(conv.messages) if m.role == "assistant" and i > 0]

    def probes(spec: Any, c: Conversation = conv) -> list[int]:
        df = compare(c, "keep_all", 10**6, probes=spec, metrics=[], progress=False).df
        return df["probe"].tolist()

    assert probes("end") == [len(conv)]
    assert probes("assistant_turns") == probes("auto") == turns
    assert probes([3, 1, 3]) == [1, 3]
    ends = [
        i
        for i in range(1, len(locomo[1]))
        if locomo[1][i].meta["session"] != locomo[1][i - 1].meta["session"]
    ]
    assert probes("sessions", locomo[1]) == [*ends, len(locomo[1])]
    with pytest.raises(UsageError, match=r"1\.\.32"):
        probes([0])
    with pytest.raises(UsageError, match="unknown probes"):
        probes("weekly")


def test_unreachable_budget_rows_are_nan_and_the_run_goes_on(tau: list[Conversation]) -> None:
    report = compare(tau[:2], ["token_window", "keep_all"], [300, 8000], progress=False)
    df = report.df
    failed = df[(df["strategy"] == "token_window") & (df["budget"] == 300)]
    assert len(failed) > 0 and not failed["budget_ok"].any()
    assert failed["input_tokens"].isna().all() and failed["cumulative_input_tokens"].isna().all()
    assert failed["key_string_recall"].isna().all()
    fine = df[(df["strategy"] == "token_window") & (df["budget"] == 8000)]
    assert fine["budget_ok"].all() and fine["input_tokens"].notna().all()
    over = df[(df["strategy"] == "keep_all") & (df["budget"] == 300)]
    assert not over["budget_ok"].any() and over["input_tokens"].notna().all()  # ignores budget


def test_metric_subset_fills_only_those_columns(tau: list[Conversation]) -> None:
    df = compare(
        tau[0], "token_window", 4000, metrics=["input_tokens", "cumulative_input_tokens"],
        progress=False,
    ).df  # fmt: skip
    assert df["cumulative_input_tokens"].is_monotonic_increasing
    assert df["cumulative_input_tokens"].iloc[-1] == df["input_tokens"].sum()
    assert df["key_string_recall"].isna().all() and df["compression"].isna().all()


def test_usage_errors(tau: list[Conversation]) -> None:
    with pytest.raises(UsageError, match=r"known strategies: .*token_window"):
        compare(tau[0], "no_such_strategy", 4000, progress=False)
    with pytest.raises(UsageError, match="known metrics"):
        compare(tau[0], "token_window", 4000, metrics=["nope"], progress=False)
    with pytest.raises(UsageError, match="twice"):
        compare(tau[0], ["token_window", "token_window"], 4000, progress=False)
    with pytest.raises(UsageError, match="bundled dataset"):
        compare("no-such-dataset", "token_window", 4000, progress=False)
    with pytest.raises(UsageError, match="reserve_output"):
        compare(tau[0], "token_window", [4000, Budget(max_tokens=4000, reserve_output=10)])


class SentPerThousand(ProbeMetric):
    """An awaited metric: stands in for an LLM judge."""

    name: ClassVar[str] = "judge"
    is_async: ClassVar[bool] = True

    def compute(self, cell: Cell) -> Values:
        raise NotImplementedError  # only awaitable

    async def acompute(self, cell: Cell) -> Values:
        await asyncio.sleep(0)
        return {
            "judge": [math.nan if p.pruned is None else p.pruned.tokens / 1000 for p in cell.probes]
        }


def test_acompare_awaits_async_metrics(tau: list[Conversation]) -> None:
    metrics: list[Any] = ["input_tokens", SentPerThousand()]
    with pytest.raises(UsageError, match="acompare"):
        compare(tau[:2], "token_window", 4000, metrics=metrics, progress=False)
    report = asyncio.run(
        acompare(tau[:2], "token_window", [2000, 4000], metrics=metrics, progress=False)
    )
    df = report.df
    assert (df["judge"] == df["input_tokens"] / 1000).all()
    plain = asyncio.run(acompare(tau[:2], "token_window", [2000, 4000], progress=False))
    pd.testing.assert_frame_equal(
        plain.df, compare(tau[:2], "token_window", [2000, 4000], progress=False).df
    )


def test_same_report_with_any_executor(locomo: list[Conversation], tau: list[Conversation]) -> None:
    convs = [locomo[0], *tau[:3]]
    args: dict[str, Any] = {"progress": False, "model": "gpt-4o-mini"}
    strategies = ["token_window", "mask_tool_outputs", "importance", "keep_all"]
    base = compare(convs, strategies, [1000, 4000], **args)
    with ThreadPoolExecutor(2) as pool:
        threads = compare(convs, strategies, [1000, 4000], executor=pool, **args)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        processes = compare(convs, strategies, [1000, 4000], executor=pool, **args)
    pd.testing.assert_frame_equal(base.df, threads.df)
    pd.testing.assert_frame_equal(base.df, processes.df)
    assert base.df["cost_usd"].notna().any()


def test_batches_keep_a_conversations_tasks_in_one_worker(
    locomo: list[Conversation], tau: list[Conversation]
) -> None:
    from ctxlab.lab.harness import _batches, _Models, _plan

    strategies = ["token_window", "mask_tool_outputs", "importance", "keep_all", "summarize"]
    models = _Models(model=None, summarizer_model=None)
    plan = _plan([*locomo[:4], *tau], strategies, [1000, 4000, 16000], None, "auto", None,
                 models, None)  # fmt: skip
    batches = _batches(plan.tasks, workers=2)
    assert sorted(t.index for b in batches for t in b) == list(range(len(plan.tasks)))
    homes = {}
    for i, batch in enumerate(batches):
        for task in batch:
            assert homes.setdefault(task.conversation.id, i) == i  # one batch per conversation
    weights = [sum(t.weight for t in b) for b in batches]
    assert weights == sorted(weights, reverse=True)  # the heaviest start first
    assert len({homes[c.id] for c in tau}) < len(tau)  # small conversations share batches
    # A single long conversation still spreads over the workers; a small run is one batch.
    budgets = [1000, 2000, 4000, 8000, 16000, 32000]
    alone = _plan(locomo[0], strategies, budgets, None, "auto", None, models, None)
    assert len(_batches(alone.tasks, workers=2)) == 2
    small = _plan(locomo[0], strategies, [1000], None, "auto", None, models, None)
    assert len(_batches(small.tasks, workers=2)) == 1


def test_dump_writes_every_probe(tmp_path: Path, tau: list[Conversation]) -> None:
    report = compare(tau[:2], "token_window", [2000, 8000], dump=tmp_path, progress=False)
    files = sorted(tmp_path.rglob("*.jsonl"))
    assert [f.parent.name for f in files] == ["token_window", "token_window"]
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == len(report.df)
    assert all(line["messages"][0]["role"] == "system" for line in lines)


def test_locomo_token_window_recall_grows_with_the_budget(locomo: list[Conversation]) -> None:
    """Prior work: retention under a window grows with its size, and is complete once the
    window holds the whole conversation."""
    budgets = [1000, 2000, 4000, 8000, 16000, 64000]
    report = compare(locomo, "token_window", budgets, metrics=["evidence_recall"], progress=False)
    recall = report.summary(["evidence_recall"], n_boot=0).set_index("budget")["evidence_recall"]
    assert list(recall.index) == budgets
    assert all(a < b for a, b in zip(recall, recall.iloc[1:], strict=False))
    assert recall[1000] < 0.3 and recall[64000] == 1.0  # 64k exceeds every conversation
    df = report.df.dropna(subset=["evidence_recall"])
    fits = df[df["tokens_before"] <= df["budget"]]  # the whole prefix fits the window
    assert len(fits) > 50 and (fits["evidence_recall"] == 1.0).all()
    assert (df[df["tokens_before"] > df["budget"]]["evidence_recall"] < 1.0).mean() > 0.5


def test_masking_sends_fewer_tokens_and_keeps_assistant_messages(tmp_path: Path) -> None:
    """Prior work: observation masking sends far fewer input tokens than keeping everything,
    while the agent's own messages stay."""
    convs = datasets.load("sweagent") + datasets.load("taubench")[:20]
    report = compare(
        convs, ["mask_tool_outputs", "keep_all"], [10**6], probes="assistant_turns",
        metrics=["cumulative_input_tokens"], dump=tmp_path, progress=False,
    )  # fmt: skip
    totals = report.summary(["cumulative_input_tokens"], n_boot=0)
    by = totals.set_index(["dataset", "strategy"])["cumulative_input_tokens"]
    assert by["sweagent", "mask_tool_outputs"] < 0.85 * by["sweagent", "keep_all"]
    assert by["taubench", "mask_tool_outputs"] < 0.9 * by["taubench", "keep_all"]
    originals = {(c.id, m.id): m for c in convs for m in c.messages}
    for f in (tmp_path / "sweagent" / "mask_tool_outputs").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            record = json.loads(line)
            conv = next(c for c in convs if c.id == record["conversation_id"])
            sent = {m["id"]: m for m in record["messages"]}
            for m in conv.messages[: record["probe"]]:
                if m.role == "assistant":
                    assert sent[m.id]["content"] == originals[conv.id, m.id].text


def test_custom_strategy_objects_run(tau: list[Conversation]) -> None:
    def last_four(messages: list[Message]) -> list[Message]:
        return [messages[0], *messages[-4:]]

    from ctxlab.strategies.function import from_function

    report = compare(tau[:2], from_function(last_four), 100_000, probes="end", progress=False)
    assert (report.df["messages_sent"] <= 5).all()


def test_ctxlab_compare_stays_the_function_after_submodules_are_imported(
    tau: list[Conversation],
) -> None:
    import ctxlab
    import ctxlab.lab.harness

    assert ctxlab.compare is compare
    report = ctxlab.compare(tau[0], "token_window", 8000, probes="end", metrics=[], progress=False)
    assert isinstance(report, Report) and len(report.df) == 1
