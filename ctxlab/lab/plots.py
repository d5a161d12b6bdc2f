"""Matplotlib figures from a `Report` (or a replay): each function returns a `Figure`.

Figures are built without pyplot, so they work under any backend (Agg included), never
touch global state, and display in notebooks as they are; ``fig.savefig("x.png")`` saves.

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

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ctxlab.budget import Budget
    from ctxlab.lab.report import Report
    from ctxlab.messages import Conversation
    from ctxlab.tokens import TokenCounter

__all__ = ["evidence_by_category", "pareto", "retention_by_age", "tokens_per_probe"]

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


def _figure(n: int = 1, width: float = 6.4) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width * n, 4.4), layout="constrained")
    axes = [fig.add_subplot(1, n, i + 1) for i in range(n)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


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
) -> Figure:
    """Cost (`x`) against retention (`y`): one panel per dataset, one line per strategy.

    Each line joins a strategy's budgets (labelled in thousands of tokens); the Pareto
    frontier (lower cost, higher retention) is drawn as a grey band through its points.
    `y` defaults to each dataset's first available retention metric (see `RETENTION`).
    """
    names = list(datasets) if datasets is not None else list(dict.fromkeys(report.df["dataset"]))
    panels: list[tuple[str, str]] = []
    for name in names:
        metric = y or _retention(report, name)
        if metric is not None:
            panels.append((name, metric))
    if not panels:
        raise UsageError("no retention metric to plot; pass y= a column of the report")
    fig, axes = _figure(len(panels))
    for ax, (dataset, metric) in zip(axes, panels, strict=True):
        _pareto_panel(ax, report, dataset, x, metric)
    return fig


def _pareto_panel(ax: Axes, report: Report, dataset: str, x: str, y: str) -> None:
    sub = report.summary([x, y], n_boot=0)
    sub = sub[sub["dataset"] == dataset].dropna(subset=[x, y])
    for strategy, g in sub.groupby("strategy", sort=False):
        g = g.sort_values("budget")
        (line,) = ax.plot(g[x], g[y], marker="o", label=str(strategy))
        for _, row in g.iterrows():
            ax.annotate(
                f"{row['budget'] / 1000:g}k", (row[x], row[y]), textcoords="offset points",
                xytext=(4, 3), fontsize=7, color=line.get_color(),
            )  # fmt: skip
    front = report.pareto(x, y)
    front = front[front["dataset"] == dataset]
    ax.plot(front[x], front[y], color="0.5", linewidth=6, alpha=0.3, zorder=0, label="frontier")
    if len(sub) and sub[x].min() > 0 and sub[x].max() / sub[x].min() > 20:
        ax.set_xscale("log")
    ax.set(xlabel=_label(x), ylabel=_label(y), title=dataset)
    ax.legend(fontsize=7, loc="lower right")


def tokens_per_probe(
    report: Report,
    conversation_id: str | None = None,
    budget: int | None = None,
    *,
    dataset: str | None = None,
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
    fig, (ax,) = _figure()
    for strategy, g in rows.groupby("strategy", sort=False):
        ax.plot(g["probe"], g["input_tokens"], marker=".", label=str(strategy))
    ax.axhline(chosen, color="black", linestyle="--", linewidth=1, label=f"budget {chosen}")
    ax.set(
        xlabel="probe (messages so far)",
        ylabel=_label("input_tokens"),
        title=f"{rows['dataset'].iloc[0]} / {conv}",
    )
    ax.legend(fontsize=7)
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
    report: Report, budget: int | None = None, *, dataset: str = "locomo"
) -> Figure:
    """LoCoMo evidence recall per question category: one bar per strategy, 95% CIs."""
    cols = [f"evidence_recall_{c}" for c in _CATEGORIES]
    df = report.df[report.df["dataset"] == dataset]
    if df.empty or not all(c in df for c in cols) or df[cols].isna().all().all():
        raise UsageError(f"the report has no evidence recall for dataset {dataset!r}")
    budgets = sorted(set(df["budget"]))
    chosen = budget if budget is not None else budgets[len(budgets) // 2]
    sub = report.summary(cols)
    sub = sub[(sub["dataset"] == dataset) & (sub["budget"] == chosen)]
    fig, (ax,) = _figure(width=7.5)
    width = 0.8 / max(1, len(sub))
    base = np.arange(len(cols))
    for i, (_, row) in enumerate(sub.iterrows()):
        means = np.asarray([row[c] for c in cols], dtype=float)
        low = means - np.asarray([row[f"{c}_lo"] for c in cols], dtype=float)
        high = np.asarray([row[f"{c}_hi"] for c in cols], dtype=float) - means
        ax.bar(base + i * width, means, width, yerr=[low, high], capsize=2, label=row["strategy"])
    ax.set_xticks(base + width * (len(sub) - 1) / 2, [c.replace("_", "-") for c in _CATEGORIES])
    ax.set(
        ylim=(0, 1.05),
        ylabel=_label("evidence_recall"),
        title=f"{dataset}: evidence recall by question category at {chosen} tokens",
    )
    ax.legend(fontsize=7, ncols=2)
    return fig
