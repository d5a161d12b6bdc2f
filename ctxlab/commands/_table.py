"""The summary table ``ctxlab compare`` prints, with a legend under it.

Per dataset, one row per (strategy, budget): how often the budget held, tokens per request
and per conversation, what the strategies' own LLM calls spent when they made any, dollars
with ``--model``, compression, prefix stability and the retention metrics that apply. A
row whose strategy sent more than the budget is marked ``!`` (its retention is not
comparable with the others'), and strategies that sent the same at every budget are named
under their dataset's table: the budget never decided what they sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ctxlab.lab.report import Report

__all__ = ["print_categories", "print_table"]

# Retention columns the printed table shows, with their short headers.
_RETENTION = {
    "evidence_recall": "evidence",
    "answer_presence": "answer",
    "key_string_recall": "keys",
    "action_argument_recall": "actions",
    "dropped_content_coverage": "coverage",
}
# Cost columns shown when they say something: (header, format). Extra tokens are what the
# strategies' own LLM calls spent over a whole conversation (mean over conversations).
_COSTS = {
    "extra_input_tokens_total": ("extra in/conv", "{:,.0f}"),
    "extra_output_tokens_total": ("extra out/conv", "{:,.0f}"),
    "cost_usd": ("usd/conv", "{:.4f}"),
}
_EXTRA = frozenset({"extra_input_tokens_total", "extra_output_tokens_total"})
_LEGEND = {
    "ok%": "share of requests that fit the budget. ! = some did not: the strategy sent more "
    "(keep_all never prunes: it is the baseline, its retention is not comparable) or what "
    "must be sent alone was more (those requests have no metrics)",
    "tok/req": "input tokens per request, mean over requests (probes)",
    "tok/conv": "input tokens per conversation: the sum over its requests (the API bill)",
    "extra in/conv": "input tokens of the strategy's own LLM calls (summaries) per conversation",
    "extra out/conv": "output tokens of the strategy's own LLM calls per conversation",
    "usd/conv": "dollars per conversation at the model's prices",
    "compr": "compression: share of the conversation's tokens left out, mean over requests",
    "stable": "prefix stability: share of sent tokens a prompt cache could reuse",
    "evidence": "evidence recall: share of a question's evidence turns sent verbatim (LoCoMo)",
    "answer": "answer presence: share of questions whose gold answer is in the context",
    "keys": "key-string recall: share of paths, identifiers, numbers seen earlier and used "
    "later that are still sent",
    "actions": "action-argument recall: share of the gold actions' arguments still sent "
    "when the action is taken (tau-bench)",
    "coverage": "dropped-content coverage: share of the removed messages' words retold in "
    "summaries or masks",
    "-": "does not apply to this dataset or strategy (or no request fitted the budget)",
}


def print_table(report: Report, seed: int) -> None:
    """Print the summary of `report`, one table per dataset, then the legend."""
    meta = report.meta
    table = report.summary(n_boot=0, seed=seed)
    kind = "estimated" if meta.get("token_counts") == "estimate" else "exact"
    print(f"token counts: {meta.get('encoding')} ({kind})" + _model_note(meta))
    used: set[str] = set()
    for dataset, rows in table.groupby("dataset", sort=False):
        used |= _print_dataset(str(dataset), rows)
    print("\nlegend (means over conversations; requests are the replay's probes):")
    width = max(len(k) for k in _LEGEND)
    for key, text in _LEGEND.items():
        if key in used or key == "-":
            print(f"  {key.ljust(width)}  {text}")


def print_categories(report: Report) -> None:
    """Evidence recall at question probes by LoCoMo category (mean over questions)."""
    cats = {"multi_hop": "multi-hop", "temporal": "temporal", "open_domain": "open-domain",
            "single_hop": "single-hop"}  # fmt: skip
    cols = [f"evidence_recall_{c}" for c in cats]
    table = report.summary(["evidence_recall", *cols], n_boot=0)
    asked = report.df.drop_duplicates(["dataset", "conversation_id", "question_index"])
    counts = asked.groupby("category").size()
    names = dict(zip((1, 2, 3, 4), cats.values(), strict=True))
    sizes = ", ".join(f"{names[c]} {n}" for c, n in counts.items() if c in names)
    print(f"\nevidence recall by question category, mean over questions ({sizes})")
    lines = [["strategy", "budget", "all", *cats.values()]]
    for _, r in table.iterrows():
        lines.append([str(r["strategy"]), str(r["budget"]), _frac(r["evidence_recall"])]
                     + [_frac(r[c]) for c in cols])  # fmt: skip
    _print_rows(lines)


def _print_dataset(dataset: str, rows: Any) -> set[str]:
    costs = {c: h for c, (h, _) in _COSTS.items() if _shown(rows, c)}
    shown = [c for c in _RETENTION if _shown(rows, c)]
    print(f"\n{dataset}: {int(rows['conversations'].max())} conversations")
    head = ["strategy", "budget", "ok%", "tok/req", "tok/conv", *costs.values()]
    lines = [[*head, "compr", "stable", *(_RETENTION[c] for c in shown)]]
    for _, r in rows.iterrows():
        lines.append(
            [str(r["strategy"]), str(r["budget"]), _ok(r.get("budget_ok")),
             _num(r.get("input_tokens")), _num(r.get("cumulative_input_tokens"))]
            + [_fmt(_COSTS[c][1], r[c]) for c in costs]
            + [_frac(r.get("compression")), _frac(r.get("prefix_stability"))]
            + [_frac(r[c]) for c in shown]
        )  # fmt: skip
    _print_rows(lines)
    fixed = _budget_blind(rows)
    if fixed:
        print(
            f"same at every budget: {', '.join(fixed)} (the budget never changed what "
            "they sent: their own parameters, such as a message count, decided it)"
        )
    return set(lines[0])


def _budget_blind(rows: Any) -> list[str]:
    """Strategies that sent the same tokens at every one of two or more budgets."""
    out: list[str] = []
    if not {"input_tokens", "cumulative_input_tokens"} <= set(rows.columns):
        return out  # --metric left them out: nothing to compare
    for strategy, g in rows.groupby("strategy", sort=False):
        sent = g[["input_tokens", "cumulative_input_tokens"]].round(6)
        if len(g) > 1 and sent.notna().all().all() and len(sent.drop_duplicates()) == 1:
            out.append(str(strategy))
    return out


def _shown(rows: Any, column: str) -> bool:
    """Whether a column has something to say: a value, and for extra tokens, not only 0."""
    if column not in rows or not rows[column].notna().any():
        return False
    return column not in _EXTRA or bool(rows[column].fillna(0).ne(0).any())


def _model_note(meta: Any) -> str:
    model, summarizer = meta.get("model"), meta.get("summarizer_model")
    if not model:
        return "; no --model: cost_usd is NaN"
    own = f", the strategies' own calls at {summarizer}'s" if summarizer != model else ""
    return f"; prices of {model}{own}"


def _print_rows(lines: Sequence[Sequence[str]]) -> None:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells))


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ok(value: Any) -> str:
    """The share within budget; ``!`` when some request was over it."""
    if _is_nan(value):
        return "-"
    return f"{100 * value:.0f}%" + ("!" if value < 1 else " ")


def _fmt(spec: str, value: Any) -> str:
    return "-" if _is_nan(value) else spec.format(value)


def _num(value: Any) -> str:
    return "-" if _is_nan(value) else f"{value:,.0f}"


def _frac(value: Any) -> str:
    return "-" if _is_nan(value) else f"{value:.3f}"
