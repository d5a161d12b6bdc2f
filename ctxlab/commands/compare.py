"""``ctxlab compare``: the main job. Replay conversations under strategies x budgets, measure.

With no options it runs every bundled dataset under every registered strategy (all run
offline by default) at budgets chosen per dataset so that they bind (see
`ctxlab.commands._budgets`; the choice is printed, and a dataset too small for any budget
is left out with the reason), prints a compact summary table with a legend (see
`ctxlab.commands._table`) and writes ``ctxlab-results/results.csv``, the run record
``results.json`` next to it (ctxlab version, data file hashes, strategies with parameters,
budgets, encoding, seed) and PNG plots. The CSV and the run record always go to two
distinct paths: ``--out r.json`` writes ``r.csv`` and ``r.json``. Output paths are checked
before the run. ``--summarizer-model`` prices the strategies' own LLM calls at another
model's rates than ``--model`` (a cheaper model summarizing for a larger one).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxlab import formats
from ctxlab.errors import UsageError
from ctxlab.tokens import ENCODINGS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ctxlab.lab.report import Report
    from ctxlab.messages import Conversation
    from ctxlab.tokens import TokenCounter

HELP = "Replay conversations under strategies x budgets; write results.csv, a run record, plots."

PROBES = ("auto", "end", "sessions", "assistant_turns", "questions")


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
        help="token budget (repeatable; default: per dataset, 3 budgets between what must "
        "always be sent and its median conversation)",
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
        help="CSV of every probe (default ctxlab-results/results.csv); the run record goes "
        "beside it with the suffix .json",
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
    from ctxlab.commands._budgets import default_budgets
    from ctxlab.commands._table import print_categories, print_table
    from ctxlab.tokens import get_counter

    _check_options(args)
    paths = _paths(args)
    convs = _conversations(args)
    counter = get_counter(args.encoding) if args.encoding else _model_counter(args.model)
    if args.budget:
        plan = [(convs, tuple(args.budget))]
    else:
        chosen = default_budgets(convs, counter)
        for item in chosen:
            print(item.note)
        plan = [([c for c in convs if (c.dataset or "custom") == d.dataset], d.budgets)
                for d in chosen if d.budgets]  # fmt: skip
        if not plan:
            raise UsageError("no dataset is large enough for a default budget; pass --budget N")
    report = _run(plan, args, counter)
    print_table(report, args.seed)
    if args.probes == "questions":
        print_categories(report)
    written = _write(report, args, paths)
    if not args.quiet:
        print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def _check_options(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if any(b <= 0 for b in args.budget or ()):
        raise UsageError("--budget must be a positive number of tokens")
    if args.summarizer_model and not args.model:
        raise UsageError("--summarizer-model needs --model (the model the requests go to)")
    from ctxlab.lab._specs import strategy_from

    for spec in args.strategy or ():
        strategy_from(spec)  # a bad name or parameter fails now, not after loading the data


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(CSV, run record): always two paths, checked writable before anything runs."""
    out: Path = args.out
    csv = out.with_suffix(".csv") if out.suffix.lower() == ".json" else out
    record = csv.with_suffix(".json")
    for path, option in ((csv, "--out"), (record, "--out"), (args.plot, "--plot")):
        if path is not None:
            _check_writable(path, option)
    if args.dump is not None:
        _check_folder(args.dump, "--dump")
    return csv, record


def _check_writable(path: Path, option: str) -> None:
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file path such as {path}/r.csv")
    _check_folder(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option}: cannot write {path} (permission denied); choose another path")


def _check_folder(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option}: cannot create the folder {folder}: {exc.strerror}") from exc
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot write into {folder}: {exc.strerror}") from exc


def _conversations(args: argparse.Namespace) -> list[Conversation]:
    """The conversations of ``--data`` (every bundled dataset without it), read with --format."""
    from ctxlab.lab._specs import conversations_from

    return conversations_from(args.data or _default_data(args.probes), format=args.format)


def _default_data(probes: str) -> list[str]:
    """Every bundled dataset; for question probes, those whose conversations have questions."""
    from ctxlab import datasets

    names = datasets.names()
    return [n for n in names if n == "locomo"] if probes == "questions" else names


def _model_counter(model: str | None) -> TokenCounter:
    from ctxlab.tokens import get_counter

    return get_counter(model=model) if model else get_counter()


def _run(
    plan: Sequence[tuple[list[Conversation], tuple[int, ...]]],
    args: argparse.Namespace,
    counter: TokenCounter,
) -> Report:
    """One `compare` per (conversations, budgets) of the plan, merged into one report."""
    from ctxlab import strategies
    from ctxlab.lab.harness import compare

    interactive = sys.stderr.isatty()
    reports = []
    executor = _executor(args.jobs)
    try:
        for convs, budgets in plan:
            started = time.perf_counter()
            names = sorted({c.dataset or "custom" for c in convs})
            if not args.quiet and not interactive:  # plain lines in logs, no bar redraws
                print(f"compare: {', '.join(names)}: {len(convs)} conversations at budgets "
                      f"{', '.join(map(str, budgets))}", file=sys.stderr, flush=True)  # fmt: skip
            reports.append(compare(
                convs, args.strategy or strategies.default_names(), budgets, metrics=args.metric,
                probes=args.probes, counter=counter, executor=executor,
                progress=interactive and not args.quiet, model=args.model,
                summarizer_model=args.summarizer_model, dump=args.dump,
            ))  # fmt: skip
            if not args.quiet and not interactive:
                took = time.perf_counter() - started
                print(f"compare: {', '.join(names)} done in {took:.1f} s", file=sys.stderr)
    finally:
        if executor is not None:
            executor.shutdown()
    return _merge(reports)


def _merge(reports: Sequence[Report]) -> Report:
    """Reports of several runs as one; the run record lists every run's data and budgets."""
    import pandas as pd

    from ctxlab.lab.report import Report

    if len(reports) == 1:
        return reports[0]
    meta = dict(reports[0].meta)
    meta["data"] = [d for r in reports for d in r.meta.get("data", [])]
    budgets = {
        (b["max_tokens"], b["reserve_output"]): b for r in reports for b in r.meta["budgets"]
    }
    meta["budgets"] = [budgets[k] for k in sorted(budgets)]
    meta["budgets_by_dataset"] = {
        d["dataset"]: [b["max_tokens"] for b in r.meta["budgets"]]
        for r in reports for d in r.meta.get("data", [])
    }  # fmt: skip
    tables: dict[str, Any] = {}
    for r in reports:
        for name, t in r.tables.items():
            tables[name] = pd.concat([tables[name], t]) if name in tables else t
    df = pd.concat([r.df for r in reports], ignore_index=True)
    return Report.from_rows(df, meta=meta, tables=tables)


def _executor(jobs: int) -> Executor | None:
    if jobs == 1:
        return None
    # A fresh server process forks the workers: forking this process, whose tokenizer may
    # run threads, could deadlock.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method))


def _write(report: Report, args: argparse.Namespace, paths: tuple[Path, Path]) -> list[Path]:
    csv, record_path = paths
    report.to_csv(csv)
    record = dict(report.meta, seed=args.seed, options=_options(args))
    record_path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return [csv, record_path, *_plots(report, args.plot or csv.parent / "pareto.png")]


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
        figure.savefig(path, dpi=plots.DPI)
        written.append(path)
    return written
