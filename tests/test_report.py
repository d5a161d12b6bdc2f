"""`Report`: summaries with bootstrap CIs, paired differences, the Pareto front, files, HTML."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab.report import COLUMNS, MIN_UNITS, Report


def _rows(values: dict[tuple[str, int], list[list[float]]]) -> Report:
    """Rows for (strategy, budget) -> per conversation, per probe evidence_recall values."""
    rows: list[dict[str, Any]] = []
    for (strategy, budget), convs in values.items():
        for c, probes in enumerate(convs):
            total = 0.0
            for k, v in enumerate(probes, start=1):
                total += 100.0 * budget / 1000
                rows.append(
                    {"dataset": "d", "conversation_id": f"c{c}", "strategy": strategy,
                     "budget": budget, "probe": k, "input_tokens": 100.0 * budget / 1000,
                     "budget_ok": True, "cumulative_input_tokens": total, "evidence_recall": v}
                )  # fmt: skip
    return Report.from_rows(pd.DataFrame(rows))


def test_from_rows_orders_and_types_columns() -> None:
    report = _rows({("a", 1000): [[0.5, 1.0]]})
    assert tuple(report.df.columns) == COLUMNS
    assert report.df["key_string_recall"].isna().all()


def test_summary_means_and_intervals() -> None:
    report = _rows(
        {
            ("a", 1000): [[0.0, 1.0], [0.5, 0.5, 0.5], [1.0]],
            ("b", 1000): [[1.0, 1.0], [1.0, 1.0, 1.0], [1.0]],
        }
    )
    table = report.summary(["evidence_recall", "cumulative_input_tokens"], seed=3, min_units=3)
    a = table.set_index("strategy").loc["a"]
    assert a["evidence_recall"] == pytest.approx(3.5 / 6)  # pooled over the six probes
    assert a["evidence_recall_lo"] <= a["evidence_recall"] <= a["evidence_recall_hi"]
    assert a["evidence_recall_hi"] - a["evidence_recall_lo"] > 0.05
    assert a["cumulative_input_tokens"] == pytest.approx((200 + 300 + 100) / 3)  # last probes
    assert (a["conversations"], a["probes"], a["evidence_recall_n"]) == (3, 6, 3)
    b = table.set_index("strategy").loc["b"]
    assert b["evidence_recall_lo"] == b["evidence_recall_hi"] == 1.0
    pd.testing.assert_frame_equal(
        table, report.summary(["evidence_recall", "cumulative_input_tokens"], seed=3, min_units=3)
    )


def test_too_few_conversations_give_no_interval_and_say_how_many() -> None:
    # Two conversations: three distinct resamples, their spread is no 95% interval.
    report = _rows({("a", 1000): [[0.1, 0.2, 0.3, 0.4], [0.9, 0.8]]})
    row = report.summary(["evidence_recall"]).iloc[0]
    assert row["evidence_recall"] == pytest.approx(2.7 / 6)
    assert np.isnan(row["evidence_recall_lo"]) and np.isnan(row["evidence_recall_hi"])
    assert row["evidence_recall_n"] == 2 and row["conversations"] == 2
    # One long conversation: its probes are not independent units either.
    one = _rows({("a", 1000): [list(np.linspace(0, 1, 50))]}).summary(["evidence_recall"])
    assert np.isnan(one.loc[0, "evidence_recall_lo"]) and one.loc[0, "evidence_recall_n"] == 1
    # From MIN_UNITS conversations on, an interval.
    five = _rows({("a", 1000): [[v] for v in (0.1, 0.3, 0.5, 0.7, 0.9)]})
    row = five.summary(["evidence_recall"]).iloc[0]
    assert MIN_UNITS == 5 and row["evidence_recall_n"] == 5
    assert row["evidence_recall_lo"] < 0.5 < row["evidence_recall_hi"]
    paired = _rows({("a", 1000): [[0.5, 1.0], [0.0]], ("b", 1000): [[0.25, 0.5], [0.0]]})
    diff = paired.paired("a", "b", "evidence_recall").iloc[0]
    assert diff["conversations"] == 2 and np.isnan(diff["diff_lo"]) and np.isnan(diff["diff_hi"])


def test_a_metric_missing_in_some_conversations_counts_only_those() -> None:
    values = [[0.2], [0.4], [0.6], [0.8], [1.0], [np.nan, np.nan]]
    row = _rows({("a", 1000): values}).summary(["evidence_recall"]).iloc[0]
    assert row["conversations"] == 6 and row["evidence_recall_n"] == 5


def test_summary_totals_additive_per_probe_quantities_per_conversation() -> None:
    # A summarizer's spend at each of three probes (as measured on conv-26's first three
    # sessions), then a second conversation, then one whose second probe failed (NaN).
    spend = {"c0": [0.0, 1072.0, 2059.0], "c1": [500.0, 500.0], "c2": [100.0, np.nan]}
    rows = [
        {"dataset": "d", "conversation_id": c, "strategy": "s", "budget": 600, "probe": k,
         "budget_ok": not np.isnan(v), "extra_input_tokens": v, "extra_output_tokens": v / 10,
         "input_tokens": 500.0}
        for c, values in spend.items() for k, v in enumerate(values, start=1)
    ]  # fmt: skip
    report = Report.from_rows(pd.DataFrame(rows))
    row = report.summary(n_boot=200, min_units=2).iloc[0]
    assert row["extra_input_tokens_total"] == pytest.approx((3131 + 1000) / 2)  # c2: unknown
    assert row["extra_output_tokens_total"] == pytest.approx((313.1 + 100) / 2)
    assert row["extra_input_tokens_lo"] < row["extra_input_tokens"] < row["extra_input_tokens_hi"]
    assert row["extra_input_tokens"] == pytest.approx((3131 + 1000 + 100) / 6)  # per probe
    assert row["extra_input_tokens_total_lo"] == pytest.approx(1000)  # resamples c0, c1
    assert row["extra_input_tokens_total_hi"] == pytest.approx(3131)
    assert row["input_tokens"] == 500.0 and "input_tokens_total" not in row  # per request
    one = report.summary(["extra_input_tokens_total"], n_boot=0)
    total = "extra_input_tokens_total"
    assert list(one.columns[-4:]) == [total, f"{total}_lo", f"{total}_hi", f"{total}_n"]
    alone = Report.from_rows(pd.DataFrame(rows[:3])).summary(["extra_input_tokens"], n_boot=0)
    assert alone.loc[0, "extra_input_tokens_total"] == 3131  # not the 1,043.7 mean per probe
    # Asked by name, any column has a total; `paired` compares conversations' totals.
    sent = report.summary(["input_tokens_total"], n_boot=0).loc[0, "input_tokens_total"]
    assert sent == pytest.approx((1500 + 1000 + 1000) / 3)
    other = Report.from_rows(pd.DataFrame(rows).assign(strategy="t", extra_input_tokens=0.0))
    both = Report.from_rows(pd.concat([report.df, other.df]))
    diff = both.paired("s", "t", "extra_input_tokens_total", n_boot=0).iloc[0]
    assert (diff["pairs"], diff["diff"]) == (2, pytest.approx(2065.5))


def test_summary_matches_a_plain_groupby() -> None:
    rng = np.random.default_rng(1)
    values = {(f"s{i}", b): [list(rng.random(12)) for _ in range(7)]
              for i in range(4) for b in range(1000, 11000, 1000)}  # fmt: skip
    report = _rows(values)  # 40 groups x 7 conversations x 12 probes
    # Speed (5 ms here, from 0.09-0.19 s before vectorising) is a benchmark matter, not a test's.
    table = report.summary(["evidence_recall", "cumulative_input_tokens"], n_boot=0)
    assert len(table) == 40
    by = report.df.groupby(["strategy", "budget"], sort=False)
    last = report.df.groupby(["strategy", "budget", "conversation_id"])["cumulative_input_tokens"]
    expected = last.last().groupby(["strategy", "budget"], sort=False).mean()
    assert table["evidence_recall"].tolist() == pytest.approx(by["evidence_recall"].mean().tolist())
    assert table["cumulative_input_tokens"].tolist() == pytest.approx(
        expected.loc[list(by.groups)].tolist()
    )
    empty = Report.from_rows(report.df.iloc[:0]).summary(["evidence_recall"])
    assert empty.empty and "evidence_recall_hi" in empty.columns


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(100):
        # Conversation effects make probes of one conversation correlated.
        convs = [list(rng.normal(0.5 + rng.normal(0, 0.1), 0.1, size=3)) for _ in range(40)]
        table = _rows({("a", 1000): convs}).summary(["evidence_recall"], n_boot=300)
        covered += table.loc[0, "evidence_recall_lo"] < 0.5 < table.loc[0, "evidence_recall_hi"]
    assert 85 <= covered <= 99


def test_paired_difference() -> None:
    report = _rows({("a", 1000): [[0.5, 1.0], [0.0]], ("b", 1000): [[0.25, 0.5], [0.0]]})
    out = report.paired("a", "b", "evidence_recall", min_units=2)
    row = out.iloc[0]
    assert row["pairs"] == 3 and row["diff"] == pytest.approx(0.75 / 3)
    assert row["diff_lo"] <= row["diff"] <= row["diff_hi"]
    assert row["conversations"] == 2
    with pytest.raises(UsageError, match="not in this report"):
        report.paired("a", "zzz", "evidence_recall")


def test_paired_difference_resamples_the_same_conversations_for_both() -> None:
    # Conversations differ a lot; b is a's value minus 0.1 at every probe.
    rng = np.random.default_rng(3)
    convs = [list(rng.random(3) * 0.3 + base) for base in (0.1, 0.3, 0.5, 0.6, 0.7, 0.8)]
    lower = [[v - 0.1 for v in c] for c in convs]
    report = _rows({("a", 1000): convs, ("b", 1000): lower})
    table = report.summary(["evidence_recall"]).set_index("strategy")
    assert table.loc["a", "evidence_recall_hi"] - table.loc["a", "evidence_recall_lo"] > 0.2
    row = report.paired("a", "b", "evidence_recall").iloc[0]
    # The same draws for both: what a conversation adds to both cancels out exactly.
    assert row["conversations"] == 6
    assert row["diff_lo"] == pytest.approx(0.1) and row["diff_hi"] == pytest.approx(0.1)


def test_pareto_keeps_non_dominated_points() -> None:
    report = _rows(
        {
            ("cheap", 1000): [[0.2]],
            ("cheap", 2000): [[0.6]],
            ("bad", 2000): [[0.4]],  # dominated by cheap@2000
            ("all", 4000): [[0.9]],
        }
    )
    front = report.pareto("cumulative_input_tokens", "evidence_recall")
    assert list(zip(front["strategy"], front["budget"], strict=True)) == [
        ("cheap", 1000),
        ("cheap", 2000),
        ("all", 4000),
    ]


def test_files_and_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _rows({("a", 1000): [[0.5, 1.0]], ("b", 2000): [[0.0]]})
    text = report.to_csv()
    assert text is not None and text.splitlines()[0].split(",")[: len(COLUMNS)] == list(COLUMNS)
    report.to_csv(tmp_path / "r.csv")
    pd.testing.assert_frame_equal(Report.read_csv(tmp_path / "r.csv").df, report.df)
    if importlib.util.find_spec("pyarrow") is not None:
        report.to_parquet(tmp_path / "r.parquet")
        back = Report.from_rows(pd.read_parquet(tmp_path / "r.parquet"))
        pd.testing.assert_frame_equal(back.df, report.df)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"ctxlab\[parquet\]"):
        report.to_parquet(tmp_path / "x.parquet")
    html = report._repr_html_()
    assert "<table" in html and "evidence_recall" in html and "Report(" in html
