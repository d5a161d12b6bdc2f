"""A saved notebook of widgets, opened in JupyterLab before it runs: the pictures show.

The notebook is executed in a kernel and saved, as a clone of the repository holds it, then
opened in JupyterLab (served on 127.0.0.1, every outside request blocked, nothing run). A
notebook that this browser did not run is untrusted, so JupyterLab renders each widget
output through its safe types: the ``text/html`` picture, never the ``VBox(children=...)``
text. The same rules as `test_browser` apply (system chromium, ``CTXLAB_REQUIRE_BROWSER``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from test_browser import (
    CHROMIUM_ARGS,
    _free_port,
    _only_local,
    _save,
    _wait_listening,
    chromium,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.browser

CELLS = [
    "from ctxlab import compare, datasets, widgets\n"
    "convs = datasets.load('locomo')[:2]\n"
    "widgets.explorer(convs[:1], ['token_window'], budgets=[2000, 4000, 8000])",
    "report = compare(convs, ['token_window', 'sliding_window'], [2000, 4000], progress=False)\n"
    "widgets.comparison(report, convs)",
    "widgets.diff(convs[0], 'token_window', 'sliding_window', 4000)",
]


@pytest.fixture
def lab_url(chromium: str, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """JupyterLab on 127.0.0.1 serving `saved.ipynb`, run once by a kernel and saved."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    nbformat.write(nb, tmp_path / "saved.ipynb")
    # No news toast: JupyterLab would otherwise ask, over the outputs, to fetch news.
    settings = tmp_path / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text('{"fetchNews": "false"}', encoding="utf-8")  # fmt: skip
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}  # fmt: skip
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
         f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", "--ServerApp.allow_root=True"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
    )  # fmt: skip
    try:
        _wait_listening(port, proc, 120)
        yield f"http://127.0.0.1:{port}/lab/tree/saved.ipynb"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_saved_notebook_shows_the_widgets_pictures_before_it_runs(
    chromium: str,  # noqa: F811
    lab_url: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", _only_local)
            page.goto(lab_url, timeout=120_000)
            pictures = page.locator(".jp-OutputArea-output .ctxlab-snapshot")
            pictures.nth(2).wait_for(state="attached", timeout=120_000)
            texts = [pictures.nth(i).text_content() or "" for i in range(3)]
            plot = page.locator(".ctxlab-snapshot img").first
            plot.scroll_into_view_if_needed()
            loaded = "e => e.complete && e.naturalWidth > 0"
            page.wait_for_function(loaded, arg=plot.element_handle())
            plot_width = plot.evaluate("e => e.naturalWidth")
            bar = page.locator(".ctxlab-snapshot .ctxlab-sent").first.inner_text()
            outputs = page.locator(".jp-OutputArea-output").all_text_contents()
            _save(page, tmp_path, "saved-notebook-comparison")
            pictures.first.scroll_into_view_if_needed()
            _save(page, tmp_path, "saved-notebook-explorer")
        finally:
            browser.close()
    assert not any("VBox(children" in text for text in outputs)
    assert texts[0].startswith("ctxlab explorer: token_window on conv-26 at budget 4,000")
    assert "sends" in texts[0] and int(bar.replace(",", "")) > 0
    assert texts[1].startswith("ctxlab comparison: locomo")
    assert "Pareto frontier" in texts[1] and plot_width > 500
    assert texts[2].startswith("ctxlab diff: token_window against sliding_window on conv-26")
