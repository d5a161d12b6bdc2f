"""`Report`: the tidy result of `compare`, its summaries, paired differences and Pareto front.

`Report.df` has one row per (dataset, conversation_id, strategy, budget, probe) with the
columns of `COLUMNS` first (then extras such as ``cost_usd_cached``, per-category evidence
recall, ``tokens_before``, ``messages_sent``). Confidence intervals are bootstrap percentile
intervals that resample whole conversations (probes of one conversation are not
independent), seeded so the same report always gives the same intervals, and left out
(NaN) where fewer than `MIN_UNITS` conversations hold a value.
"""

from __future__ import annotations

import html
import importlib.util
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.lab._summary import MIN_UNITS, Groups, Kind, Streams, cluster_bootstrap, intervals

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["COLUMNS", "KEYS", "MIN_UNITS", "Report"]

#: The columns every report starts with, in this order.
COLUMNS: tuple[str, ...] = (
    "dataset",
    "conversation_id",
    "strategy",
    "budget",
    "probe",
    "input_tokens",
    "budget_ok",
    "cumulative_input_tokens",
    "extra_input_tokens",
    "extra_output_tokens",
    "cost_usd",
    "compression",
    "prefix_stability",
    "evidence_recall",
    "answer_presence",
    "key_string_recall",
    "action_argument_recall",
    "dropped_content_coverage",
)
#: The summary's group keys.
KEYS: tuple[str, ...] = ("dataset", "strategy", "budget")
_IDENTITY = ("dataset", "conversation_id", "strategy", "budget", "probe")
# Columns that label a row rather than measure it: the question of a question probe, and
# why a strategy could not run on a conversation.
_LABELS = ("question_index", "category", "note")
# The summary columns a notebook shows (means only; CIs are in `summary()`).
_HTML_COLUMNS = (
    "budget_ok",
    "input_tokens",
    "cumulative_input_tokens",
    "cost_usd",
    "compression",
    "prefix_stability",
    "evidence_recall",
    "answer_presence",
    "key_string_recall",
    "action_argument_recall",
    "dropped_content_coverage",
)
# Running totals: summarised by each conversation's value at its last probe.
_LAST = frozenset({"cumulative_input_tokens", "cost_usd", "cost_usd_cached", "prefix_stability"})
# Additive per-probe quantities: summarised by each conversation's sum over its probes too.
_TOTAL = frozenset(
    {"extra_input_tokens", "extra_output_tokens", "cached_input_tokens", "cache_write_tokens"}
)
_CELL = ("dataset", "conversation_id", "strategy", "budget")


@dataclass(frozen=True, kw_only=True, eq=False)
class Report:
    """The rows of a comparison and what produced them.

    Attributes:
        df: the tidy table (see the module docstring); treat it as read-only.
        meta: the run record: ctxlab version, data files and hashes, strategies with their
            parameters, budgets, probes, encoding, model, metrics, seed.
        tables: extra tables that metrics hand back by name, e.g. ``qa_answers`` (every
            answer `ctxlab.lab.metrics.qa.QAAccuracy` got, for inspection).
    """

    df: pd.DataFrame
    meta: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls,
        df: pd.DataFrame,
        *,
        meta: Mapping[str, Any] | None = None,
        tables: Mapping[str, pd.DataFrame] | None = None,
    ) -> Report:
        """A report from rows: standard columns first, typed; missing ones filled with NaN."""
        df = df.copy()
        for col in COLUMNS:
            if col not in df:
                df[col] = np.nan
        extras = [c for c in df.columns if c not in COLUMNS]
        df = df[[*COLUMNS, *extras]]
        df = df.astype({"budget": "int64", "probe": "int64", "budget_ok": "bool"})
        df = df.astype({"dataset": "object", "conversation_id": "object", "strategy": "object"})
        for col in df.columns:
            if col in ("question_index", "category"):
                df[col] = df[col].astype("int64")
            elif col == "note":
                df[col] = df[col].fillna("").astype("object")
            elif col not in (*_IDENTITY, "budget_ok"):
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        return cls(df=df.reset_index(drop=True), meta=dict(meta or {}), tables=dict(tables or {}))

    @classmethod
    def read_csv(cls, path: str | Path) -> Report:
        """A report from a CSV written by `to_csv` (the run record is not in the CSV)."""
        df = pd.read_csv(path, dtype={"dataset": str, "conversation_id": str, "strategy": str})
        return cls.from_rows(df)

    def aggregate(self, column: str) -> Kind:
        """How the summary aggregates `column`: ``mean``, ``last`` or ``total``.

        ``mean`` over probes; ``last``: each conversation's value at its last probe (running
        totals); ``total``: each conversation's sum over its probes (additive per-probe
        quantities), averaged over conversations. Declared by the metrics (the run record's
        ``aggregates``); for a report read from CSV, ctxlab's own columns are known.
        """
        declared = self.meta.get("aggregates", {}).get(column)
        if declared in ("mean", "last", "total"):
            kind: Kind = declared
            return kind
        return "last" if column in _LAST else "total" if column in _TOTAL else "mean"

    @property
    def metric_columns(self) -> list[str]:
        """Numeric columns that hold a value somewhere (budget_ok included, as a share)."""
        return [
            c
            for c in self.df.columns
            if c not in (*_IDENTITY, *_LABELS) and self.df[c].notna().any()
        ]

    def summary(
        self,
        metrics: Sequence[str] | None = None,
        *,
        confidence: float = 0.95,
        n_boot: int = 1000,
        seed: int = 0,
        min_units: int = MIN_UNITS,
    ) -> pd.DataFrame:
        """Per (dataset, strategy, budget): each metric's estimate, its units and bootstrap CI.

        How a column is aggregated (see `aggregate`):

        - per-probe metrics (``input_tokens`` per request, retention, compression) are
          averaged over probes (pooled: Σ values / Σ probes over the group's conversations);
        - running totals (``cumulative_input_tokens``, ``cost_usd``, ``prefix_stability``)
          are taken at each conversation's last probe and averaged over conversations;
        - additive per-probe quantities (``extra_input_tokens``, ``extra_output_tokens``:
          what the strategy's own LLM calls spent at each probe) give two columns: ``<metric>``,
          the mean per probe, and ``<metric>_total``, each conversation's sum over its probes
          averaged over conversations (the spend of a whole conversation).

        ``<column>_total`` may also be asked for by name, for any column.

        How the intervals are made: the independent units are conversations. Probes (and
        the questions asked at them) of one conversation share its speakers and history,
        so treating them as independent would make intervals far too narrow. Each of
        `n_boot` replicates draws the group's conversations with replacement (a clustered,
        percentile bootstrap) and recomputes the pooled estimate; the interval is the
        central `confidence` share of the replicates. ``<metric>_n`` is the number of
        conversations that hold a value of the metric. With fewer than `min_units` of them
        the interval is NaN: two conversations have only three distinct resamples, whose
        spread is the gap between the two conversations, not a 95% interval. Draws are
        seeded per group, so the same report gives the same intervals; ``n_boot=0`` skips
        them.

        Returns:
            The keys, ``conversations``, ``probes``, then ``<metric>``, ``<metric>_lo``,
            ``<metric>_hi``, ``<metric>_n`` for each metric (and its ``_total`` columns).
        """
        cols = list(metrics) if metrics is not None else self.metric_columns
        wanted = self._outputs(cols)
        groups = Groups(self.df, KEYS)
        table: dict[str, Any] = {k: [key[i] for key in groups.keys] for i, k in enumerate(KEYS)}
        table.update(conversations=groups.conversations, probes=groups.probes)
        rngs = [Streams(seed, key) for key in groups.keys]
        for name, source, kind in wanted:
            values = self.df[source].to_numpy(np.float64, na_value=np.nan)
            group, sums, counts = groups.units(values, kind)
            lo, hi, n = intervals(group, sums, counts, rngs, kind, n_boot, confidence, min_units)
            table.update({name: groups.estimates(group, sums, counts), f"{name}_lo": lo,
                          f"{name}_hi": hi, f"{name}_n": n})  # fmt: skip
        out: pd.DataFrame = pd.DataFrame(table)
        return out

    def _outputs(self, cols: Sequence[str]) -> list[tuple[str, str, Kind]]:
        """(summary column, report column, aggregation) for each asked column."""
        out: list[tuple[str, str, Kind]] = []
        for col in cols:
            base = col.removesuffix("_total")
            if col not in self.df.columns and col != base and base in self.df.columns:
                self._require([base])
                out.append((col, base, "total"))
                continue
            self._require([col])
            if self.aggregate(col) == "total":
                out += [(col, col, "mean"), (f"{col}_total", col, "total")]
            else:
                out.append((col, col, self.aggregate(col)))
        return list(dict.fromkeys(out))

    def paired(
        self,
        a: Any,
        b: Any,
        metric: str,
        *,
        confidence: float = 0.95,
        n_boot: int = 1000,
        seed: int = 0,
        min_units: int = MIN_UNITS,
    ) -> pd.DataFrame:
        """Strategy `a` minus strategy `b` on `metric`, over the same probes, per budget.

        Only probes where both have a value are paired: every probe for per-probe metrics,
        each conversation's last probe for running totals, each conversation's sum over its
        probes for ``<column>_total`` (see `summary`). The CI is a paired, clustered
        bootstrap: each replicate draws conversations with replacement and takes both
        strategies' values from the same drawn conversations, so what the two share (a
        hard conversation) cancels out. ``conversations`` is the number of units resampled;
        with fewer than `min_units` the interval is NaN (see `summary`).
        Columns: dataset, budget, metric, a, b, pairs, conversations, mean_a, mean_b, diff,
        diff_lo, diff_hi.
        """
        la, lb = _label(a), _label(b)
        _, source, kind = self._outputs([metric])[0]
        for label in (la, lb):
            if label not in set(self.df["strategy"]):
                known = ", ".join(dict.fromkeys(self.df["strategy"]))
                raise UsageError(f"strategy {label!r} is not in this report; it has: {known}")
        df = _per_conversation(self.df, source, kind).rename(columns={source: metric})
        on = ["dataset", "conversation_id", "budget", "probe"]
        if "question_index" in df.columns:
            on.append("question_index")
        left = df.loc[df["strategy"] == la, [*on, metric]]
        right = df.loc[df["strategy"] == lb, [*on, metric]]
        pairs = left.merge(right, on=on, suffixes=("_a", "_b")).dropna()
        rows = []
        for (dataset, budget), g in pairs.groupby(["dataset", "budget"], sort=False):
            diff = (g[f"{metric}_a"] - g[f"{metric}_b"]).to_numpy()
            units = g["conversation_id"].to_numpy()
            rng = np.random.default_rng([seed, zlib.crc32(repr((dataset, budget)).encode())])
            est, lo, hi, _ = cluster_bootstrap(diff, units, rng, n_boot, confidence, min_units)
            rows.append(
                {"dataset": dataset, "budget": budget, "metric": metric, "a": la, "b": lb,
                 "pairs": len(g), "conversations": g["conversation_id"].nunique(),
                 "mean_a": g[f"{metric}_a"].mean(), "mean_b": g[f"{metric}_b"].mean(),
                 "diff": est, "diff_lo": lo, "diff_hi": hi}
            )  # fmt: skip
        table: pd.DataFrame = pd.DataFrame(rows)
        return table

    def pareto(
        self, x: str = "cumulative_input_tokens", y: str = "evidence_recall"
    ) -> pd.DataFrame:
        """The non-dominated (strategy, budget) points per dataset: lower `x`, higher `y`.

        A point is dominated when another has x no higher and y no lower, one of them
        strictly. Columns: dataset, strategy, budget, `x`, `y`; sorted by dataset then x.
        """
        points = self.summary([x, y], n_boot=0)[[*KEYS, x, y]].dropna()
        keep = []
        for _, g in points.groupby("dataset", sort=False):
            xs, ys = g[x].to_numpy(), g[y].to_numpy()
            for i in range(len(g)):
                better = (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
                if not better.any():
                    keep.append(g.index[i])
        out = points.loc[keep].sort_values(["dataset", x, y], ascending=[True, True, False])
        front: pd.DataFrame = out.reset_index(drop=True)
        return front

    def plot(self, kind: str = "pareto", **kwargs: Any) -> Figure:
        """A figure from `ctxlab.lab.plots`: ``pareto``, ``tokens`` or ``evidence``."""
        import ctxlab.lab.plots as plots

        makers: dict[str, Callable[..., Figure]] = {
            "pareto": plots.pareto,
            "tokens": plots.tokens_per_probe,
            "evidence": plots.evidence_by_category,
        }
        if kind not in makers:
            raise UsageError(f"unknown plot {kind!r}; choose one of {', '.join(makers)}")
        figure: Figure = makers[kind](self, **kwargs)
        return figure

    def to_csv(self, path: str | Path | None = None) -> str | None:
        """Write the rows as CSV to `path`, or return the CSV text when no path is given."""
        return self.df.to_csv(path, index=False)

    def to_parquet(self, path: str | Path) -> None:
        """Write the rows as Parquet (needs pyarrow: ``pip install 'ctxlab[parquet]'``).

        Raises:
            MissingDependencyError: pyarrow is not installed.
        """
        if importlib.util.find_spec("pyarrow") is None:
            raise MissingDependencyError("pyarrow", "parquet", "Report.to_parquet")
        self.df.to_parquet(path, index=False)

    def _require(self, cols: Sequence[str]) -> None:
        missing = [c for c in cols if c not in self.df.columns or c in _IDENTITY]
        if missing:
            known = ", ".join(c for c in self.df.columns if c not in _IDENTITY)
            raise UsageError(f"unknown metric column(s) {', '.join(missing)}; known: {known}")

    def __repr__(self) -> str:
        df = self.df
        return (
            f"Report({len(df)} rows: {df['conversation_id'].nunique()} conversations x "
            f"{df['strategy'].nunique()} strategies x {df['budget'].nunique()} budgets)"
        )

    def _repr_html_(self) -> str:
        df = self.df
        shown = [c for c in _HTML_COLUMNS if c in self.metric_columns]
        table = self.summary(shown, n_boot=200)[[*KEYS, "conversations", "probes", *shown]]
        head = html.escape(repr(self))
        body = table.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="–")
        datasets = html.escape(", ".join(dict.fromkeys(df["dataset"])))
        return (
            "<div class='tex2jax_ignore mathjax_ignore'>"
            f"<p><b>{head}</b><br>datasets: {datasets}</p>{body}</div>"
        )


def _label(strategy: Any) -> str:
    return strategy if isinstance(strategy, str) else str(strategy.label)


def _last_probes(df: pd.DataFrame) -> pd.DataFrame:
    """Each (dataset, conversation, strategy, budget)'s row at its last probe."""
    ordered = df.sort_values("probe", kind="stable")
    last: pd.DataFrame = ordered.drop_duplicates(list(_CELL), keep="last")
    return last


def _per_conversation(df: pd.DataFrame, column: str, kind: Kind) -> pd.DataFrame:
    """The rows `paired` compares: every probe, last probes, or last probes holding totals."""
    if kind == "mean":
        return df
    last = _last_probes(df)
    if kind == "last":
        return last
    grouped = df.groupby(list(_CELL), sort=False)[column]
    totals = grouped.sum().where(grouped.count() == grouped.size())  # NaN if a probe is
    out: pd.DataFrame = last.drop(columns=[column]).merge(
        totals.reset_index(), on=list(_CELL), how="left"
    )
    return out
