"""The unit of work of `ctxlab.compare`: one conversation under one strategy, every budget.

Everything here runs in worker processes too, so a `Task` holds only picklable values and
`run_batch` is a module-level function. A task replays the conversation at its probes for each
budget (the strategy's incremental `replay`), computes the metrics, and returns plain column
lists; the caller merges tasks by `Task.index`, so the result never depends on which worker
finished first.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.lab._questions import branch_results, category_of, question_message
from ctxlab.lab.metrics.base import Cell, Facts, Metric, Probe, Values, facts_for
from ctxlab.messages import Conversation
from ctxlab.strategies.base import Pruned, Strategy
from ctxlab.tokens import TokenCounter

__all__ = [
    "IDENTITY",
    "QUESTION_COLUMNS",
    "ProbeSpec",
    "Task",
    "cell_columns",
    "probe_points",
    "replay_cells",
    "replay_probes",
    "run_batch",
]

ProbeSpec: TypeAlias = (
    Literal["end", "sessions", "assistant_turns", "auto", "questions"] | Sequence[int]
)
#: Columns that identify a row.
IDENTITY = ("dataset", "conversation_id", "strategy", "budget", "probe")
#: Columns that identify a question probe's row besides `IDENTITY`.
QUESTION_COLUMNS = ("question_index", "category")
# Columns every row gets whatever the metrics: the request size and whether it fits.
_CORE = ("input_tokens", "budget_ok", "tokens_before", "messages_sent", "note")


@dataclass(frozen=True, kw_only=True)
class Task:
    """One conversation x one strategy, replayed at every budget.

    Attributes:
        index: position of the task in the run (results are merged in this order).
        conversation: the conversation.
        dataset: its dataset name in the report.
        strategy: the strategy and `label`, its name in the report.
        budgets: the budgets, in report order.
        probes: the prefix lengths to probe.
        metrics: the metrics to compute (all synchronous here).
        columns: every metric column of the run, so that every task fills the same columns.
        counter: the token counter.
        dump: directory to write the pruned context of every probe to, as JSONL.
        questions: for question probes, the indices of the questions asked (one probe each,
            see `ctxlab.lab._questions`); empty for replay probes.
    """

    index: int
    conversation: Conversation
    dataset: str
    strategy: Strategy
    label: str
    budgets: tuple[Budget, ...]
    probes: tuple[int, ...]
    metrics: tuple[Metric, ...]
    columns: tuple[str, ...]
    counter: TokenCounter
    dump: str | None = None
    questions: tuple[int, ...] = ()

    @property
    def weight(self) -> int:
        """Rough cost, used to group small tasks into batches."""
        probes = len(self.questions) or len(self.probes)
        return (len(self.conversation.messages) + 10 * probes) * len(self.budgets)


def probe_points(conversation: Conversation, spec: ProbeSpec) -> tuple[int, ...]:
    """The prefix lengths k at which `conversation` is probed.

    ``"end"``: the whole conversation. ``"sessions"``: after the last message of each
    session (``meta["session"]``; one session when no message has one). ``"assistant_turns"``:
    just before each assistant message, the moments a real request is sent. ``"auto"``:
    sessions when messages carry sessions, assistant turns for agent runs (tool calls or
    tool outputs), the end otherwise. A sequence of ints is used as given (sorted, 1..n).

    Raises:
        UsageError: unknown spec, or an explicit probe outside 1..n.
    """
    msgs, n = conversation.messages, len(conversation.messages)
    if n == 0:
        raise UsageError(f"conversation {conversation.id!r} has no messages to replay")
    if isinstance(spec, str):
        kind = _auto(conversation) if spec == "auto" else spec
        if kind == "end":
            return (n,)
        if kind == "sessions":
            return _sessions(conversation)
        if kind == "assistant_turns":
            points = tuple(i for i in range(1, n) if msgs[i].role == "assistant")
            return points or (n,)
        raise UsageError(
            f"unknown probes {spec!r}; use end, sessions, assistant_turns, auto or a list of ints"
        )
    points = tuple(sorted({int(k) for k in spec}))
    if not points or points[0] < 1 or points[-1] > n:
        raise UsageError(
            f"probes must be prefix lengths in 1..{n} for conversation {conversation.id!r}, "
            f"got {list(spec)[:10]}"
        )
    return points


def _auto(conversation: Conversation) -> str:
    if any("session" in m.meta for m in conversation.messages):
        return "sessions"
    if any(m.tool_calls or m.is_tool_output for m in conversation.messages):
        return "assistant_turns"
    return "end"


def _sessions(conversation: Conversation) -> tuple[int, ...]:
    points, current = [], None
    for i, m in enumerate(conversation.messages):
        session = m.meta.get("session")
        if session is None:
            continue
        if current is not None and session != current:
            points.append(i)
        current = session
    return (*points, len(conversation.messages))


def replay_cells(task: Task) -> list[Cell]:
    """Replay the task's conversation at each budget: one `Cell` per budget.

    A strategy that cannot run on the conversation (`UsageError`, e.g. an oracle without the
    annotations it reads) gives cells whose probes are all None, with the reason in `note`.
    """
    facts = facts_for(task.conversation, task.counter)
    try:
        return _question_cells(task, facts) if task.questions else _replay_cells(task, facts)
    except UsageError as exc:
        n = len(task.conversation.messages)
        ks = [n] * len(task.questions) if task.questions else list(task.probes)
        qs: list[int | None] = list(task.questions) or [None] * len(ks)
        return [
            Cell(
                facts=facts,
                strategy=task.label,
                budget=budget,
                probes=tuple(
                    Probe(k=k, pruned=None, facts=facts, question=q)
                    for k, q in zip(ks, qs, strict=True)
                ),
                note=str(exc),
            )
            for budget in task.budgets
        ]


def _replay_cells(task: Task, facts: Facts) -> list[Cell]:
    cells = []
    for budget in task.budgets:
        results = replay_probes(task.strategy, task.conversation, task.probes, budget, task.counter)
        probes = tuple(
            Probe(k=k, pruned=r, facts=facts) for k, r in zip(task.probes, results, strict=True)
        )
        cells.append(Cell(facts=facts, strategy=task.label, budget=budget, probes=probes))
    return cells


def _question_cells(task: Task, facts: Facts) -> list[Cell]:
    """One cell per budget whose probes are the questions, asked after the conversation."""
    conv = task.conversation
    asked = [question_message(conv, q) for q in task.questions]
    results = branch_results(task.strategy, conv, asked, task.budgets, task.counter)
    n = len(conv.messages)
    return [
        Cell(
            facts=facts,
            strategy=task.label,
            budget=budget,
            probes=tuple(
                Probe(k=n, pruned=r, facts=facts, question=q, asked=m)
                for q, m, r in zip(task.questions, asked, row, strict=True)
            ),
        )
        for budget, row in zip(task.budgets, results, strict=True)
    ]


def replay_probes(
    strategy: Strategy,
    conversation: Conversation,
    probes: Sequence[int],
    budget: Budget,
    counter: TokenCounter,
) -> list[Pruned | None]:
    """`strategy.replay`, with None at probes whose budget cannot be met.

    A replay stops at `BudgetUnreachableError`; it is resumed at the next probe, which gives
    the same results since a replay equals pruning each prefix.
    """
    out: list[Pruned | None] = []
    while len(out) < len(probes):
        try:
            for pruned in strategy.replay(conversation, probes[len(out) :], budget, counter):
                out.append(pruned)
        except BudgetUnreachableError:
            out.append(None)
    return out


def cell_columns(
    task: Task, cells: Sequence[Cell], precomputed: Mapping[int, Sequence[Values]] | None = None
) -> dict[str, list[Any]]:
    """Report columns for the task's rows (budget-major, probe-minor).

    `precomputed` maps a metric's position in `task.metrics` to its values per cell (what
    `acompare` awaited); the other metrics are computed here.
    """
    conv = task.conversation
    applicable = [i for i, m in enumerate(task.metrics) if m.applies(conv)]
    asked = QUESTION_COLUMNS if task.questions else ()
    cols: dict[str, list[Any]] = {c: [] for c in (*IDENTITY, *asked, *_CORE, *task.columns)}
    # (a metric may fill a core column such as input_tokens: the dict keeps one list)
    for c, cell in enumerate(cells):
        n = len(cell.probes)
        _extend_core(cols, task, cell)
        filled: dict[str, Sequence[float]] = {}
        for i in applicable:
            values = precomputed[i][c] if precomputed and i in precomputed else None
            filled.update(values if values is not None else _compute(task.metrics[i], cell))
        for col in task.columns:
            if col in _CORE:
                continue  # already filled from the probes themselves
            column = filled.get(col, [math.nan] * n)
            if len(column) != n:
                raise UsageError(f"metric column {col!r} gave {len(column)} values for {n} probes")
            cols[col].extend(float(v) for v in column)
        if task.dump:
            _dump(task, cell)
    return cols


def _compute(metric: Metric, cell: Cell) -> Values:
    try:
        return metric.compute(cell)
    except NotImplementedError:
        if metric.is_async:
            raise UsageError(f"metric {metric.name!r} must be awaited: use acompare()") from None
        raise


def _extend_core(cols: dict[str, list[Any]], task: Task, cell: Cell) -> None:
    # Column by column: a sweep over every prefix fills these for thousands of probes.
    probes, n = cell.probes, len(cell.probes)
    results = [p.pruned for p in probes]
    available, nan = cell.budget.available, math.nan
    cols["dataset"] += [task.dataset] * n
    cols["conversation_id"] += [task.conversation.id] * n
    cols["strategy"] += [task.label] * n
    cols["budget"] += [cell.budget.max_tokens] * n
    cols["probe"] += [p.k for p in probes]
    for p in probes:
        if p.question is not None:
            item = task.conversation.annotations["questions"][p.question]
            cols["question_index"].append(p.question)
            cols["category"].append(category_of(item))
    cols["input_tokens"] += [nan if r is None else float(r.tokens) for r in results]
    cols["budget_ok"] += [r is not None and r.tokens <= available for r in results]
    cols["tokens_before"] += [float(p.tokens_before) for p in probes]
    cols["messages_sent"] += [nan if r is None else len(r.messages) for r in results]
    cols["note"] += [cell.note] * n


def run_batch(tasks: Sequence[Task]) -> list[tuple[int, dict[str, list[Any]]]]:
    """Run tasks in order: (task index, columns) for each."""
    with _collector_paused():
        return [(t.index, cell_columns(t, replay_cells(t))) for t in tasks]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch runs, then restore its state.

    A replay keeps a `Pruned` and a `Probe` per probe and budget alive until its columns are
    made, and every collection walks all of them again: a sixth of the time of a sweep over
    every prefix of a 1,000-message run. Reference counting still frees everything that is not
    in a cycle at once; anything cyclic is collected after the batch, as it would have been.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_UNSAFE = re.compile(r"[^\w.=,()-]+")


def _dump(task: Task, cell: Cell) -> None:
    """Append one JSON line per probe: the context that would be sent."""
    from ctxlab.formats.openai_chat import to_openai

    assert task.dump is not None
    folder = Path(task.dump) / _UNSAFE.sub("_", task.dataset) / _UNSAFE.sub("_", task.label)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_UNSAFE.sub('_', task.conversation.id)}.jsonl"
    mode = "w" if cell.budget == task.budgets[0] else "a"
    with path.open(mode, encoding="utf-8") as fh:
        for p in cell.probes:
            record = {
                "conversation_id": task.conversation.id,
                "strategy": task.label,
                "budget": cell.budget.max_tokens,
                "probe": p.k,
                **({} if p.question is None else {"question_index": p.question}),
                "tokens": None if p.pruned is None else p.pruned.tokens,
                "budget_unreachable": p.pruned is None,
                "messages": [] if p.pruned is None else to_openai(p.pruned.messages, extras=True),
            }
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
