"""The explorer in a real browser: Voilà serves it on 127.0.0.1, Debian's chromium drives it.

Playwright comes from PyPI and drives the system ``chromium`` binary (never a downloaded
browser). Every request that does not go to 127.0.0.1 is blocked. When chromium, Playwright
or Voilà is missing the test is skipped, unless ``CTXLAB_REQUIRE_BROWSER=1`` (CI), where it
fails. Screenshots land in the test's temporary folder, and also in ``CTXLAB_ARTIFACTS``
(a folder; ``1`` means ``test-artifacts/``) when that is set.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BUDGETS = [1000, 2000, 4000, 8000]
NOTEBOOK = """{
 "cells": [{"cell_type": "code", "execution_count": null, "id": "explorer", "metadata": {},
   "outputs": [], "source": ["from ctxlab import datasets, widgets\\n",
   "widgets.explorer(datasets.load('locomo')[:1], ['token_window'], budgets=%s)"]}],
 "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
 "nbformat": 4, "nbformat_minor": 5
}
"""


PRICES = """{
 "cells": [{"cell_type": "code", "execution_count": null, "id": "prices", "metadata": {},
   "outputs": [], "source": ["from ctxlab import datasets\\n",
   "datasets.load('taubench')[0]"]}],
 "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
 "nbformat": 4, "nbformat_minor": 5
}
"""


VIEWS = """{
 "cells": [{"cell_type": "code", "execution_count": null, "id": "views", "metadata": {},
   "outputs": [], "source": ["import ipywidgets\\n",
   "from ctxlab import compare, datasets, widgets\\n",
   "convs = datasets.load('locomo')[:2]\\n",
   "report = compare(convs, ['token_window', 'sliding_window'], [2000, 4000], progress=False)\\n",
   "ipywidgets.VBox([widgets.comparison(report, convs),\\n",
   "                 widgets.diff(convs[0], 'token_window', 'sliding_window', 4000)])"]}],
 "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
 "nbformat": 4, "nbformat_minor": 5
}
"""


def _far_question() -> tuple[int, str]:
    """conv-26's question whose first evidence turn lies furthest down, and that turn's id."""
    from ctxlab import datasets

    conv = datasets.load("locomo")[0]
    where = {m.id: i for i, m in enumerate(conv.messages)}
    questions = conv.annotations["questions"]
    placed = [(min(where[e] for e in q["evidence"]), i) for i, q in enumerate(questions)
              if q.get("evidence") and all(e in where for e in q["evidence"])]  # fmt: skip
    position, index = max(placed)
    return index, conv.messages[position].id


def _require(what: str) -> None:
    if os.environ.get("CTXLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} (CTXLAB_REQUIRE_BROWSER=1)")
    pytest.skip(what)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"voila did not listen on port {port} within {timeout} s")


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        _require("Debian's chromium is not installed (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        _require("playwright is not installed (pip install playwright; never playwright install)")
    assert path is not None
    return path


@pytest.fixture
def voila_url(chromium: str, tmp_path: Path) -> Iterator[str]:
    yield from _voila(tmp_path, NOTEBOOK % BUDGETS)


@pytest.fixture
def evidence_url(chromium: str, tmp_path: Path) -> Iterator[str]:
    yield from _voila(tmp_path, NOTEBOOK % [4000])


@pytest.fixture
def prices_url(chromium: str, tmp_path: Path) -> Iterator[str]:
    yield from _voila(tmp_path, PRICES)


@pytest.fixture
def views_url(chromium: str, tmp_path: Path) -> Iterator[str]:
    yield from _voila(tmp_path, VIEWS)


def _voila(tmp_path: Path, text: str) -> Iterator[str]:
    """Serve a one-cell notebook with Voilà on 127.0.0.1 (which bundles JupyterLab's MathJax)."""
    if importlib.util.find_spec("voila") is None:
        _require("voila is not installed (pip install 'ctxlab[notebooks]')")
    notebook = tmp_path / "page.ipynb"
    notebook.write_text(text, encoding="utf-8")
    port = _free_port()
    log = (tmp_path / "voila.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1", "--show_tracebacks=True"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_listening(port, proc, 90)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _only_local(route: Any) -> None:
    if re.match(r"^(https?|wss?)://127\.0\.0\.1[:/]", route.request.url):
        route.continue_()
    else:
        route.abort()


def _save(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    target = os.environ.get("CTXLAB_ARTIFACTS")
    if target:
        folder = Path("test-artifacts" if target in ("1", "true") else target)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    return path


def _state(page: Any) -> tuple[int, str]:
    sent = page.locator(".ctxlab-tokens .ctxlab-sent").first.inner_text()
    header = page.locator(".ctxlab-view").first.inner_text().split("\n", 1)[0]
    return int(sent.replace(",", "")), header


def test_budget_slider_changes_view_and_tokens(
    chromium: str, voila_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", _only_local)
            page.goto(voila_url, timeout=120_000)
            page.locator(".ctxlab-tokens .ctxlab-sent").first.wait_for(timeout=120_000)
            before, header_before = _state(page)
            _save(page, tmp_path, "explorer-before")
            assert 2000 < before <= 4000  # the slider starts at the middle budget; 8000 is next
            handle = page.locator(".ctxlab-budget .noUi-handle").first
            handle.focus()
            start = time.perf_counter()
            handle.press("ArrowRight")
            page.wait_for_function(
                "old => document.querySelector('.ctxlab-tokens .ctxlab-sent').innerText != old",
                arg=f"{before:,}",
                timeout=60_000,
            )
            took = time.perf_counter() - start
            # The token bar and the view are two widgets, updated by two messages.
            page.wait_for_function(
                "old => !document.querySelector('.ctxlab-view').innerText.startsWith(old)",
                arg=header_before,
                timeout=60_000,
            )
            after, header_after = _state(page)
            _save(page, tmp_path, "explorer-after")
            print(f"browser: slider key press to new token count in {took * 1000:.0f} ms")
        finally:
            browser.close()
    assert 4000 < after <= 8000, (before, after)
    assert header_before != header_after
    assert re.search(r"sends \d+ of \d+ messages", header_after)


def test_prices_stay_text_not_maths(chromium: str, prices_url: str, tmp_path: Path) -> None:
    """tau-bench's "$121 ... $100" must not become one italic formula in JupyterLab."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", _only_local)
            page.goto(prices_url, timeout=120_000)
            view = page.locator(".tex2jax_ignore").first
            view.wait_for(timeout=120_000)
            page.wait_for_timeout(3000)  # time for a typesetter to act, were it going to
            text = view.inner_text()
            maths = page.locator("mjx-container, .MathJax").count()
            _save(page, tmp_path, "prices")
        finally:
            browser.close()
    assert "$121" in text and "$100" in text
    assert maths == 0


def test_diff_and_opening_a_point_in_the_explorer(
    chromium: str, views_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", _only_local)
            page.goto(views_url, timeout=120_000)
            page.locator(".ctxlab-diff-view").first.wait_for(timeout=120_000)
            diff = page.locator(".ctxlab-diff-view").first.inner_text()
            page.locator(".ctxlab-open-button").first.click()
            view = page.locator(".ctxlab-opened .ctxlab-view").first
            view.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => document.querySelector('.ctxlab-opened .ctxlab-view').innerText.length > 0",
                timeout=60_000,
            )
            opened = view.inner_text()
            _save(page, tmp_path, "comparison-opened")
        finally:
            browser.close()
    assert re.search(r"decide differently on \d+ of \d+ messages", diff)
    # The first point offered is token_window at 2,000 tokens, on the first conversation.
    assert re.search(r"^token_window on conv-26 · sends \d+ of \d+ messages", opened)
    assert "within budget 2,000" in opened


def test_an_evidence_link_scrolls_the_view_to_its_turn(
    chromium: str, evidence_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    index, first = _far_question()
    inside = """([view, id]) => {
        const row = document.getElementById(id).getBoundingClientRect();
        const box = view.getBoundingClientRect();
        return row.top >= box.top && row.bottom <= box.bottom;
    }"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", _only_local)
            page.goto(evidence_url, timeout=120_000)
            page.locator(".ctxlab-tokens .ctxlab-sent").first.wait_for(timeout=120_000)
            page.locator(".ctxlab-question select").select_option(index=index + 1)
            link = page.locator(".ctxlab-jump", has_text=first).first
            link.wait_for(timeout=60_000)
            target = (link.get_attribute("href") or "#")[1:]
            view = page.locator(".ctxlab-view").first
            page.locator(f"[id='{target}']").wait_for(state="attached", timeout=60_000)
            seen_before = page.evaluate(inside, [view.element_handle(), target])
            link.click()
            page.wait_for_function(inside, arg=[view.element_handle(), target], timeout=10_000)
            scrolled = view.evaluate("e => e.scrollTop")
            controls = page.evaluate(
                "() => document.querySelector('.ctxlab-budget').getBoundingClientRect().top"
            )
            _save(page, tmp_path, "explorer-evidence")
        finally:
            browser.close()
    assert not seen_before  # the turn was out of sight, far down the conversation
    assert scrolled > 1000
    assert controls >= 0  # only the view scrolled: the controls are still in sight


def _point_pixels() -> tuple[float, float, float]:
    """Where VIEWS's comparison draws token_window at 4,000 tokens: (x, y, figure height)."""
    from ctxlab import compare, datasets, widgets

    convs = datasets.load("locomo")[:2]
    report = compare(convs, ["token_window", "sliding_window"], [2000, 4000], progress=False)
    box = widgets.comparison(report, convs)
    plot = next(c for c in _walk(box) if "ctxlab-plot" in getattr(c, "_dom_classes", ()))
    figure = plot.children[0].figure
    row = report.summary(["cumulative_input_tokens", "evidence_recall"], n_boot=0)
    row = row[(row["strategy"] == "token_window") & (row["budget"] == 4000)].iloc[0]
    figure.draw_without_rendering()
    x, y = figure.axes[0].transData.transform(
        (row["cumulative_input_tokens"], row["evidence_recall"]))  # fmt: skip
    return float(x), float(y), float(figure.bbox.height)


def _walk(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_clicking_a_point_of_the_plot_opens_it_in_the_explorer(
    chromium: str, views_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    x, y, height = _point_pixels()  # figure pixels, from the bottom; one per CSS pixel here
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.route("**/*", _only_local)
            page.goto(views_url, timeout=120_000)
            figure = page.locator(".ctxlab-plot .jupyter-matplotlib-canvas-div").first
            figure.wait_for(timeout=120_000)
            figure.scroll_into_view_if_needed()
            box = figure.bounding_box()
            assert box is not None and abs(box["height"] - height) < 2, (box, height)
            page.mouse.click(box["x"] + x, box["y"] + height - y)
            view = page.locator(".ctxlab-opened .ctxlab-view").first
            view.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => document.querySelector('.ctxlab-opened .ctxlab-view').innerText.length > 0",
                timeout=60_000,
            )
            opened = view.inner_text()
            _save(page, tmp_path, "comparison-clicked")
        finally:
            browser.close()
    assert re.search(r"^token_window on conv-26 · sends \d+ of \d+ messages", opened)
    assert "within budget 4,000" in opened
