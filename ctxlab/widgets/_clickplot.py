"""The comparison's plot as a live matplotlib canvas: clicking a point picks that point.

The figure is the one `ctxlab.lab.plots.pareto` draws, shown through ipympl (matplotlib's
widget canvas, ``pip install 'ctxlab[notebooks]'``), which reports mouse clicks in the
figure's own coordinates. A click in a panel picks the nearest drawn point (strategy at a
budget) within `RADIUS` pixels of it; a click elsewhere picks nothing. Where points coincide
the largest budget is picked: its marker, the biggest, is the one seen.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ctxlab.errors import MissingDependencyError

__all__ = ["RADIUS", "ClickPlot", "Point"]

#: How far from a marker's centre (figure pixels) a click still picks it.
RADIUS = 12.0
_TOOLBAR_WARNING = r"Passing unrecognized arguments to super\(Toolbar\)"
#: A drawn point: (strategy, budget, x value, y value).
Point = tuple[str, int, float, float]


def _canvas_classes() -> tuple[Any, Any]:
    """The canvas and manager classes of ipympl, leaving matplotlib's backend as it was.

    Importing ipympl switches matplotlib to its widget backend (``%matplotlib widget``); the
    reader's own plots must keep theirs, so the backend is put back.
    """
    import matplotlib

    backend = matplotlib.get_backend()  # resolved now, so that it can be restored
    try:
        from ipympl.backend_nbagg import Canvas, FigureManager
    except ImportError as exc:
        raise MissingDependencyError("ipympl", "notebooks", "ctxlab.widgets") from exc
    finally:
        matplotlib.use(backend)
    return _plain(Canvas), FigureManager


@functools.cache
def _plain(canvas: Any) -> Any:
    """The canvas without header, footer, toolbar or resizing, as defaults of its state.

    No toolbar means no pan or zoom: a click is a pick.
    """
    import traitlets

    class PlainCanvas(canvas):  # type: ignore[misc]
        header_visible = traitlets.Bool(False).tag(sync=True)
        footer_visible = traitlets.Bool(False).tag(sync=True)
        toolbar_visible = traitlets.Any(False).tag(sync=True)
        resizable = traitlets.Bool(False).tag(sync=True)

    return PlainCanvas


class ClickPlot:
    """A box showing one figure at a time; `on_pick(strategy, budget)` on a click near a point."""

    def __init__(self, w: Any, on_pick: Callable[[str, int], None]) -> None:
        self.w, self.on_pick = w, on_pick
        self.box = w.Box()
        self.canvas: Any = None
        self.figure: Any = None
        self.points: list[Point] = []

    def show(self, figure: Any, points: Sequence[Point]) -> None:
        """Show `figure`, whose single panel draws `points`, in place of the previous one."""
        canvas_class, manager_class = _canvas_classes()
        canvas = canvas_class(figure)
        with warnings.catch_warnings():
            # ipympl's toolbar hands traitlets an argument it deprecates; nothing to do here.
            warnings.filterwarnings("ignore", _TOOLBAR_WARNING, DeprecationWarning)
            manager_class(canvas, 0)  # handles the front end's messages; never made current
        canvas.mpl_connect("button_press_event", self._on_press)
        if self.canvas is not None:
            self.canvas.close()
        self.canvas, self.figure, self.points = canvas, figure, list(points)
        self.box.children = [canvas]

    def pixels(self) -> list[tuple[float, float]]:
        """Where each point lies in the figure, in pixels from its bottom-left corner."""
        if self.figure is None or not self.points:
            return []
        self.figure.draw_without_rendering()  # lays the figure out, so the transform is final
        ax = self.figure.axes[0]
        xy = np.array([(p[2], p[3]) for p in self.points], dtype=np.float64)
        return [(float(a), float(b)) for a, b in ax.transData.transform(xy)]

    def nearest(self, x: float, y: float) -> Point | None:
        """The point drawn within `RADIUS` pixels of (x, y), the closest one, or None."""
        pixels = self.pixels()
        if not pixels:
            return None
        distance = [float(np.hypot(px - x, py - y)) for px, py in pixels]
        # Points drawn on top of each other (a limit that binds before the budget gives the
        # same point at several budgets): the largest budget, whose marker is the one seen.
        best = min(range(len(pixels)), key=lambda i: (round(distance[i]), -self.points[i][1]))
        return self.points[best] if distance[best] <= RADIUS else None

    def _on_press(self, event: Any) -> None:
        if event.inaxes is None or event.x is None or event.y is None:
            return
        point = self.nearest(event.x, event.y)
        if point is not None:
            self.on_pick(point[0], point[1])

    def png(self, dpi: float) -> bytes:
        """The current figure as a PNG (for a static picture)."""
        if self.figure is None:
            return b""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()
