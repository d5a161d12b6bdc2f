"""The curated public API: exact, sorted, and every name resolves."""

from __future__ import annotations

import subprocess
import sys

import ctxlab

EXPECTED = {
    "Budget",
    "BudgetUnreachableError",
    "Conversation",
    "CtxlabError",
    "DataFormatError",
    "Message",
    "Report",
    "Session",
    "ToolCall",
    "acompare",
    "compare",
    "datasets",
    "get_counter",
    "load",
    "providers",
    "save",
    "strategies",
    "widgets",
}


def test_all_is_sorted_and_exact() -> None:
    assert ctxlab.__all__ == sorted(ctxlab.__all__)
    assert set(ctxlab.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in ctxlab.__all__:
        assert getattr(ctxlab, name) is not None, name


def test_public_errors_share_one_root() -> None:
    for name in ("DataFormatError", "BudgetUnreachableError"):
        assert issubclass(getattr(ctxlab, name), ctxlab.CtxlabError)


def test_import_is_light() -> None:
    """`import ctxlab` must not pull pandas, matplotlib, httpx or ipywidgets."""
    code = (
        "import sys, ctxlab; "
        "heavy = [m for m in ('pandas', 'matplotlib', 'httpx', 'ipywidgets') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
