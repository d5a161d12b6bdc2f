"""Matplotlib figures from a `Report` (or a replay): each function returns a `Figure`.

Figures are built without pyplot, so they work under any backend (Agg included), never
touch global state, and display in notebooks as they are; ``fig.savefig("x.png", dpi=DPI)``
saves them legibly.

A strategy has one colour (and marker) in every panel and every figure of a report
(`strategy_styles`: in the order of the run record, so a panel without a strategy shifts
nothing); panels wrap into a grid of at most two columns, and no text is written next to
points (budgets are marker sizes), so labels cannot overlap.

- `pareto`: cost against retention, one line per strategy across budgets, frontier marked.
- `tokens_per_probe`: tokens sent at each request over one conversation, budget drawn.
- `retention_by_age`: which messages each strategy keeps, by how old they are.
- `evidence_by_category`: LoCoMo evidence recall per question category, with CIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from ctxlab.errors import UsageError
from ctxlab.lab._summary import MIN_UNITS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ctxlab.budget import Budget
    from ctxlab.lab.report import Report
    from ctxlab.messages import Conversation
    from ctxlab.tokens import TokenCounter

__all__ = [
    "DPI",
    "evidence_by_category",
    "pareto",
    "retention_by_age",
    "strategy_styles",
    "tokens_per_probe",
]

#: Resolution to save figures at: panels are sized so that text is legible at it.
DPI = 150

LABELS: dict[str, str] = {
    "input_tokens": "input tokens per request",
    "cumulative_input_tokens": "input tokens per conversation (sum over requests)",
    "extra_input_tokens": "strategy's own LLM input tokens per request",
    "extra_output_tokens": "strategy's own LLM output tokens per request",
    "extra_input_tokens_total": "strategy's own LLM input tokens per conversation",
    "extra_output_tokens_total": "strategy's own LLM output tokens per conversation",
    "cost_usd": "cost per conversation (USD)",
    "cost_usd_cached": "cost per conversation with prompt caching (USD)",
    "compression": "compression (share of tokens removed)",
    "prefix_stability": "prefix stability (share of tokens a cache can reuse)",
    "evidence_recall": "evidence recall (share of evidence turns kept)",
    "answer_presence": "answer presence (share of answers in context)",
    "key_string_recall": "key-string recall (share of needed keys in context)",
    "action_argument_recall": "action-argument recall (share in context)",
    "dropped_content_coverage": "dropped-content coverage (share of removed words retold)",
}
# Retention metric shown for a dataset when none is asked for: the first one it has.
RETENTION = (
    "evidence_recall",
    "action_argument_recall",
    "key_string_recall",
    "answer_presence",
    "dropped_content_coverage",
)
_CATEGORIES = ("multi_hop", "temporal", "open_domain", "single_hop")


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def strategy_styles(report: Report) -> dict[str, dict[str, Any]]:
    """Colour and marker of each strategy, the same in every panel and figure of `report`.

    The order is the run record's strategy list (then any other strategy in the rows), so
    filtering the rows (a dataset, some budgets) keeps every strategy's colour.
    """
    from matplotlib import colormaps

    recorded = [str(s["label"]) for s in report.meta.get("strategies", ()) if "label" in s]
    names = list(dict.fromkeys([*recorded, *map(str, report.df["strategy"])]))
    tab20 = [colormaps["tab20"](i) for i in range(20)]
    palette = [*tab20[0::2], *tab20[1::2]]  # ten strong colours, then their light shades
    return {
        name: {"color": palette[i % len(palette)], "marker": _MARKERS[i % len(_MARKERS)]}
        for i, name in enumerate(names)
    }


def _figure(n: int = 1, width: float = 6.4, height: float = 4.6) -> tuple[Figure, list[Axes]]:
    """A figure of `n` panels, in a grid of at most two columns."""
    cols = min(n, 2)
    rows = -(-n // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def _legend(
    fig: Figure,
    styles: dict[str, dict[str, Any]],
    shown: Sequence[str],
    extra: Sequence[tuple[Any, str]] = (),
    caption: str | None = None,
) -> None:
    """One legend for the whole figure, under the panels: the strategies drawn, then extras.

    A `caption` (what whiskers or bands mean) is the legend's title, so the layout keeps
    room for it.
    """
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="-", **styles[s]) for s in shown]
    labels = [*shown, *(label for _, label in extra)]
    handles += [h for h, _ in extra]
    fits = max(1, int(fig.get_size_inches()[0] / 2.6))  # columns the figure's width holds
    fig.legend(handles, labels, loc="outside lower center", ncols=min(fits, 4, len(labels) or 1),
               fontsize=9, frameon=False, title=caption, title_fontsize=9)  # fmt: skip


def _label(column: str) -> str:
    return LABELS.get(column, column.replace("_", " "))


def _retention(report: Report, dataset: str) -> str | None:
    rows = report.df[report.df["dataset"] == dataset]
    return next((c for c in RETENTION if c in rows and rows[c].notna().any()), None)


def pareto(
    report: Report,
    x: str = "cumulative_input_tokens",
    y: str | None = None,
    *,
    datasets: Sequence[str] | None = None,
    styles: dict[str, dict[str, Any]] | None = None,
) -> Figure:
    """Cost (`x`) against retention (`y`): one panel per dataset, one line per strategy.

    Each line joins a strategy's budgets, its markers growing with the budget; a hollow
    marker is a point where the strategy sent more than the budget at some request. The
    Pareto frontier (lower cost, higher retention: points no other point matches on both
    and beats on one, see `Report.pareto`) is a grey band. `y` defaults to each dataset's
    first available retention metric (see `RETENTION`). `styles` (default
    `strategy_styles` of `report`) lets a filtered report keep the colours of a whole one.
    """
    names = list(datasets) if datasets is not None else list(dict.fromkeys(report.df["dataset"]))
    panels: list[tuple[str, str]] = []
    for name in names:
        metric = y or _retention(report, name)
        if metric is not None:
            panels.append((name, metric))
    if not panels:
        raise UsageError("no retention metric to plot; pass y= a column of the report")
    styles = styles or strategy_styles(report)
    fig, axes = _figure(len(panels))
    drawn: set[str] = set()
    for ax, (dataset, metric) in zip(axes, panels, strict=True):
        drawn |= _pareto_panel(ax, report, dataset, x, metric, styles)
    from matplotlib.lines import Line2D

    extra = [
        (Line2D([], [], color="0.5", linewidth=8, alpha=0.3), "Pareto frontier"),
        (Line2D([], [], linestyle="", marker="o", markerfacecolor="none", color="0.3"),
         "hollow: over budget at some request"),
    ]  # fmt: skip
    _legend(fig, styles, [s for s in styles if s in drawn], extra)
    return fig


def _pareto_panel(
    ax: Axes, report: Report, dataset: str, x: str, y: str, styles: dict[str, dict[str, Any]]
) -> set[str]:
    sub = report.summary([x, y, "budget_ok"], n_boot=0)
    sub = sub[sub["dataset"] == dataset].dropna(subset=[x, y])
    budgets = sorted(set(sub["budget"]))
    size = {b: 20 + 70 * i / max(1, len(budgets) - 1) for i, b in enumerate(budgets)}
    for strategy, g in sub.groupby("strategy", sort=False):
        g = g.sort_values("budget")
        style = styles[str(strategy)]
        ax.plot(g[x], g[y], color=style["color"], linewidth=1.2, zorder=2)
        over = g["budget_ok"] < 1
        for hollow, part in ((False, g[~over]), (True, g[over])):
            ax.scatter(part[x], part[y], s=[size[b] for b in part["budget"]],
                       marker=style["marker"], edgecolors=style["color"], linewidths=1.2,
                       facecolors="none" if hollow else style["color"], zorder=3)  # fmt: skip
    front = report.pareto(x, y)
    front = front[front["dataset"] == dataset]
    ax.plot(front[x], front[y], color="0.5", linewidth=8, alpha=0.3, zorder=1,
            solid_capstyle="round")  # fmt: skip
    if len(sub) and sub[x].min() > 0 and sub[x].max() / sub[x].min() > 20:
        ax.set_xscale("log")
    sizes = " < ".join(f"{b / 1000:g}k" for b in budgets)
    ax.set_title(f"{dataset}\nmarker size = budget: {sizes}", fontsize=10)
    ax.set(xlabel=_label(x), ylabel=_label(y))
    return set(map(str, sub["strategy"]))


def tokens_per_probe(
    report: Report,
    conversation_id: str | None = None,
    budget: int | None = None,
    *,
    dataset: str | None = None,
    styles: dict[str, dict[str, Any]] | None = None,
) -> Figure:
    """Tokens each strategy sends at every probe of one conversation, with the budget drawn.

    Defaults: the report's first conversation (of `dataset`) and its middle budget.
    """
    df = report.df if dataset is None else report.df[report.df["dataset"] == dataset]
    if df.empty:
        raise UsageError(f"the report has no rows for dataset {dataset!r}")
    conv = conversation_id if conversation_id is not None else str(df["conversation_id"].iloc[0])
    budgets = sorted(set(df.loc[df["conversation_id"] == conv, "budget"])) or [0]
    chosen = budget if budget is not None else budgets[len(budgets) // 2]
    rows = df[(df["conversation_id"] == conv) & (df["budget"] == chosen)]
    if rows.empty:
        raise UsageError(f"no rows for conversation {conv!r} at budget {chosen}")
    styles = styles or strategy_styles(report)
    fig, (ax,) = _figure(width=8.0, height=4.8)
    for strategy, g in rows.groupby("strategy", sort=False):
        style = styles[str(strategy)]
        ax.plot(g["probe"], g["input_tokens"], markersize=4, **style)
    ax.axhline(chosen, color="black", linestyle="--", linewidth=1)
    ax.set(
        xlabel="probe (messages so far)",
        ylabel=_label("input_tokens"),
        title=f"{rows['dataset'].iloc[0]} / {conv} at budget {chosen:,}",
    )
    from matplotlib.lines import Line2D

    budget_line = Line2D([], [], color="black", linestyle="--", linewidth=1)
    shown = [s for s in styles if s in set(map(str, rows["strategy"]))]
    _legend(fig, styles, shown, [(budget_line, f"budget {chosen:,}")])
    return fig


def retention_by_age(
    conversation: Conversation,
    strategies: Sequence[Any],
    budget: int | Budget,
    *,
    probes: Any = "auto",
    counter: TokenCounter | None = None,
    bins: int = 20,
) -> Figure:
    """Heatmap of which messages each strategy keeps, by age.

    Rows are strategies, columns message ages (in messages before the request, binned); a
    cell is the share of messages of that age sent verbatim, over the replay's probes.
    """
    from ctxlab.budget import as_budget
    from ctxlab.lab._runner import probe_points, replay_probes
    from ctxlab.lab._specs import strategy_from
    from ctxlab.lab.metrics.base import Probe, facts_for
    from ctxlab.tokens import get_counter

    cnt = counter or get_counter()
    points = probe_points(conversation, probes)
    facts = facts_for(conversation, cnt)
    edges = np.linspace(0, max(points), bins + 1)
    grid, labels = [], []
    for spec in strategies:
        strategy = strategy_from(spec)
        kept, total = np.zeros(bins), np.zeros(bins)
        results = replay_probes(strategy, conversation, points, as_budget(budget), cnt)
        for k, pruned in zip(points, results, strict=True):
            ages = k - 1 - np.arange(k)
            where = np.clip(np.digitize(ages, edges) - 1, 0, bins - 1)
            total += np.bincount(where, minlength=bins)
            if pruned is not None:
                mask = Probe(k=k, pruned=pruned, facts=facts).kept[:k]
                kept += np.bincount(where, weights=mask, minlength=bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            grid.append(kept / total)
        labels.append(strategy.label)
    fig, (ax,) = _figure(width=8.0)
    image = ax.imshow(
        np.asarray(grid), aspect="auto", vmin=0, vmax=1, cmap="viridis",
        extent=(edges[0], edges[-1], len(labels) - 0.5, -0.5), interpolation="nearest",
    )  # fmt: skip
    ax.grid(False)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(
        xlabel="message age (messages before the request)",
        title=f"{conversation.id}: messages kept at {as_budget(budget).max_tokens} tokens",
    )
    fig.colorbar(image, ax=ax, label="share sent verbatim")
    return fig


def evidence_by_category(
    report: Report,
    budget: int | None = None,
    *,
    dataset: str = "locomo",
    styles: dict[str, dict[str, Any]] | None = None,
) -> Figure:
    """LoCoMo evidence recall per question category: one bar per strategy, 95% CIs.

    Whiskers are `Report.summary` intervals (clustered bootstrap over conversations); a
    bar without whiskers had too few conversations for one. The caption says so.
    """
    cols = [f"evidence_recall_{c}" for c in _CATEGORIES]
    df = report.df[report.df["dataset"] == dataset]
    if df.empty or not all(c in df for c in cols) or df[cols].isna().all().all():
        raise UsageError(f"the report has no evidence recall for dataset {dataset!r}")
    budgets = sorted(set(df["budget"]))
    chosen = budget if budget is not None else budgets[len(budgets) // 2]
    sub = report.summary(cols)
    sub = sub[(sub["dataset"] == dataset) & (sub["budget"] == chosen)]
    styles = styles or strategy_styles(report)
    fig, (ax,) = _figure(width=9.0, height=4.8)
    width = 0.8 / max(1, len(sub))
    base = np.arange(len(cols))
    for i, (_, row) in enumerate(sub.iterrows()):
        means = np.asarray([row[c] for c in cols], dtype=float)
        low = means - np.asarray([row[f"{c}_lo"] for c in cols], dtype=float)
        high = np.asarray([row[f"{c}_hi"] for c in cols], dtype=float) - means
        colour = styles[str(row["strategy"])]["color"]
        ax.bar(base + i * width, means, width, yerr=[np.nan_to_num(low), np.nan_to_num(high)],
               capsize=2, color=colour, error_kw={"elinewidth": 0.8})  # fmt: skip
    ax.set_xticks(base + width * (len(sub) - 1) / 2, [c.replace("_", "-") for c in _CATEGORIES])
    ax.set(
        ylim=(0, 1.05),
        ylabel=_label("evidence_recall"),
        title=f"{dataset}: evidence recall by question category at {chosen:,} tokens",
    )
    units = int(sub[[f"{c}_n" for c in cols]].max().max()) if len(sub) else 0
    whiskers = (
        f"whiskers: 95% bootstrap interval resampling the {units} conversations"
        if units >= MIN_UNITS
        else f"no whiskers: {units} conversation(s), too few for an interval (need {MIN_UNITS})"
    )
    shown = [s for s in styles if s in set(map(str, sub["strategy"]))]
    _legend(
        fig, styles, shown, caption=f"bars: mean over probes of the questions' recall; {whiskers}"
    )
    return fig
