"""`compare` and `acompare`: replay conversations under strategies x budgets, measure, report.

Every conversation is replayed at its probe points (the moments a request would be sent)
under every strategy and budget, through the strategies' incremental `replay`; each probe
becomes one row of the `Report`. Work is split per conversation x strategy and merged in a
fixed order, so any `concurrent.futures.Executor` (threads, processes, a Dask client's
``get_executor()``) gives the same report as running in-process.

Scaling out with Dask (``pip install 'ctxlab[dask]'``)::

    from distributed import Client, LocalCluster
    with Client(LocalCluster(n_workers=4)) as client:
        report = compare(convs, strategies, budgets, executor=client.get_executor())
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeAlias

from ctxlab.budget import Budget, as_budget
from ctxlab.errors import UsageError
from ctxlab.lab._questions import applicable_questions, check_questions
from ctxlab.lab._runner import (
    IDENTITY,
    ProbeSpec,
    Task,
    cell_columns,
    probe_points,
    replay_cells,
    run_batch,
)
from ctxlab.lab._specs import conversations_from, run_record, strategy_from
from ctxlab.lab.metrics import Metric, default_metrics, get_metric
from ctxlab.lab.report import Report
from ctxlab.messages import Conversation
from ctxlab.strategies.base import Strategy
from ctxlab.tokens import TokenCounter, get_counter

__all__ = ["Report", "acompare", "compare"]

ConversationsLike: TypeAlias = Conversation | str | os.PathLike[str] | Iterable[Any]
StrategiesLike: TypeAlias = Strategy | str | Iterable[Strategy | str]
BudgetsLike: TypeAlias = Budget | int | Iterable[Budget | int]
MetricsLike: TypeAlias = Iterable[Metric | str] | None

# Tasks are grouped into batches of at least this weight, so tiny conversations do not pay
# one executor round trip each.
_BATCH_WEIGHT = 8000
_CORE_AGGREGATES = {"input_tokens": "mean", "budget_ok": "mean", "tokens_before": "mean"}


@dataclass(frozen=True, kw_only=True)
class _Models:
    model: str | None  # prices the requests
    summarizer_model: str | None  # prices the strategies' own calls; None: `model`


@dataclass(frozen=True, kw_only=True)
class _Plan:
    tasks: tuple[Task, ...]
    metrics: tuple[Metric, ...]
    columns: tuple[str, ...]
    meta: dict[str, Any]


def compare(
    conversations: ConversationsLike,
    strategies: StrategiesLike,
    budgets: BudgetsLike,
    *,
    metrics: MetricsLike = None,
    probes: ProbeSpec = "auto",
    counter: TokenCounter | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    model: str | None = None,
    summarizer_model: str | None = None,
    dump: str | os.PathLike[str] | None = None,
) -> Report:
    """Replay conversations under each strategy and budget and measure every probe.

    Args:
        conversations: a `Conversation`, a bundled dataset name (``"locomo"``), a file or
            folder path, or a list mixing these.
        strategies: strategy objects, registry names (``"token_window"``), or specs
            (``"sliding_window:max_messages=20"``, ``"package.module:object"``).
        budgets: token budgets, as ints or `Budget` objects.
        metrics: metric objects or names (see `ctxlab.lab.metrics.names`); None computes every
            built-in metric, each NaN where it does not apply.
        probes: ``"end"``, ``"sessions"``, ``"assistant_turns"``, ``"auto"`` or explicit
            prefix lengths (see `ctxlab.lab._runner.probe_points`); or ``"questions"``: for
            each LoCoMo question of categories 1-4 whose evidence lies in the conversation,
            one probe that asks it after the whole conversation (the question text appended
            as the newest user message, counted in the budget). Rows then carry
            ``question_index`` and ``category``, and retention metrics measure that question
            only (see `ctxlab.lab._questions`).
        counter: the token counter; default: the encoding of `model`, else ``o200k_base``.
        executor: any `concurrent.futures.Executor`; None runs in this process.
        progress: show a progress bar on stderr.
        model: the model whose prices give ``cost_usd`` (NaN without one).
        summarizer_model: the model whose prices ``cost_usd`` applies to the strategies'
            own LLM calls (``extra_usage``), e.g. a cheaper model that summarizes for a
            larger chat model; default: `model`. Token counts do not change with it.
        dump: a folder to write the pruned context of every probe to, as JSONL.

    Returns:
        A `Report` with one row per (dataset, conversation, strategy, budget, probe), or
        per (dataset, conversation, strategy, budget, question) with question probes.

    Raises:
        UsageError: an unknown strategy, metric, dataset or probe spec, duplicate names,
            ``probes="questions"`` on conversations without question annotations,
            `summarizer_model` without `model`, or an asynchronous metric without a
            synchronous `compute` (use `acompare`).
    """
    models = _models(model, summarizer_model)
    plan = _plan(conversations, strategies, budgets, metrics, probes, counter, models, dump)
    results = _execute(plan.tasks, executor, progress)
    return _report(plan, results)


async def acompare(
    conversations: ConversationsLike,
    strategies: StrategiesLike,
    budgets: BudgetsLike,
    *,
    metrics: MetricsLike = None,
    probes: ProbeSpec = "auto",
    counter: TokenCounter | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    model: str | None = None,
    summarizer_model: str | None = None,
    dump: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
) -> Report:
    """`compare` for metrics that are awaited (``is_async``, e.g. an LLM judge).

    Replays run in threads (the default executor, or `executor` when it is a
    `ThreadPoolExecutor`) so strategies that call an LLM do not block the event loop; up to
    `concurrency` tasks have their async metrics awaited at once. Without async metrics this
    is `compare` run in a thread, with any executor.

    Raises:
        UsageError: as `compare`; also a non-thread executor together with async metrics.
    """
    models = _models(model, summarizer_model)
    plan = _plan(conversations, strategies, budgets, metrics, probes, counter, models, dump)
    if not any(m.is_async for m in plan.metrics):
        results = await asyncio.to_thread(_execute, plan.tasks, executor, progress)
        return _report(plan, results)
    if executor is not None and not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
        raise UsageError(
            "with async metrics, acompare() replays in threads: pass a ThreadPoolExecutor"
        )
    gate = asyncio.Semaphore(max(1, concurrency))
    bar = _bar(len(plan.tasks), progress)
    try:
        done = await asyncio.gather(*(_arun(t, executor, gate, bar) for t in plan.tasks))
    finally:
        bar.close()
    return _report(plan, list(done))


async def _arun(
    task: Task, executor: Executor | None, gate: asyncio.Semaphore, bar: Any
) -> dict[str, list[Any]]:
    async with gate:
        loop = asyncio.get_running_loop()
        cells = await loop.run_in_executor(executor, replay_cells, task)
        awaited: dict[int, list[Any]] = {}
        for i, metric in enumerate(task.metrics):
            if metric.is_async and metric.applies(task.conversation):
                awaited[i] = [await metric.acompute(cell) for cell in cells]  # type: ignore[attr-defined]
        columns = cell_columns(task, cells, awaited)
    bar.update(1)
    return columns


def _plan(
    conversations: ConversationsLike,
    strategies: StrategiesLike,
    budgets: BudgetsLike,
    metrics: MetricsLike,
    probes: ProbeSpec,
    counter: TokenCounter | None,
    models: _Models,
    dump: str | os.PathLike[str] | None,
) -> _Plan:
    convs = conversations_from(conversations)
    strats = _strategies(strategies)
    buds = _budgets(budgets)
    model = models.model
    chosen = _metrics(metrics, models)
    cnt = counter if counter is not None else get_counter(model=model) if model else get_counter()
    for priced in dict.fromkeys(m for m in (model, models.summarizer_model) if m is not None):
        _warn_unknown_price(priced)
    columns = tuple(dict.fromkeys(c for m in chosen for c in m.columns))
    tasks: list[Task] = []
    asking = isinstance(probes, str) and probes == "questions"
    if asking:
        check_questions(convs)
    for conv in convs:
        questions = applicable_questions(conv) if asking else ()
        if asking and not questions:
            continue  # none of its questions has evidence in the conversation
        points = (len(conv.messages),) if asking else probe_points(conv, probes)
        for label, strategy in strats:
            tasks.append(
                Task(
                    index=len(tasks),
                    conversation=conv,
                    dataset=conv.dataset or "custom",
                    strategy=strategy,
                    label=label,
                    budgets=buds,
                    probes=points,
                    metrics=chosen,
                    columns=columns,
                    counter=cnt,
                    dump=None if dump is None else os.fspath(dump),
                    questions=questions,
                )
            )
    aggregates = dict(_CORE_AGGREGATES)
    for m in chosen:
        aggregates.update({c: m.aggregate for c in m.columns if c not in aggregates})
    meta = run_record(convs, [s for _, s in strats], buds, cnt, model, probes, chosen, aggregates)
    meta["summarizer_model"] = models.summarizer_model or model
    return _Plan(tasks=tuple(tasks), metrics=chosen, columns=columns, meta=meta)


def _strategies(value: StrategiesLike) -> list[tuple[str, Strategy]]:
    items = [value] if isinstance(value, (str, Strategy)) else list(value)
    if not items:
        raise UsageError("compare() needs at least one strategy")
    out: dict[str, Strategy] = {}
    for item in items:
        strategy = strategy_from(item)
        label = str(strategy.label)
        if label in out:
            raise UsageError(f"strategy {label!r} is given twice; give each a distinct label")
        out[label] = strategy
    return list(out.items())


def _budgets(value: BudgetsLike) -> tuple[Budget, ...]:
    items = [value] if isinstance(value, (int, Budget)) else list(value)
    if not items:
        raise UsageError("compare() needs at least one budget")
    by_size: dict[int, Budget] = {}
    for item in items:
        budget = as_budget(item)
        if by_size.setdefault(budget.max_tokens, budget) != budget:
            raise UsageError(f"two budgets of {budget.max_tokens} tokens differ in reserve_output")
    return tuple(by_size[k] for k in sorted(by_size))


def _models(model: str | None, summarizer_model: str | None) -> _Models:
    if summarizer_model is not None and model is None:
        raise UsageError(
            "summarizer_model prices the strategies' own calls inside cost_usd, which also "
            "needs model= (the model the requests are sent to)"
        )
    return _Models(model=model, summarizer_model=summarizer_model)


def _metrics(value: MetricsLike, models: _Models) -> tuple[Metric, ...]:
    priced = {"model": models.model, "summarizer_model": models.summarizer_model}
    if value is None:
        return tuple(default_metrics(**priced))
    items = [value] if isinstance(value, str) else list(value)
    chosen = [get_metric(m, **priced) if isinstance(m, str) else m for m in items]
    for m in chosen:
        if not isinstance(m, Metric):
            raise UsageError(f"{m!r} is not a metric (it needs name, columns, applies, compute)")
    return tuple(chosen)


def _warn_unknown_price(model: str) -> None:
    try:
        from ctxlab.providers import pricing
    except ImportError:  # pragma: no cover - pricing ships with ctxlab
        return
    if pricing.lookup(model) is None:
        from ctxlab.usage import Usage

        pricing.cost_usd(Usage(), model)  # warns once: cost_usd will be NaN


def _bar(total: int, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="compare", unit="cell", file=sys.stderr, disable=not progress)


def _batches(tasks: Sequence[Task], workers: int = 1) -> list[list[Task]]:
    """Tasks grouped for the executor, heaviest batch first.

    A conversation's tasks stay in one batch, so one worker computes its facts and the
    strategies' caches once; only a conversation heavier than a worker's share of the
    whole run is split, so that one long conversation still spreads over the workers.
    """
    cap = max(_BATCH_WEIGHT, sum(t.weight for t in tasks) // max(workers, 1))
    by_conversation: dict[int, list[Task]] = {}
    for task in tasks:
        by_conversation.setdefault(id(task.conversation), []).append(task)
    batches: list[list[Task]] = []
    weight = _BATCH_WEIGHT
    for group in by_conversation.values():
        parts = _split(group, cap)
        if len(parts) > 1:  # a heavy conversation: its parts go to different workers
            batches += parts
            weight = _BATCH_WEIGHT
            continue
        if weight >= _BATCH_WEIGHT:
            batches.append([])
            weight = 0
        batches[-1] += group
        weight += sum(t.weight for t in group)
    return sorted(batches, key=lambda b: -sum(t.weight for t in b))


def _split(group: list[Task], cap: int) -> list[list[Task]]:
    """A conversation's tasks in parts of about `cap` weight (one part when lighter)."""
    parts = -(-sum(t.weight for t in group) // cap)
    size = -(-len(group) // parts)
    return [group[i : i + size] for i in range(0, len(group), size)]


def _workers(executor: Executor) -> int:
    """How many workers an executor has (a guess for executors that do not say)."""
    found = getattr(executor, "_max_workers", None)
    return found if isinstance(found, int) and found > 0 else os.cpu_count() or 1


def _execute(
    tasks: Sequence[Task], executor: Executor | None, progress: bool
) -> list[dict[str, list[Any]]]:
    results: dict[int, dict[str, list[Any]]] = {}
    bar = _bar(len(tasks), progress)
    try:
        if executor is None:
            for batch in _batches(tasks):
                results.update(run_batch(batch))
                bar.update(len(batch))
        else:
            batches = _batches(tasks, _workers(executor))
            futures = {executor.submit(run_batch, b): len(b) for b in batches}
            try:
                for future in concurrent.futures.as_completed(futures):
                    results.update(future.result())
                    bar.update(futures[future])
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
    return [results[i] for i in range(len(tasks))]


def _report(plan: _Plan, results: Sequence[dict[str, list[Any]]]) -> Report:
    import pandas as pd

    names = list(results[0]) if results else [*IDENTITY, *plan.columns]
    data = {c: [v for r in results for v in r[c]] for c in names}
    df = pd.DataFrame(data, columns=names)
    return Report.from_rows(df, meta=plan.meta, tables=_metric_tables(plan.metrics))


def _metric_tables(metrics: Sequence[Metric]) -> dict[str, Any]:
    """Tables the metrics collected during the run (metrics with a ``drain_tables()``)."""
    tables: dict[str, Any] = {}
    for metric in metrics:
        drain = getattr(metric, "drain_tables", None)
        if callable(drain):
            tables.update(drain())
    return tables
