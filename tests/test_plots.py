"""Plots return labelled matplotlib figures that save as PNG under any backend."""

from __future__ import annotations

import io

import pytest
from matplotlib.figure import Figure

from ctxlab import datasets
from ctxlab.errors import UsageError
from ctxlab.lab import plots
from ctxlab.lab.harness import Report, compare


@pytest.fixture(scope="module")
def report() -> Report:
    convs = [datasets.load("locomo")[0], *datasets.load("taubench")[:3]]
    return compare(
        convs, ["token_window", "sliding_window", "keep_all"], [1000, 4000], progress=False
    )


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    return buffer.getvalue()


def test_pareto_has_one_panel_per_dataset_with_units(report: Report) -> None:
    fig = plots.pareto(report)
    assert [ax.get_title() for ax in fig.axes] == ["locomo", "taubench"]
    assert "tokens" in fig.axes[0].get_xlabel() and "evidence" in fig.axes[0].get_ylabel()
    assert "action" in fig.axes[1].get_ylabel()
    labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"token_window", "sliding_window", "keep_all", "frontier"} <= labels
    assert _png(fig).startswith(b"\x89PNG")


def test_tokens_per_probe_draws_the_budget(report: Report) -> None:
    fig = report.plot("tokens", budget=1000)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "input tokens per request"
    assert any(list(line.get_ydata()) == [1000, 1000] for line in ax.get_lines())
    assert _png(fig).startswith(b"\x89PNG")


def test_evidence_by_category_and_retention_heatmap(report: Report) -> None:
    fig = plots.evidence_by_category(report, budget=4000)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "multi-hop", "temporal", "open-domain", "single-hop",
    ]  # fmt: skip
    heat = plots.retention_by_age(datasets.load("locomo")[0], ["token_window", "keep_all"], 2000)
    image = heat.axes[0].get_images()[0].get_array()
    assert image.shape == (2, 20) and float(image[1].min()) == 1.0  # keep_all keeps every age
    assert float(image[0, -1]) == 0.0  # a 2k window keeps no old message
    assert _png(heat).startswith(b"\x89PNG")
    with pytest.raises(UsageError):
        plots.evidence_by_category(report, dataset="taubench")
