"""Export what the comparison widget shows: the figure, the rows behind it, the settings as code.

`settings_code` writes the Python that redraws the same view from the exported CSV, so a
figure in a paper can be regenerated without the widget.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ctxlab.lab.plots import DPI
from ctxlab.lab.report import Report

__all__ = ["export", "settings_code"]


def settings_code(csv_name: str, dataset: str, budgets: Sequence[int], x: str, y: str) -> str:
    """Python that rebuilds the comparison's view from the exported rows."""
    return (
        "from ctxlab import Report\n\n"
        f"report = Report.read_csv({csv_name!r})\n"
        f"rows = report.df[(report.df['dataset'] == {dataset!r})\n"
        f"                 & report.df['budget'].isin({sorted(int(b) for b in budgets)!r})]\n"
        "view = Report(df=rows.reset_index(drop=True))\n"
        f"figure = view.plot('pareto', x={x!r}, y={y!r}, datasets=[{dataset!r}])\n"
        f"table = view.summary([{x!r}, {y!r}])\n"
        f"front = view.pareto({x!r}, {y!r})\n"
    )


def export(
    report: Report,
    folder: str | Path,
    *,
    dataset: str,
    budgets: Sequence[int],
    x: str,
    y: str,
) -> list[Path]:
    """Write ``pareto.png``, ``rows.csv`` and ``settings.py`` for one view into `folder`."""
    from ctxlab.lab.plots import pareto, strategy_styles

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    df = report.df
    rows = Report(df=df[(df["dataset"] == dataset) & df["budget"].isin(list(budgets))],
                  meta=report.meta)  # fmt: skip
    figure = pareto(rows, x=x, y=y, datasets=[dataset], styles=strategy_styles(report))
    paths = [out / "pareto.png", out / "rows.csv", out / "settings.py"]
    figure.savefig(paths[0], dpi=DPI)
    rows.to_csv(paths[1])
    paths[2].write_text(settings_code("rows.csv", dataset, budgets, x, y), encoding="utf-8")
    return paths
