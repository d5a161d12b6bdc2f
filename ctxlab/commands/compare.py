"""``ctxlab compare``: the main job. Replay conversations under strategies x budgets, measure.

With no options it runs every bundled dataset under every registered strategy (all run
offline by default) at budgets 1000, 2000, 4000, 8000 and 16000 tokens, prints a compact
summary table (per strategy and budget: tokens per request and per conversation, what the
strategies' own LLM calls spent per conversation when they made any, dollars per
conversation with ``--model``, then compression, prefix stability and retention) and
writes ``ctxlab-results/results.csv``, the run record ``results.json`` next to it (ctxlab
version, data file hashes, strategies with parameters, budgets, encoding, seed) and PNG
plots. ``--summarizer-model`` prices the strategies' own LLM calls at another model's rates
than ``--model`` (a cheaper model summarizing for a larger one).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxlab import formats
from ctxlab.errors import UsageError
from ctxlab.tokens import ENCODINGS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HELP = "Replay conversations under strategies x budgets; write results.csv, a run record, plots."

DEFAULT_BUDGETS = (1000, 2000, 4000, 8000, 16000)
PROBES = ("auto", "end", "sessions", "assistant_turns", "questions")
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--data",
        action="append",
        metavar="PATH_OR_DATASET",
        help="a bundled dataset name, a file or a folder (repeatable; default: every dataset)",
    )
    add(
        "--format",
        choices=formats.FORMATS,
        help="file format of --data files (detected when omitted)",
    )
    add(
        "--strategy",
        action="append",
        metavar="NAME[:key=value,...]",
        help="a registered strategy with parameters, or package.module:object (repeatable; "
        "default: every registered strategy)",
    )
    add(
        "--budget",
        action="append",
        type=int,
        metavar="N",
        help="token budget (repeatable; default: 1000 2000 4000 8000 16000)",
    )
    add(
        "--probes",
        choices=PROBES,
        default="auto",
        help="when requests are measured: session ends (LoCoMo), before each assistant "
        "turn (agent runs), the end, auto (default), or questions: each LoCoMo question "
        "asked after the whole conversation (default data: the datasets with questions)",
    )
    add("--metric", action="append", metavar="NAME", help="compute only these metrics")
    add("--jobs", type=int, default=1, metavar="N", help="worker processes (default 1)")
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument("--encoding", choices=ENCODINGS, help="tokenizer (default o200k_base)")
    tok.add_argument(
        "--model",
        help="model: its tokenizer (estimated for non-OpenAI models) and its prices for cost_usd",
    )
    add(
        "--summarizer-model",
        metavar="M",
        help="price the strategies' own LLM calls (extra tokens) at this model's rates in "
        "cost_usd (default: --model)",
    )
    add(
        "--out",
        type=Path,
        default=Path("ctxlab-results/results.csv"),
        help="CSV of every probe (default ctxlab-results/results.csv)",
    )
    add(
        "--plot",
        type=Path,
        help="Pareto plot path (default: pareto.png beside --out); the "
        "other plots go to the same folder",
    )
    add("--dump", type=Path, metavar="DIR", help="write the pruned context of every probe as JSONL")
    add("--seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)")
    add("--quiet", action="store_true", help="no progress bars or file list")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ctxlab import strategies
    from ctxlab.lab.harness import compare
    from ctxlab.tokens import get_counter

    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if any(b <= 0 for b in args.budget or ()):
        raise UsageError("--budget must be a positive number of tokens")
    if args.summarizer_model and not args.model:
        raise UsageError("--summarizer-model needs --model (the model the requests go to)")
    counter = get_counter(args.encoding) if args.encoding else None
    executor = _executor(args.jobs)
    try:
        report = compare(
            args.data or _default_data(args.probes),
            args.strategy or strategies.default_names(),
            args.budget or DEFAULT_BUDGETS,
            metrics=args.metric,
            probes=args.probes,
            counter=counter,
            executor=executor,
            progress=not args.quiet,
            model=args.model,
            summarizer_model=args.summarizer_model,
            dump=args.dump,
        )
    finally:
        if executor is not None:
            executor.shutdown()
    _print_table(report, args.seed)
    if args.probes == "questions":
        _print_categories(report)
    written = _write(report, args)
    if not args.quiet:
        print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def _default_data(probes: str) -> list[str]:
    """Every bundled dataset; for question probes, those whose conversations have questions."""
    from ctxlab import datasets

    names = datasets.names()
    return [n for n in names if n == "locomo"] if probes == "questions" else names


def _print_categories(report: Any) -> None:
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


def _executor(jobs: int) -> Executor | None:
    if jobs == 1:
        return None
    # A fresh server process forks the workers: forking this process, whose tokenizer may
    # run threads, could deadlock.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method))


def _write(report: Any, args: argparse.Namespace) -> list[Path]:
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    report.to_csv(out)
    record = dict(report.meta, seed=args.seed, options=_options(args))
    record_path = out.with_suffix(".json")
    record_path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return [out, record_path, *_plots(report, args.plot or out.parent / "pareto.png")]


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k[0] != "_"}


def _plots(report: Any, pareto_path: Path) -> list[Path]:
    from ctxlab.lab import plots

    folder = pareto_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    figures: dict[Path, Callable[[], Figure]] = {pareto_path: lambda: plots.pareto(report)}
    figures[folder / "tokens.png"] = lambda: plots.tokens_per_probe(report)
    if "locomo" in set(report.df["dataset"]):
        figures[folder / "evidence_by_category.png"] = lambda: plots.evidence_by_category(report)
    written = []
    for path, make in figures.items():
        try:
            figure = make()
        except UsageError:
            continue  # nothing to draw for these results (e.g. no retention metric)
        figure.savefig(path, dpi=120)
        written.append(path)
    return written


def _print_table(report: Any, seed: int) -> None:
    from ctxlab.lab.harness import Report

    assert isinstance(report, Report)
    meta = report.meta
    table = report.summary(n_boot=0, seed=seed)
    kind = "estimated" if meta.get("token_counts") == "estimate" else "exact"
    print(f"token counts: {meta.get('encoding')} ({kind})" + _model_note(meta))
    for dataset, rows in table.groupby("dataset", sort=False):
        costs = {c: h for c, (h, _) in _COSTS.items() if _shown(rows, c)}
        shown = [c for c in _RETENTION if _shown(rows, c)]
        print(f"\n{dataset}: {int(rows['conversations'].max())} conversations")
        head = ["strategy", "budget", "ok%", "tok/req", "tok/conv", *costs.values()]
        lines = [[*head, "compr", "stable", *(_RETENTION[c] for c in shown)]]
        for _, r in rows.iterrows():
            lines.append(
                [str(r["strategy"]), str(r["budget"]), _pct(r["budget_ok"]),
                 _num(r["input_tokens"]), _num(r["cumulative_input_tokens"])]
                + [_fmt(_COSTS[c][1], r[c]) for c in costs]
                + [_frac(r.get("compression")), _frac(r.get("prefix_stability"))]
                + [_frac(r[c]) for c in shown]
            )  # fmt: skip
        _print_rows(lines)


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


def _pct(value: Any) -> str:
    return "-" if _is_nan(value) else f"{100 * value:.0f}%"


def _fmt(spec: str, value: Any) -> str:
    return "-" if _is_nan(value) else spec.format(value)


def _num(value: Any) -> str:
    return "-" if _is_nan(value) else f"{value:,.0f}"


def _frac(value: Any) -> str:
    return "-" if _is_nan(value) else f"{value:.3f}"
