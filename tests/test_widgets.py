"""The notebook widgets: their trees, and that moving a control changes what they show."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ipywidgets as w  # the 'notebooks' extra, installed by the test command: never skipped
import pandas as pd
import pytest

import ctxlab
from ctxlab import datasets, widgets
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab.harness import Report, compare
from ctxlab.messages import Conversation


def find(root: Any, name: str) -> Any:
    """The widget under `root` carrying the CSS class ``ctxlab-<name>``."""
    if f"ctxlab-{name}" in getattr(root, "_dom_classes", ()):
        return root
    for child in getattr(root, "children", ()):
        hit = find(child, name)
        if hit is not None:
            return hit
    return None


def sent_tokens(box: Any) -> int:
    match = re.search(r"class='ctxlab-sent'>([\d,]+)<", find(box, "tokens").value)
    assert match, find(box, "tokens").value[:300]
    return int(match.group(1).replace(",", ""))


def sent_messages(box: Any) -> int:
    match = re.search(r"sends (\d+) of (\d+) messages", find(box, "view").value)
    assert match
    return int(match.group(1))


@pytest.fixture(scope="module")
def locomo() -> list[Conversation]:
    return datasets.load("locomo")


@pytest.fixture(scope="module")
def largest() -> Conversation:
    counter = ctxlab.get_counter()
    every = [c for name in datasets.names() for c in datasets.load(name)]
    return max(every, key=lambda c: counter.count_messages(c.messages))


def test_missing_ipywidgets_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ctxlab\[notebooks\]'"):
        widgets.explorer(datasets.load("taubench")[:1])
    with pytest.raises(MissingDependencyError, match="ipywidgets"):
        widgets.comparison(ctxlab.Report.from_rows(_empty_rows()))


def _empty_rows() -> Any:
    import pandas as pd

    return pd.DataFrame({"dataset": [], "conversation_id": [], "strategy": [], "budget": []})


def test_explorer_tree(locomo: list[Conversation]) -> None:
    box = widgets.explorer(locomo[:2], ["token_window", "sliding_window"])
    assert isinstance(box, w.VBox)
    assert isinstance(find(box, "conversation"), w.Dropdown)
    assert len(find(box, "conversation").options) == 2
    assert list(find(box, "strategy").options) == ["token_window", "sliding_window"]
    assert isinstance(find(box, "budget"), w.IntSlider)
    for name in ("tokens", "metrics", "view", "evidence", "status"):
        assert isinstance(find(box, name), w.HTML), name
    assert isinstance(find(box, "question"), w.Dropdown)
    # LoCoMo questions are offered; the slider spans the conversation's size.
    assert len(find(box, "question").options) > 100
    total = ctxlab.get_counter().count_messages(locomo[0].messages)
    assert find(box, "budget").max >= total
    assert "<table" in find(box, "metrics").value


def test_moving_the_slider_changes_view_and_tokens(locomo: list[Conversation]) -> None:
    box = widgets.explorer(locomo[0], ["token_window"])
    slider = find(box, "budget")
    slider.value = 2000
    small, small_view, small_n = sent_tokens(box), find(box, "view").value, sent_messages(box)
    slider.value = 8000
    big, big_view, big_n = sent_tokens(box), find(box, "view").value, sent_messages(box)
    assert 0 < small <= 2000 < big <= 8000
    assert small_n < big_n
    assert small_view != big_view
    # The metric table follows: it is the report of the same single choice.
    report = compare(locomo[0], "token_window", 8000, progress=False)
    cumulative = report.summary(["cumulative_input_tokens"], n_boot=0).iloc[0, -4]
    assert f"{cumulative:,.0f}" in find(box, "metrics").value


def test_editing_a_parameter_reprunes(locomo: list[Conversation]) -> None:
    box = widgets.explorer(locomo[0], ["sliding_window"], budgets=[20_000])
    params = find(box, "params").children
    editor = next(c for c in params if c.description == "max_messages")
    editor.value = "6"
    assert sent_messages(box) == 6
    editor.value = "40"
    assert sent_messages(box) == 40
    editor.value = "many"
    assert "whole number" in find(box, "status").value
    assert find(box, "view").value == ""


def test_literal_parameters_are_choices() -> None:
    box = widgets.explorer(datasets.load("taubench")[:1], ["summarize"], budgets=[2000])
    role = next(c for c in find(box, "params").children if c.description == "role")
    assert isinstance(role, w.Dropdown)
    assert set(role.options) == {"user", "system"}
    names = {c.description for c in find(box, "params").children}
    assert {"keep_last", "trigger", "target"} <= names
    assert "summarizer" not in names  # objects are left to code


def test_question_picker_outlines_evidence(locomo: list[Conversation]) -> None:
    conv = locomo[0]
    box = widgets.explorer(conv, ["token_window"], budgets=[1000, 30_000])
    picker = find(box, "question")
    index, question = next(
        (i, q) for i, q in enumerate(conv.annotations["questions"]) if len(q["evidence"]) >= 2
    )
    picker.value = index
    panel, view = find(box, "evidence").value, find(box, "view").value
    assert all(e in panel for e in question["evidence"])
    assert view.count("[evidence]") == len(question["evidence"])
    # At the small budget early evidence is gone; at the large one everything survives.
    find(box, "budget").value = 1000
    assert "✗ dropped" in find(box, "evidence").value
    find(box, "budget").value = 30_000
    n = len(question["evidence"])
    assert f"{n} of {n}</b>" in find(box, "evidence").value


def test_unreachable_budget_is_reported_not_raised(locomo: list[Conversation]) -> None:
    box = widgets.explorer(locomo[0], ["token_window"], budgets=[5, 4000])
    find(box, "budget").value = 5
    assert "budget" in find(box, "status").value.lower()
    assert find(box, "view").value == ""
    find(box, "budget").value = 4000
    assert sent_tokens(box) <= 4000


def test_bad_inputs_raise_usage_errors() -> None:
    with pytest.raises(UsageError, match="known strategies"):
        widgets.explorer(datasets.load("taubench")[:1], ["no_such_strategy"])
    with pytest.raises(UsageError, match="at least one strategy"):
        widgets.explorer(datasets.load("taubench")[:1], [])


def test_slider_on_the_largest_conversation(largest: Conversation) -> None:
    """Every slider position re-renders within the budget; timings are printed, not asserted."""
    box = widgets.explorer(largest, ["token_window", "mask_tool_outputs", "summarize"])
    slider, strategy = find(box, "budget"), find(box, "strategy")
    for name in strategy.options:
        strategy.value = name
        times = []
        for value in (2000, 4000, 8000, 16000):
            start = time.perf_counter()
            slider.value = value
            times.append(time.perf_counter() - start)
            assert sent_tokens(box) <= value
        print(f"{largest.id} {name}: slider update ms", [round(t * 1000) for t in times])


def test_comparison_tree_and_pickers() -> None:
    convs = datasets.load("taubench")[:4] + datasets.load("locomo")[:1]
    report = compare(convs, ["token_window", "mask_tool_outputs"], [1000, 4000], progress=False)
    box = widgets.comparison(report)
    assert isinstance(box, w.VBox)
    plot = find(box, "plot")
    [canvas] = plot.children  # matplotlib's widget canvas, showing the figure `pareto` draws
    assert canvas.figure.axes[0].get_ylabel().startswith("action-argument recall")
    assert list(find(box, "dataset").options) == ["taubench", "locomo"]
    assert find(box, "x").value == "cumulative_input_tokens"
    assert find(box, "y").value == "action_argument_recall"
    table = find(box, "table").value
    assert table.count("<tr") == 1 + 2 * 2  # header + strategies x budgets
    find(box, "dataset").value = "locomo"
    assert find(box, "y").value == "evidence_recall"
    assert plot.children[0] is not canvas
    assert plot.children[0].figure.axes[0].get_ylabel().startswith("evidence recall")
    front = report.pareto("cumulative_input_tokens", "evidence_recall")
    front = front[front["dataset"] == "locomo"]
    status = find(box, "status").value
    shown = re.findall(r"([\w()=]+) @ ([\d,]+)", status)
    assert [(s, int(b.replace(",", ""))) for s, b in shown] == list(
        zip(front["strategy"], front["budget"], strict=True)
    )
    assert f"({len(front)} of 4 points" in status
    assert plot.children[0].resizable is False  # shown at its own size, not stretched
    find(box, "budgets").value = (4000,)
    assert find(box, "table").value.count("<tr") == 1 + 2
    find(box, "strategy").value = "mask_tool_outputs"
    detail = find(box, "detail").value
    assert "mask_tool_outputs" in detail and "4000" in detail and "1000" not in detail
    find(box, "budgets").value = ()
    assert "no rows" in find(box, "status").value


def test_comparison_needs_rows() -> None:
    with pytest.raises(UsageError, match="no rows"):
        widgets.comparison(ctxlab.Report.from_rows(_empty_rows()))


def test_picking_a_question_asks_it_and_prunes_for_it(locomo: list[Conversation]) -> None:
    conv = locomo[0]
    box = widgets.explorer(conv, ["retrieve", "token_window"], budgets=[2000, 30_000])
    find(box, "budget").value = 2000
    before = sent_messages(box)
    index = next(
        i for i, q in enumerate(conv.annotations["questions"])
        if q["category"] == 4 and q["evidence"] and q["evidence"][0] < "D5"
    )  # fmt: skip
    question = conv.annotations["questions"][index]
    find(box, "question").value = index
    view, panel = find(box, "view").value, find(box, "evidence").value
    # The question is the newest message of the request, and retrieval ranked for it.
    assert question["question"] in view and sent_messages(box) != before
    assert "retrieved: score" in panel and "rank" in panel
    assert "metrics over 1 probe" in find(box, "metrics").value
    assert "evidence recall" in find(box, "metrics").value
    # Not asking: the same question only outlines its evidence in the unchanged request.
    find(box, "ask").value = False
    assert sent_messages(box) == before
    assert question["question"] not in find(box, "view").value


def test_changing_conversation_keeps_the_budget_and_controls_stay_in_sight(
    locomo: list[Conversation],
) -> None:
    box = widgets.explorer(locomo[:2], ["token_window"])
    slider = find(box, "budget")
    slider.value = slider.min + 10 * slider.step
    chosen = slider.value
    find(box, "conversation").value = 1
    assert abs(slider.value - chosen) <= slider.step  # the same budget, on the new grid
    assert find(box, "view").layout.max_height == "70vh"  # the view scrolls, not the page
    assert find(box, "view").layout.overflow == "auto"
    assert slider.layout.width == "560px"
    # A budget below what must be sent: the status says why and what to do.
    tau = widgets.explorer(datasets.load("taubench")[0], ["token_window"], budgets=[500])
    status = find(tau, "status").value
    assert "must be kept need" in status and "newest user message" in status
    assert "move the slider up" in status


def test_diff_lists_exactly_the_messages_two_strategies_treat_differently(
    locomo: list[Conversation],
) -> None:
    from ctxlab.strategies import get_strategy
    from ctxlab.widgets._diff import differences

    conv, counter = locomo[0], ctxlab.get_counter()
    box = widgets.diff(conv, "token_window", "sliding_window:max_messages=50", 4000)
    assert isinstance(box, w.VBox) and "ctxlab-diff" in box._dom_classes
    a = get_strategy("token_window").prune(conv, 4000, counter)
    b = get_strategy("sliding_window", max_messages=50).prune(conv, 4000, counter)
    differ = differences(a, b)
    # Independent check: the window keeps more of the recent past than 50 messages.
    kept_a = {d.message_id for d in a.decisions if d.action == "kept"}
    kept_b = {d.message_id for d in b.decisions if d.action == "kept"}
    assert len(differ) == len(kept_a ^ kept_b) > 0
    view = find(box, "diff-view").value
    assert f"decide differently on <b>{len(differ)}</b> of {len(conv.messages)}" in view
    assert view.count("<tr") == 1 + len(differ) and "tex2jax_ignore" in view
    listed = set(re.findall(r"font-family:monospace'>([^<]+)<", view))
    assert listed == kept_a ^ kept_b
    find(box, "diff-all").value = True
    assert find(box, "diff-view").value.count("<tr") == 1 + len(conv.messages)
    find(box, "diff-b").value = "token_window"
    assert "decide differently on <b>0</b>" in find(box, "diff-view").value
    find(box, "diff-budget").value = 10
    assert "must be kept" in find(box, "diff-view").value  # unreachable: said, not raised


def test_comparison_exports_figure_rows_and_settings_as_code(tmp_path: Path) -> None:
    convs = datasets.load("taubench")[:4] + datasets.load("locomo")[:1]
    report = compare(convs, ["token_window", "keep_all"], [1000, 4000], progress=False)
    box = widgets.comparison(report)
    find(box, "dataset").value = "locomo"
    find(box, "budgets").value = (4000,)
    find(box, "folder").value = str(tmp_path / "out")
    find(box, "export-button").click()
    assert "wrote" in find(box, "exported").value
    out = tmp_path / "out"
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    rows = pd.read_csv(out / "rows.csv")
    assert set(rows["dataset"]) == {"locomo"} and set(rows["budget"]) == {4000}
    # The settings run as they are and rebuild the same frontier.
    code = (out / "settings.py").read_text() + "print(front.to_json())\n"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True,
                            text=True, check=True, env=env)  # fmt: skip
    front = pd.read_json(io.StringIO(result.stdout.strip().splitlines()[-1]))
    sub = Report(df=report.df[(report.df["dataset"] == "locomo") & (report.df["budget"] == 4000)])
    expected = sub.pareto("cumulative_input_tokens", "evidence_recall")
    assert len(front) > 0 and list(front["strategy"]) == list(expected["strategy"])


def test_a_point_of_the_comparison_opens_in_the_explorer() -> None:
    convs = datasets.load("locomo")[:2]
    spec = "sliding_window:max_messages=30"
    report = compare(convs, ["token_window", spec], [2000, 4000], progress=False)
    for box in (widgets.comparison(report, convs), widgets.comparison(report)):  # given, or read
        point = find(box, "point")
        label = "sliding_window(max_messages=30)"
        assert (label, 4000) in [v for _, v in point.options]
        point.value = (label, 4000)
        find(box, "conv").value = convs[1].id
        find(box, "open-button").click()
        explorer = find(box, "opened").children[0]
        assert find(explorer, "strategy").value == label
        assert find(explorer, "budget").value == 4000
        assert f"on {convs[1].id} ·" in find(explorer, "view").value
        expected = ctxlab.strategies.get_strategy("sliding_window", max_messages=30)
        sent = expected.prune(convs[1], 4000, ctxlab.get_counter()).tokens
        assert sent_tokens(explorer) == sent


def test_the_first_point_and_conversation_are_chosen_from_the_start() -> None:
    convs = datasets.load("locomo")[:2]
    report = compare(convs, ["token_window"], [2000, 4000], progress=False)
    box = widgets.comparison(report, convs)
    assert find(box, "point").value == ("token_window", 2000)
    assert find(box, "conv").value == convs[0].id
    find(box, "open-button").click()
    assert find(find(box, "opened").children[0], "budget").value == 2000


def _click(canvas: Any, x: float, y: float) -> None:
    from matplotlib.backend_bases import MouseEvent

    event = MouseEvent("button_press_event", canvas, x, y, button=1)
    canvas.callbacks.process("button_press_event", event)


def test_clicking_a_point_of_the_plot_opens_it_in_the_explorer() -> None:
    convs = datasets.load("locomo")[:2]
    label = "sliding_window(max_messages=30)"
    report = compare(convs, ["token_window", "sliding_window:max_messages=30"], [2000, 4000],
                     progress=False)  # fmt: skip
    box = widgets.comparison(report, convs)
    [canvas] = find(box, "plot").children
    row = report.summary(["cumulative_input_tokens", "evidence_recall"], n_boot=0)
    row = row[(row["strategy"] == "token_window") & (row["budget"] == 4000)].iloc[0]
    canvas.figure.draw_without_rendering()
    ax = canvas.figure.axes[0]
    x, y = ax.transData.transform((row["cumulative_input_tokens"], row["evidence_recall"]))
    _click(canvas, ax.bbox.x0 + 3, ax.bbox.y1 - 3)  # an empty corner of the panel
    assert find(box, "opened").children == ()
    _click(canvas, x + 4, y - 4)  # near the marker, not on its centre
    explorer = find(box, "opened").children[0]
    assert (find(explorer, "strategy").value, find(explorer, "budget").value) == (
        "token_window", 4000)  # fmt: skip
    assert find(box, "point").value == ("token_window", 4000)  # the picker follows the click
    assert f"on {convs[0].id} ·" in find(explorer, "view").value
    # The window of 30 messages binds before either budget: one point drawn twice, and the
    # click picks the larger budget, whose marker covers the other.
    both = report.summary(["cumulative_input_tokens", "evidence_recall"], n_boot=0)
    both = both[both["strategy"] == label]
    assert both["cumulative_input_tokens"].nunique() == 1
    x, y = ax.transData.transform(
        (both["cumulative_input_tokens"].iloc[0], both["evidence_recall"].iloc[0]))  # fmt: skip
    _click(canvas, x, y)
    explorer = find(box, "opened").children[0]
    assert (find(explorer, "strategy").value, find(explorer, "budget").value) == (label, 4000)
