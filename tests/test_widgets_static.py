"""What the widgets leave in a saved notebook, their evidence links and their parameter help."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from ctxlab import datasets, strategies, widgets
from ctxlab.strategies._params import parameter_help
from ctxlab.widgets._html import anchor_id

WIDGET = "application/vnd.jupyter.widget-view+json"
CELLS = {
    "explorer": (
        "from ctxlab import compare, datasets, widgets\n"
        "convs = datasets.load('taubench')[:3]\n"
        "widgets.explorer(convs, ['token_window', 'sliding_window'], budgets=[1000, 2000, 4000])"
    ),
    "comparison": (
        "report = compare(convs, ['token_window', 'sliding_window'], [2000, 4000], "
        "progress=False)\nwidgets.comparison(report, convs)"
    ),
    "diff": "widgets.diff(convs[0], 'token_window', 'sliding_window', 4000)",
}


def find(root: Any, name: str) -> Any:
    if f"ctxlab-{name}" in getattr(root, "_dom_classes", ()):
        return root
    for child in getattr(root, "children", ()):
        hit = find(child, name)
        if hit is not None:
            return hit
    return None


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run a notebook of the three widgets in a kernel, save it, read it back: name -> data."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, id=name) for name, source in CELLS.items()]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    path = tmp_path_factory.mktemp("saved") / "widgets.ipynb"
    nbformat.write(nb, path)
    read = nbformat.read(path, as_version=4)
    out = {}
    for cell in read.cells:
        [output] = [o for o in cell.outputs if o.get("output_type") == "execute_result"]
        out[cell.id] = dict(output["data"])
    return out


@pytest.mark.parametrize("name", list(CELLS))
def test_a_saved_widget_output_carries_a_readable_picture(
    saved: dict[str, dict[str, Any]], name: str
) -> None:
    data = saved[name]
    assert WIDGET in data  # a running kernel still shows the live widget
    assert "VBox(" not in data["text/plain"]
    assert data["text/plain"].startswith(f"ctxlab {name}: ")
    page = data["text/html"]
    assert "ctxlab-snapshot" in page and "tex2jax_ignore" in page
    assert "run the cell to use the controls" in page
    if name == "explorer":
        assert re.search(r"sends \d+ of \d+ messages", page)
        assert "class='ctxlab-sent'" in page  # the token bar
        assert "metrics over" in page
    elif name == "comparison":
        assert "Pareto frontier (" in page
        assert re.search(r"<img src='data:image/png;base64,[A-Za-z0-9+/=]{1000,}'", page)
        assert "(n=" in page  # the table, with its unit counts
    else:
        assert re.search(r"decide differently on <b>\d+</b> of \d+ messages", page)


def test_static_html_of_a_saved_notebook_shows_the_pictures(
    saved: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # Without saved widget state, nbconvert drops the widget view and falls back to the HTML.
    nb = nbformat.v4.new_notebook()
    for name, data in saved.items():
        output = nbformat.v4.new_output("execute_result", data=data, execution_count=1)
        nb.cells.append(nbformat.v4.new_code_cell(CELLS[name], outputs=[output]))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    assert body.count("ctxlab-snapshot") == 3
    assert "VBox(children" not in body


def test_every_strategy_parameter_has_help_from_its_docstring() -> None:
    for name in strategies.names():
        cls = strategies.strategy_class(name)
        fields = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
        helps = parameter_help(cls)
        assert sorted(helps) == sorted(fields), name
        assert all(len(text) > 10 for text in helps.values()), (name, helps)
    # Inherited and shared entries: "a, b: text" gives each name the text.
    assert "trim_messages" in parameter_help(strategies.strategy_class("langchain_trim"))["end_on"]


def test_the_explorer_shows_each_parameters_help() -> None:
    box = widgets.explorer(datasets.load("locomo")[:1], ["summarize", "sliding_window"])
    helps = parameter_help(strategies.strategy_class("summarize"))
    shown = find(box, "help").value
    for control in find(box, "params").children:
        assert control.tooltip == helps[control.description]
        assert f"<code>{control.description}</code>" in shown
    find(box, "strategy").value = "sliding_window"
    assert "max_turns" in find(box, "help").value


def test_evidence_links_point_at_rows_of_the_view() -> None:
    conv = max(datasets.load("locomo"), key=lambda c: len(c.messages))  # 689 messages
    box = widgets.explorer([conv], ["token_window"], budgets=[4000])
    questions = conv.annotations["questions"]
    far = max(range(len(questions)), key=lambda i: len(questions[i].get("evidence") or ()))
    find(box, "question").value = far
    panel, view = find(box, "evidence").value, find(box, "view").value
    targets = re.findall(r"<a class='ctxlab-jump' href='#([^']+)'", panel)
    assert len(targets) == len(set(map(str, questions[far]["evidence"]))) > 1
    for target in targets:
        assert f"id='{target}'" in view
    prefix = targets[0].rsplit("-", 1)[0]
    last = conv.messages[-1].id
    assert f"id='{anchor_id(prefix, last)}'" in view  # every row is drawn, however long
    assert "rows not shown" not in view


def test_the_clickable_plot_leaves_matplotlibs_backend_alone() -> None:
    # Importing ipympl switches matplotlib to its widget backend; the reader's own plots
    # must keep theirs. A fresh process, where ipympl is not imported yet.
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "from ctxlab import compare, datasets, widgets\n"
        "convs = datasets.load('taubench')[:2]\n"
        "widgets.comparison(compare(convs, ['token_window'], [4000], progress=False))\n"
        "import sys; assert 'ipympl' in sys.modules\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
