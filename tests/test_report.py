"""`Report`: summaries with bootstrap CIs, paired differences, the Pareto front, files, HTML."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.report import COLUMNS, Report


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
    table = report.summary(["evidence_recall", "cumulative_input_tokens"], seed=3)
    a = table.set_index("strategy").loc["a"]
    assert a["evidence_recall"] == pytest.approx(3.5 / 6)  # pooled over the six probes
    assert a["evidence_recall_lo"] <= a["evidence_recall"] <= a["evidence_recall_hi"]
    assert a["evidence_recall_hi"] - a["evidence_recall_lo"] > 0.05
    assert a["cumulative_input_tokens"] == pytest.approx((200 + 300 + 100) / 3)  # last probes
    assert (a["conversations"], a["probes"]) == (3, 6)
    b = table.set_index("strategy").loc["b"]
    assert b["evidence_recall_lo"] == b["evidence_recall_hi"] == 1.0
    pd.testing.assert_frame_equal(
        table, report.summary(["evidence_recall", "cumulative_input_tokens"], seed=3)
    )


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
    out = report.paired("a", "b", "evidence_recall")
    row = out.iloc[0]
    assert row["pairs"] == 3 and row["diff"] == pytest.approx(0.75 / 3)
    assert row["diff_lo"] <= row["diff"] <= row["diff_hi"]
    with pytest.raises(UsageError, match="not in this report"):
        report.paired("a", "zzz", "evidence_recall")


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
