"""Plots return labelled matplotlib figures that save as PNG under any backend."""

from __future__ import annotations

import io
import itertools

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from ctxlab import datasets
from ctxlab.errors import UsageError
from ctxlab.lab import plots
from ctxlab.lab.harness import Report, compare


@pytest.fixture(scope="module")
def report() -> Report:
    convs = [
        *datasets.load("locomo")[:2],
        *datasets.load("taubench")[:6],
        *datasets.load("sweagent")[:3],
    ]
    return compare(
        convs, ["token_window", "sliding_window", "keep_all"], [1000, 4000, 8000, 16000],
        progress=False,
    )  # fmt: skip


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    return buffer.getvalue()


def _texts(fig: Figure) -> list[Text]:
    """What a reader sees: titles, axis labels, tick labels in view, legend texts."""
    out: list[Text] = []
    for ax in fig.axes:
        out += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        out += [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]
        out += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
    for legend in fig.legends:
        out += [*legend.get_texts(), legend.get_title()]
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def _overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes overlap once the figure is drawn as it would be saved."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    return [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]


def _colours(fig: Figure) -> dict[str, tuple[float, ...]]:
    legend = fig.legends[0]
    return {
        t.get_text(): tuple(h.get_color())
        for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)
        if t.get_text() in ("token_window", "sliding_window", "keep_all")
    }


def test_pareto_is_a_grid_of_panels_with_one_legend(report: Report) -> None:
    fig = plots.pareto(report)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes]
    assert titles == ["locomo", "taubench", "sweagent"]
    rows_cols = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert rows_cols == {(2, 2)}  # three panels wrap into two columns, not one long row
    assert "marker size = budget: 1k < 4k < 8k < 16k" in fig.axes[0].get_title()
    assert "tokens" in fig.axes[0].get_xlabel() and "evidence" in fig.axes[0].get_ylabel()
    assert "action" in fig.axes[1].get_ylabel()
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"token_window", "sliding_window", "keep_all", "Pareto frontier"} <= labels
    assert not _overlaps(fig)
    width = fig.get_size_inches()[0]
    assert width <= 13 and min(t.get_fontsize() for t in _texts(fig)) >= 8
    assert _png(fig).startswith(b"\x89PNG")


def test_a_strategy_keeps_its_colour_across_panels_and_figures(report: Report) -> None:
    whole = _colours(plots.pareto(report))
    # A report without keep_all, as a filter gives: the others keep their colours.
    meta = dict(report.meta)
    part = Report(df=report.df[report.df["strategy"] != "keep_all"], meta=meta)
    assert _colours(plots.pareto(part)) == {k: v for k, v in whole.items() if k != "keep_all"}
    # Without a run record, the rows' order decides, the same for every figure.
    bare = Report(df=report.df, meta={})
    assert _colours(plots.pareto(bare)) == _colours(plots.tokens_per_probe(bare))
    fig = plots.pareto(report)
    for ax in fig.axes:
        for line in ax.get_lines()[:-1]:  # the last line is the frontier band
            assert tuple(line.get_color()) in whole.values()
    assert len(set(whole.values())) == 3


def test_tokens_per_probe_draws_the_budget(report: Report) -> None:
    fig = report.plot("tokens", budget=1000)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "input tokens per request"
    assert any(list(line.get_ydata()) == [1000, 1000] for line in ax.get_lines())
    assert not _overlaps(fig)
    assert _png(fig).startswith(b"\x89PNG")


def test_evidence_by_category_explains_its_whiskers(report: Report) -> None:
    fig = plots.evidence_by_category(report, budget=4000)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "multi-hop", "temporal", "open-domain", "single-hop",
    ]  # fmt: skip
    caption = fig.legends[0].get_title().get_text()
    # Two LoCoMo conversations: too few for an interval, and the caption says so.
    assert "no whiskers: 2 conversation(s), too few for an interval" in caption
    assert not _overlaps(fig)
    five = compare(datasets.load("locomo")[:5], ["token_window"], [4000], progress=False)
    caption = plots.evidence_by_category(five).legends[0].get_title().get_text()
    assert "whiskers: 95% bootstrap interval resampling the 5 conversations" in caption


def test_retention_heatmap_and_errors(report: Report) -> None:
    heat = plots.retention_by_age(datasets.load("locomo")[0], ["token_window", "keep_all"], 2000)
    image = heat.axes[0].get_images()[0].get_array()
    assert image.shape == (2, 20) and float(image[1].min()) == 1.0  # keep_all keeps every age
    assert float(image[0, -1]) == 0.0  # a 2k window keeps no old message
    assert _png(heat).startswith(b"\x89PNG")
    with pytest.raises(UsageError):
        plots.evidence_by_category(report, dataset="taubench")


def test_frontier_points_are_exactly_the_non_dominated_ones(report: Report) -> None:
    x, y = "cumulative_input_tokens", "action_argument_recall"
    points = report.summary([x, y], n_boot=0).dropna(subset=[x, y])
    points = points[points["dataset"] == "taubench"]
    front = report.pareto(x, y)
    on = set(zip(front["strategy"], front["budget"], strict=True))
    assert on and len(on) < len(points)
    for _, p in points.iterrows():
        others = points.drop(index=p.name)
        dominated = ((others[x] <= p[x]) & (others[y] >= p[y])
                     & ((others[x] < p[x]) | (others[y] > p[y]))).any()  # fmt: skip
        assert dominated != ((p["strategy"], p["budget"]) in on)


def test_every_text_lies_inside_the_figure(report: Report) -> None:
    for fig in (plots.pareto(report, datasets=["locomo"]), plots.pareto(report)):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        frame = fig.bbox
        for text in _texts(fig):
            box = text.get_window_extent(renderer)
            assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, text.get_text()
