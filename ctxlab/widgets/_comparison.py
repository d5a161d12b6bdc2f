"""The comparison widget behind `ctxlab.widgets.comparison`: pickers, Pareto plot, tables.

The plot is `ctxlab.lab.plots.pareto` rendered to PNG; the tables are `Report.summary` rows. A
summary row depends only on its own (dataset, strategy, budget) group (its bootstrap is
seeded per group), so the summary of the whole report is computed once per metric pair and
sliced for each filter, which keeps the pickers quick on big reports.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ctxlab.errors import CtxlabError
from ctxlab.lab.plots import strategy_styles
from ctxlab.lab.report import KEYS, MIN_UNITS, Report
from ctxlab.messages import Conversation
from ctxlab.widgets._clickplot import ClickPlot
from ctxlab.widgets._snapshot import snapshot_box, snapshot_frame

__all__ = ["Comparison"]

_CSS_DPI = 96  # CSS pixels per inch
_BOOT = 200  # bootstrap replicates: enough for two-digit intervals, quick to redraw
_NO_VALUE = "n/a"


class Comparison:
    """The widgets of `comparison` and the callbacks that refresh them."""

    def __init__(
        self, w: Any, report: Report, conversations: Sequence[Conversation] | None = None
    ) -> None:
        self.w, self.report = w, report
        self._given = conversations
        self._convs: dict[tuple[str, str], Conversation] | None = None
        df = report.df
        columns = report.metric_columns
        self._summaries: dict[tuple[str | None, tuple[str, ...]], pd.DataFrame] = {}
        self._quiet = False
        self.dataset = w.Dropdown(options=list(dict.fromkeys(df["dataset"])), description="dataset")
        budgets = sorted(int(b) for b in set(df["budget"]))
        self.budgets = w.SelectMultiple(options=budgets, value=budgets, description="budgets")
        self.x = w.Dropdown(options=columns, description="x (cost)")
        self.x.value = "cumulative_input_tokens" if "cumulative_input_tokens" in columns else None
        self.y = w.Dropdown(options=columns, description="y (kept)")
        self.strategy = w.Select(
            options=list(dict.fromkeys(df["strategy"])), description="strategy"
        )
        # A click on a point opens it in the explorer, like the picker and button below.
        self.clickplot = ClickPlot(w, self.pick)
        self.plot = self.clickplot.box
        self.styles = strategy_styles(report)  # one colour per strategy whatever the filter
        self.status, self.table, self.detail = w.HTML(), w.HTML(), w.HTML()
        for name in (
            "dataset",
            "budgets",
            "x",
            "y",
            "strategy",
            "plot",
            "status",
            "table",
            "detail",
        ):
            getattr(self, name).add_class(f"ctxlab-{name}")
        self._default_y()
        self.dataset.observe(self._on_dataset, names="value")
        for control in (self.budgets, self.x, self.y):
            control.observe(self.refresh, names="value")
        self.strategy.observe(self.show_strategy, names="value")
        pickers = w.VBox([self.dataset, self.x, self.y])
        self.folder = w.Text(value="ctxlab-export", description="export to")
        self.export_button = w.Button(description="export figure, CSV, code")
        self.exported = w.HTML()
        for name in ("folder", "export_button", "exported"):
            getattr(self, name).add_class(f"ctxlab-{name.replace('_', '-')}")
        self.export_button.on_click(self.export)
        # Open a point of the plot (a strategy at a budget) on one conversation in the explorer.
        self.point = w.Dropdown(options=[], description="point")
        self.conv = w.Dropdown(options=[], description="conversation")
        self.open_button = w.Button(description="open in explorer")
        self.opened = w.VBox()
        for name in ("point", "conv", "open_button", "opened"):
            getattr(self, name).add_class(f"ctxlab-{name.replace('_', '-')}")
        self.open_button.on_click(self.open)
        self.box = snapshot_box(w, [
            w.HBox([pickers, self.budgets, self.strategy]),
            w.HBox([self.folder, self.export_button, self.exported]),
            self.status,
            self.plot,
            # Under the plot, so that a click on a point opens the explorer just below it.
            w.HBox([self.point, self.conv, self.open_button]),
            self.opened,
            self.table,
            self.detail,
        ], self.snapshot, self.describe)  # fmt: skip
        self.box.add_class("ctxlab-comparison")
        self.refresh()

    def describe(self) -> str:
        """One line naming what is shown: dataset, axes, budgets."""
        budgets = ", ".join(f"{b:,}" for b in self.budgets.value)
        return (
            f"ctxlab comparison: {self.dataset.value}, {self.y.value} against {self.x.value} "
            f"at budgets {budgets}"
        )

    def snapshot(self) -> str:
        """The view as static HTML: the frontier line, the plot, the tables."""
        plot = ""
        figure = self.clickplot.figure
        if figure is not None:
            # Drawn at twice the CSS size: sharp on high-density screens, never upscaled.
            data = base64.b64encode(self.clickplot.png(2 * _CSS_DPI)).decode("ascii")
            width = f"{figure.get_size_inches()[0] * _CSS_DPI:.0f}px"
            plot = (f"<img src='data:image/png;base64,{data}' alt='Pareto plot' "
                    f"style='width:{width};max-width:100%'>")  # fmt: skip
        return snapshot_frame(self.describe(), [self.status.value, plot, self.table.value,
                                                self.detail.value])  # fmt: skip

    def _default_y(self) -> None:
        from ctxlab.lab.plots import RETENTION

        rows = self.report.df[self.report.df["dataset"] == self.dataset.value]
        have = [c for c in RETENTION if c in rows and rows[c].notna().any()]
        self.y.value = have[0] if have else self.y.options[-1]

    def _on_dataset(self, _change: object = None) -> None:
        self._quiet = True
        try:
            self._default_y()
        finally:
            self._quiet = False
        self.refresh()

    def selection(self) -> Report:
        """The report restricted to the chosen dataset and budgets."""
        df = self.report.df
        mask = (df["dataset"] == self.dataset.value) & df["budget"].isin(self.budgets.value)
        return Report(df=df[mask].reset_index(drop=True), meta=self.report.meta)

    def summary(self, metrics: Sequence[str], strategy: str | None = None) -> pd.DataFrame:
        """`Report.summary` rows of the chosen dataset and budgets (and `strategy`, if given).

        Computed once per (strategy, metrics) over the whole report, then sliced.
        """
        key = (strategy, tuple(dict.fromkeys(metrics)))
        if key not in self._summaries:
            df = self.report.df
            rows = df if strategy is None else df[df["strategy"] == strategy]
            part = Report(df=rows.reset_index(drop=True), meta=self.report.meta)
            self._summaries[key] = part.summary(list(key[1]), n_boot=_BOOT)
        table = self._summaries[key]
        mask = (table["dataset"] == self.dataset.value) & table["budget"].isin(self.budgets.value)
        chosen: pd.DataFrame = table[mask]
        return chosen

    def refresh(self, _change: object = None) -> None:
        """Redraw the plot and the table for the current choices."""
        from ctxlab.lab.plots import pareto

        if self._quiet:
            return
        sub, x, y = self.selection(), self.x.value, self.y.value
        if sub.df.empty:
            self.status.value = "<i>no rows: choose at least one budget</i>"
            return
        try:
            figure = pareto(sub, x=x, y=y, datasets=[self.dataset.value], styles=self.styles)
        except CtxlabError as exc:
            self.status.value = f"<i>{html.escape(str(exc))}</i>"
            return
        figure.set_dpi(_CSS_DPI)  # one figure pixel per CSS pixel; the canvas handles HiDPI
        table = self.summary([x, y])
        drawn = table.dropna(subset=[x, y])
        at = [(str(s), int(b), float(a), float(c)) for s, b, a, c
              in drawn[["strategy", "budget", x, y]].itertuples(index=False)]  # fmt: skip
        self.clickplot.show(figure, at)
        front = sub.pareto(x, y)
        points = [f"{s} @ {b:,}" for s, b in zip(front["strategy"], front["budget"], strict=True)]
        self.status.value = (
            f"Pareto frontier ({len(points)} of {_points(sub, x, y)} points; no other point "
            f"costs no more and keeps no less): {html.escape(', '.join(points) or 'none')}"
        )
        self.table.value = _table_html(table, [x, y])
        self._points(sub)
        self.show_strategy()

    def _points(self, sub: Report) -> None:
        """Offer the points drawn and the conversations behind them (first ones chosen)."""
        df = sub.df
        pairs = df[["strategy", "budget"]].drop_duplicates()
        points = [(f"{s} @ {b:,}", (s, int(b))) for s, b in pairs.itertuples(index=False)]
        convs = list(dict.fromkeys(map(str, df["conversation_id"])))
        for control, options in ((self.point, points), (self.conv, convs)):
            values = [o[1] if isinstance(o, tuple) else o for o in options]
            keep = control.value if control.value in values else None
            control.options = options
            control.value = keep if keep is not None else (values[0] if values else None)

    def pick(self, strategy: str, budget: int) -> None:
        """Open the point (`strategy` at `budget`) a click picked, on the chosen conversation."""
        self.point.value = (strategy, budget)
        self.open()

    def open(self, _button: object = None) -> None:
        """Open the chosen point's strategy and budget on the chosen conversation."""
        from ctxlab.widgets._explorer import Explorer
        from ctxlab.widgets._open import conversations_of, strategy_of

        if self.point.value is None or self.conv.value is None:
            return
        label, budget = self.point.value
        try:
            if self._convs is None:
                self._convs = conversations_of(self.report, self._given)
            conv = self._convs[(self.dataset.value, self.conv.value)]
            strategy = strategy_of(self.report, label)
        except (KeyError, CtxlabError) as exc:
            why = f"conversation not found: {exc}" if isinstance(exc, KeyError) else str(exc)
            self.opened.children = [self.w.HTML(f"<b>{html.escape(why)}</b>")]
            return
        from ctxlab.tokens import get_counter

        counter = get_counter(self.report.meta.get("encoding") or "o200k_base")
        explorer = Explorer(self.w, [conv], [strategy], [budget], counter)
        self.opened.children = [explorer.box]

    def export(self, _button: object = None) -> None:
        """Write the figure, the rows shown and the settings as code to the export folder."""
        from ctxlab.widgets._export import export

        try:
            paths = export(self.report, self.folder.value, dataset=self.dataset.value,
                           budgets=self.budgets.value, x=self.x.value, y=self.y.value)  # fmt: skip
        except (OSError, CtxlabError) as exc:
            self.exported.value = f"<b style='color:#d04a4a'>{html.escape(str(exc))}</b>"
            return
        self.exported.value = "wrote " + html.escape(", ".join(str(p) for p in paths))

    def show_strategy(self, _change: object = None) -> None:
        """List the selected strategy's numbers at each budget, with intervals."""
        name = self.strategy.value
        rows = self.selection().df
        rows = rows[rows["strategy"] == name]
        if rows.empty:
            self.detail.value = f"<i>{html.escape(str(name))} has no rows here</i>"
            return
        columns = [c for c in self.report.metric_columns if rows[c].notna().any()]
        table = self.summary(columns, name)
        shown = _table_html(table, columns, keys=("budget",))
        self.detail.value = f"<b>{html.escape(str(name))}</b> at each budget{shown}"


def _points(report: Report, x: str, y: str) -> int:
    """How many (strategy, budget) points have both `x` and `y`."""
    table = report.summary([x, y], n_boot=0)
    return int(table[[x, y]].notna().all(axis=1).sum())


def _table_html(table: pd.DataFrame, metrics: Sequence[str], keys: Sequence[str] = KEYS) -> str:
    """Summary rows as HTML, each metric written ``estimate [low, high] (n=units)``."""
    shown = table[[*keys, "conversations", "probes"]].copy()
    for m in dict.fromkeys(metrics):
        bounds = zip(table[m], table[f"{m}_lo"], table[f"{m}_hi"], table[f"{m}_n"], strict=True)
        shown[m] = [_interval(e, lo, hi, int(n)) for e, lo, hi, n in bounds]
    text: str = shown.to_html(index=False, escape=True)
    note = (
        f"<div style='font-size:12px;opacity:0.8'>estimate [95% interval] (n = conversations "
        f"resampled); no interval below {MIN_UNITS} conversations</div>"
    )
    return text + note


def _interval(estimate: float, low: float, high: float, n: int) -> str:
    """``estimate [low, high] (n=…)``, or the estimate and why it has no interval."""
    if estimate != estimate:
        return _NO_VALUE
    if low != low:
        return f"{_number(estimate)} (n={n}, too few for an interval)"
    return f"{_number(estimate)} [{_number(low)}, {_number(high)}] (n={n})"


def _number(value: float) -> str:
    size = abs(value)
    return f"{value:,.0f}" if size >= 1000 else f"{value:.1f}" if size >= 10 else f"{value:.3f}"
