"""A static picture carried beside each widget, so a saved notebook reads before it runs.

A widget's saved output is a reference to a model that only a running kernel (or saved widget
state) provides. What front ends show in its place:

- JupyterLab and Notebook 7 render an *untrusted* notebook (any notebook this browser did not
  run itself: a clone, a download) through its safe types only. ``text/html`` is safe and
  ranks above ``text/plain``, so the HTML is shown, sanitized (inline styles and ``data:``
  images survive; scripts do not).
- nbconvert's HTML drops the widget view when the notebook holds no state for its model
  and falls back the same way; GitHub and nbviewer render ``text/html`` too.
- A running kernel (or JupyterLab with the saved widget state of a trusted notebook) shows
  the widget itself: the widget view ranks above both.

So the boxes the builders return display as the usual widget view plus a ``text/html``
snapshot of what they show at that moment, and a one-line ``text/plain`` in place of the
``VBox(children=...)`` repr. The snapshot is taken when the output is displayed; later
changes in the live widget are not written back into the saved output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from html import escape
from typing import Any

from ctxlab.widgets._html import NO_MATH

__all__ = ["snapshot_box", "snapshot_frame"]

_NOTE = "static picture of this view when the cell ran; run the cell to use the controls"
_BOX = "font-family:system-ui,sans-serif;font-size:13px;line-height:1.4;max-width:1100px"


def snapshot_frame(title: str, parts: list[str]) -> str:
    """The snapshot's HTML: a title, the run-the-cell note, then the parts in order."""
    head = (
        f"<div style='margin-bottom:4px'><b>{escape(title)}</b> "
        f"<span style='font-size:12px;opacity:0.75'>({_NOTE})</span></div>"
    )
    body = "".join(f"<div style='margin:4px 0'>{p}</div>" for p in parts if p)
    return f"<div class='ctxlab-snapshot {NO_MATH}' style='{_BOX}'>{head}{body}</div>"


def snapshot_box(
    w: Any, children: list[Any], html: Callable[[], str], text: Callable[[], str]
) -> Any:
    """An ``ipywidgets.VBox`` of `children` whose display also carries `html` and `text`.

    Args:
        w: the ipywidgets module.
        children: the box's children.
        html: builds the ``text/html`` snapshot of the current view.
        text: builds the one-line ``text/plain`` description.
    """
    box = _box_class(w)(children)
    box.snapshot_html, box.snapshot_text = html, text
    return box


@functools.cache
def _box_class(w: Any) -> Any:
    class SnapshotBox(w.VBox):  # type: ignore[misc]
        """A VBox whose display bundle adds a static snapshot (see the module docstring)."""

        snapshot_html: Callable[[], str] | None = None
        snapshot_text: Callable[[], str] | None = None

        def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
            bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
            if bundle is None or self.snapshot_html is None or self.snapshot_text is None:
                return bundle
            try:
                picture, line = self.snapshot_html(), self.snapshot_text()
            except Exception:  # the live widget must show, whatever happens to the picture
                return bundle
            return {**bundle, "text/html": picture, "text/plain": line}

    return SnapshotBox
