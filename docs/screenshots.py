"""Screenshots of the explorer, the comparison widget and `ctxlab compare`'s pareto.png.

Serves two one-cell notebooks with Voilà on 127.0.0.1, drives them with Playwright in the
system's headless chromium (every request that does not go to 127.0.0.1 is blocked), runs the
default ``ctxlab compare`` for its ``pareto.png``, and writes ``explorer.png``,
``comparison.png`` and ``pareto.png`` (shrunk, as a 256-colour palette) into a folder::

    python docs/screenshots.py docs/img

Uses only the public API, so it runs against any checkout (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPLORER = """from ctxlab import datasets, widgets
widgets.explorer(datasets.load('locomo')[:1], ['token_window', 'summarize', 'importance'])"""
COMPARISON = """from ctxlab import compare, datasets, widgets
convs = datasets.load('locomo')
report = compare(convs, ['token_window', 'sliding_window:max_messages=50', 'summarize',
                         'importance'], [2000, 4000, 8000], progress=False)
widgets.comparison(report)"""
WIDTH = 1100  # pixels of the saved pictures


def _notebook(source: str) -> str:
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "c",
        "metadata": {},
        "outputs": [],
        "source": source,
    }
    return json.dumps(
        {
            "cells": [cell],
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
            },
        }
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _only_local(route: Any) -> None:
    url = route.request.url
    if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:")):
        route.continue_()
    else:
        route.abort()


def _voila(folder: Path, name: str, source: str) -> tuple[subprocess.Popen[bytes], str]:
    path = folder / f"{name}.ipynb"
    path.write_text(_notebook(source), encoding="utf-8")
    port = _port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            str(path),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(180):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise TimeoutError("voila did not start")


def _shoot_explorer(page: Any, out: Path) -> None:
    page.locator(".ctxlab-view").first.wait_for(timeout=180_000)
    page.wait_for_timeout(1000)
    question = page.locator(".ctxlab-question select")
    if question.count():
        question.select_option(index=40)  # a question whose evidence lies mid-conversation
        page.wait_for_timeout(2000)
        jump = page.locator(".ctxlab-jump")
        if jump.count():
            jump.first.click()
            page.wait_for_timeout(500)
    page.screenshot(path=str(out))


def _shoot_comparison(page: Any, out: Path) -> None:
    page.locator(".ctxlab-table").first.wait_for(timeout=300_000)
    page.wait_for_timeout(3000)
    page.screenshot(path=str(out), full_page=True)


def _pareto(folder: Path, out: Path, page: Any) -> None:
    results = folder / "results"
    subprocess.run(
        [sys.executable, "-m", "ctxlab", "compare", "--out", str(results / "r.csv")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    png = results / "pareto.png"
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    page.set_content(
        f"<body style='margin:0'><img src='data:image/png;base64,{data}' style='width:100%'></body>"
    )
    page.wait_for_timeout(500)
    page.screenshot(path=str(out), full_page=True)


def _shrink(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        height = round(image.height * WIDTH / image.width)
        small = image.convert("RGB").resize((WIDTH, height), Image.Resampling.LANCZOS)
    # Octree without dithering keeps the few strong plot colours exact (median cut greys them).
    palette = small.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    palette.save(path, optimize=True)


def main(target: Path) -> None:
    """Write the three pictures into `target`."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        folder = Path(tmp)
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for name, source, shoot in (
                ("explorer", EXPLORER, _shoot_explorer),
                ("comparison", COMPARISON, _shoot_comparison),
            ):
                proc, url = _voila(folder, name, source)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 1100})
                    page.route("**/*", _only_local)
                    page.goto(url, timeout=300_000)
                    shoot(page, target / f"{name}.png")
                finally:
                    proc.terminate()
                    proc.wait()
            page = browser.new_page(viewport={"width": 1280, "height": 600})
            page.route("**/*", _only_local)
            _pareto(folder, target / "pareto.png", page)
        finally:
            browser.close()
    for name in ("explorer", "comparison", "pareto"):
        _shrink(target / f"{name}.png")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
