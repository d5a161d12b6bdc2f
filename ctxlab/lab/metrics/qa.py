"""``qa_f1``: can a model still answer LoCoMo's questions from the pruned context?

At each probe, every LoCoMo question that applies there (the rule of `evidence_recall`: all
its evidence lies before the probe; a question without evidence applies only at the end; one
whose evidence is not in the conversation at all, as in a prefix of it, is never asked) is
put to a model together with the pruned context, rendered as a dated
transcript (summaries included). The answer is scored with LoCoMo's official token F1
(`ctxlab.lab.metrics.qa_score`: its normalisation, Porter stemming, multi-hop partial F1 for
category 1, the text before ``;`` for category 3) and, optionally, graded CORRECT/WRONG by an
LLM judge. Category 5 (adversarial) is left out, unless ``adversarial=True``: then it is asked
as LoCoMo's two-option question ("not mentioned" or the adversarial answer, in an order fixed
per question) and scored with the official abstention check, in its own column.

Columns (NaN where no question applies or the budget was not met): ``qa_f1`` (mean over the
questions asked, category 5 excluded), ``qa_f1_multi_hop``, ``_temporal``, ``_open_domain``,
``_single_hop``, ``qa_questions`` (questions asked), ``qa_adversarial`` (with
``adversarial=True``), ``qa_judge`` and ``qa_judge_invalid`` (with a judge: share graded
CORRECT among valid grades, and the number of replies that were neither word), and
``qa_input_tokens``/``qa_output_tokens``: what the evaluation calls cost. Those are not the
strategy's cost and never enter ``extra_*_tokens`` or ``cost_usd``.

Every answer is kept: `QAAccuracy.answers` (a DataFrame, one row per question and probe), and
``report.tables["qa_answers"]`` of the `Report` that `acompare` returns. Calls run
concurrently (at most `concurrency` at once per event loop, under the provider's own rate
limiter) and go through ctxlab's response cache, so running a notebook again costs nothing.

``await acompare(..., metrics=[QAAccuracy(...)])`` runs the calls as asyncio tasks;
``compare`` runs them from a pool of `concurrency` threads (no ``await`` needed in a
notebook). The answers table is filled when the metric runs in this process (no executor, or
threads); process pools compute the columns but keep the answers in the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ctxlab.errors import UsageError
from ctxlab.lab.metrics.base import NAN, Aggregate, Cell, Probe, Values
from ctxlab.lab.metrics.locomo import CATEGORIES
from ctxlab.lab.metrics.qa_score import score
from ctxlab.messages import Conversation, Message
from ctxlab.providers import Completion, Provider
from ctxlab.summarizers import _llm_calls, _transcript
from ctxlab.summarizers._llm_calls import ProviderLike
from ctxlab.usage import Usage

__all__ = ["JUDGE_PROMPT", "QAAccuracy"]

#: What the judge is told; it must reply with one word, CORRECT or WRONG.
JUDGE_PROMPT = (
    "You grade answers to questions about a conversation. Compare the model's answer with "
    "the gold answer: reply CORRECT if it states the same facts (dates and names may be "
    "written differently, extra detail is fine), WRONG otherwise. Reply with exactly one "
    "word: CORRECT or WRONG."
)
_INSTRUCTIONS = (
    "Based on the conversation above, answer the question in a short phrase. Use the exact "
    "words of the conversation whenever possible."
)
_TEMPORAL_HINT = " Use the dates of the conversation to answer with an approximate date."
_NOT_MENTIONED = "Not mentioned in the conversation"
_SCORED = (1, 2, 3, 4)


@dataclass(frozen=True, kw_only=True)
class _Job:
    probe: Probe
    index: int  # the question's position in the conversation's annotations
    category: int
    question: str
    gold: str | None
    options: tuple[str, str] | None  # category 5: (a), (b)


@dataclass(frozen=True, kw_only=True)
class _Outcome:
    answer: str
    score: float
    judge: float  # 1 CORRECT, 0 WRONG, NaN invalid or no judge
    judge_reply: str
    usage: Usage
    cached: bool


class _Answers:
    """Every answer a `QAAccuracy` gave, for inspection (thread-safe)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.gates: dict[int, asyncio.Semaphore] = {}

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.rows.extend(rows)


@dataclass(frozen=True, kw_only=True, eq=False)
class QAAccuracy:
    """LoCoMo questions answered by a model from each pruned context (module docstring).

    Attributes:
        provider: the answering model: a `Provider` or a `get_provider` spec.
        model: the model to ask (default: the provider's).
        judge: an optional grading model (provider or spec), or None for F1 only.
        judge_model: the judge's model (default: its provider's).
        max_questions: questions per conversation at most, taken in turn from each
            category in their original order (None: all).
        concurrency: calls in flight at once.
        adversarial: also ask category 5, scored by the official abstention check.
        max_answer_tokens: reply length limit for answers.
        temperature: sampling temperature of the answering model.
        cache: reuse replies from ctxlab's response cache.
        progress: show a progress bar of the calls on stderr.
    """

    provider: ProviderLike = field(kw_only=False)
    model: str | None = None
    judge: ProviderLike | None = None
    judge_model: str | None = None
    max_questions: int | None = None
    concurrency: int = 4
    adversarial: bool = False
    max_answer_tokens: int = 32
    temperature: float | None = 0.0
    cache: bool = True
    progress: bool = True
    _answers: _Answers = field(default_factory=_Answers, init=False, repr=False)

    name: ClassVar[str] = "qa_f1"
    aggregate: ClassVar[Aggregate] = "mean"
    is_async: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.max_questions is not None and self.max_questions < 1:
            raise UsageError(f"max_questions must be at least 1, got {self.max_questions}")

    @property
    def columns(self) -> tuple[str, ...]:
        """``qa_f1``, per category, counts, judge and evaluation-cost columns."""
        per = tuple(f"qa_f1_{CATEGORIES[c]}" for c in _SCORED)
        adv = ("qa_adversarial",) if self.adversarial else ()
        judge = ("qa_judge", "qa_judge_invalid") if self.judge is not None else ()
        cost = ("qa_input_tokens", "qa_output_tokens")
        return ("qa_f1", *per, "qa_questions", *adv, *judge, *cost)

    def applies(self, conversation: Conversation) -> bool:
        """Conversations with LoCoMo questions."""
        return bool(conversation.annotations.get("questions"))

    @property
    def answers(self) -> Any:
        """Every answer so far as a DataFrame, one row per (cell, probe, question)."""
        import pandas as pd

        with self._answers.lock:
            return pd.DataFrame(list(self._answers.rows), columns=_ANSWER_COLUMNS)

    def drain_tables(self) -> dict[str, Any]:
        """``{"qa_answers": answers}``, forgetting them (the harness calls it after a run)."""
        table = self.answers
        with self._answers.lock:
            self._answers.rows.clear()
        return {"qa_answers": table}

    def compute(self, cell: Cell) -> Values:
        """The columns at every probe, calling the model from a pool of threads."""
        jobs = self._jobs(cell)
        with contextlib.ExitStack() as stack:
            answerer = stack.enter_context(_llm_calls.opened(self.provider))
            judge = (
                None if self.judge is None else stack.enter_context(_llm_calls.opened(self.judge))
            )
            bar = stack.enter_context(self._bar(cell, len(jobs)))
            pool = stack.enter_context(ThreadPoolExecutor(self.concurrency))

            def run(job: _Job) -> _Outcome:
                outcome = self._ask(job, answerer, judge)
                bar.update(1)
                return outcome

            outcomes = list(pool.map(run, jobs))
        return self._values(cell, jobs, outcomes)

    async def acompute(self, cell: Cell) -> Values:
        """The columns at every probe, with up to `concurrency` calls in flight."""
        jobs = self._jobs(cell)
        gate = self._gate()
        async with contextlib.AsyncExitStack() as stack:
            answerer = await stack.enter_async_context(_llm_calls.opened_async(self.provider))
            judge = None
            if self.judge is not None:
                judge = await stack.enter_async_context(_llm_calls.opened_async(self.judge))
            bar = stack.enter_context(self._bar(cell, len(jobs)))

            async def run(job: _Job) -> _Outcome:
                async with gate:
                    outcome = await self._aask(job, answerer, judge)
                bar.update(1)
                return outcome

            outcomes = await asyncio.gather(*(run(j) for j in jobs))
        return self._values(cell, jobs, list(outcomes))

    # -- questions ---------------------------------------------------------------------------

    def _jobs(self, cell: Cell) -> list[_Job]:
        conv, index = cell.conversation, cell.facts.index
        chosen = _choose(conv, index, self.adversarial, self.max_questions)
        jobs = []
        for probe in cell.probes:
            if probe.pruned is None:
                continue
            for q, last in chosen:
                if (last < probe.k) if last >= 0 else (probe.k == cell.facts.n):
                    jobs.append(_job(probe, q, conv.annotations["questions"][q]))
        return jobs

    def _prompt(self, job: _Job) -> list[Message]:
        assert job.probe.pruned is not None
        conv = job.probe.facts.conversation
        a, b = conv.annotations.get("speaker_a"), conv.annotations.get("speaker_b")
        who = f" between two people, {a} and {b}" if a and b else ""
        head = (
            f"Below is a conversation{who}. It took place over several days; the date of "
            "each part is written at its start.\n\n"
        )
        context = _transcript.render(job.probe.pruned.messages)
        if job.options is not None:
            question = f"{job.question} Select the correct answer: (a) {job.options[0]} (b) "
            question += f"{job.options[1]}."
            ask = f"Based on the conversation above, answer the question.\n\nQuestion: {question}"
        else:
            hint = _TEMPORAL_HINT if job.category == 2 else ""
            ask = f"{_INSTRUCTIONS}\n\nQuestion: {job.question}{hint}"
        text = f"{head}{context}\n\n{ask} Short answer:"
        return [Message(role="user", content=text)]

    def _judge_prompt(self, job: _Job, answer: str) -> list[Message]:
        gold = job.gold if job.options is None else _NOT_MENTIONED
        return [
            Message(role="system", content=JUDGE_PROMPT),
            Message(
                role="user",
                content=f"Question: {job.question}\nGold answer: {gold}\n"
                f"Model answer: {answer}\nGrade:",
            ),
        ]

    # -- calls -------------------------------------------------------------------------------

    def _ask(self, job: _Job, answerer: Provider, judge: Provider | None) -> _Outcome:
        done = _llm_calls.complete(answerer, self._prompt(job), **self._options())
        answer = _answer(job, done.text)
        graded: Completion | None = None
        if judge is not None:
            graded = _llm_calls.complete(judge, self._judge_prompt(job, answer), **self._jopts())
        return _outcome(job, answer, done, graded)

    async def _aask(self, job: _Job, answerer: Provider, judge: Provider | None) -> _Outcome:
        done = await _llm_calls.acomplete(answerer, self._prompt(job), **self._options())
        answer = _answer(job, done.text)
        graded: Completion | None = None
        if judge is not None:
            messages = self._judge_prompt(job, answer)
            graded = await _llm_calls.acomplete(judge, messages, **self._jopts())
        return _outcome(job, answer, done, graded)

    def _options(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "model": self.model,
            "max_tokens": self.max_answer_tokens,
            "temperature": self.temperature,
        }

    def _jopts(self) -> dict[str, Any]:
        return {"cache": self.cache, "model": self.judge_model, "max_tokens": 4, "temperature": 0}

    def _gate(self) -> asyncio.Semaphore:
        """One semaphore per event loop, shared by every cell that loop evaluates."""
        loop = asyncio.get_running_loop()
        with self._answers.lock:
            gate = self._answers.gates.get(id(loop))
            if gate is None:
                gate = self._answers.gates[id(loop)] = asyncio.Semaphore(self.concurrency)
            return gate

    def _bar(self, cell: Cell, total: int) -> Any:
        from tqdm import tqdm

        desc = f"qa {cell.conversation.id} {cell.strategy} @{cell.budget.max_tokens}"
        return tqdm(
            total=total, desc=desc, unit="q", file=sys.stderr, leave=False,
            disable=not self.progress or total == 0,
        )  # fmt: skip

    # -- results -----------------------------------------------------------------------------

    def _values(self, cell: Cell, jobs: Sequence[_Job], outcomes: Sequence[_Outcome]) -> Values:
        by_probe: dict[int, list[tuple[_Job, _Outcome]]] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            by_probe.setdefault(id(job.probe), []).append((job, outcome))
        columns: dict[str, list[float]] = {c: [] for c in self.columns}
        for probe in cell.probes:
            row = _row(by_probe.get(id(probe), []))
            for c in self.columns:
                columns[c].append(row.get(c, NAN))
        self._answers.add([_record(cell, j, o) for j, o in zip(jobs, outcomes, strict=True)])
        return columns

    def __repr__(self) -> str:
        label = _llm_calls.provider_label
        judge = "" if self.judge is None else f", judge={label(self.judge, self.judge_model)!r}"
        return f"QAAccuracy({label(self.provider, self.model)!r}{judge})"


_ANSWER_COLUMNS = (
    "dataset", "conversation_id", "strategy", "budget", "probe", "question_index",
    "category", "question", "gold", "answer", "score", "judge", "judge_reply",
    "input_tokens", "output_tokens", "cached",
)  # fmt: skip


def _choose(
    conv: Conversation, index: Mapping[str, int], adversarial: bool, limit: int | None
) -> list[tuple[int, int]]:
    """(question position, position of its last evidence or -1) of the questions to ask.

    Categories take turns, each in its original order. A question whose evidence is not all
    in this conversation (a prefix of a longer one) is about messages it lacks: never asked.
    """
    queues: dict[int, list[tuple[int, int]]] = {}
    for i, item in enumerate(conv.annotations.get("questions") or ()):
        category = int(item.get("category") or 0)
        usable = item.get("answer") is not None if category in _SCORED else False
        if category == 5 and adversarial:
            usable = item.get("adversarial_answer") is not None
        evidence = list(item.get("evidence") or ())
        if usable and all(e in index for e in evidence):
            last = max((index[e] for e in evidence), default=-1)
            queues.setdefault(category, []).append((i, last))
    order = [queues[c] for c in sorted(queues)]
    chosen: list[tuple[int, int]] = []
    depth = 0
    while any(depth < len(q) for q in order) and (limit is None or len(chosen) < limit):
        for q in order:
            if depth < len(q) and (limit is None or len(chosen) < limit):
                chosen.append(q[depth])
        depth += 1
    return sorted(chosen)


def _job(probe: Probe, q: int, item: Any) -> _Job:
    category = int(item["category"])
    options = None
    if category == 5:
        other = str(item["adversarial_answer"])
        # LoCoMo shuffles the two options; a per-question order keeps runs repeatable.
        flip = zlib.crc32(str(item["question"]).encode()) % 2 == 1
        options = (other, _NOT_MENTIONED) if flip else (_NOT_MENTIONED, other)
    gold = item.get("answer")
    return _Job(
        probe=probe,
        index=q,
        category=category,
        question=str(item["question"]),
        gold=None if gold is None else str(gold),
        options=options,
    )


def _answer(job: _Job, text: str) -> str:
    """The reply as an answer; for two-option questions a bare "a"/"(b)" becomes the option."""
    answer = text.strip()
    if job.options is not None:
        short = answer.lower()
        if len(short) == 1 or (len(short) == 3 and short.startswith("(")):
            return job.options[0] if "a" in short else job.options[1]
    return answer


def _outcome(job: _Job, answer: str, done: Completion, graded: Completion | None) -> _Outcome:
    usage = done.usage + (graded.usage if graded is not None else Usage())
    reply = graded.text.strip() if graded is not None else ""
    return _Outcome(
        answer=answer,
        score=score(job.category, answer, job.gold),
        judge=_grade(reply) if graded is not None else NAN,
        judge_reply=reply,
        usage=usage,
        cached=done.cached,
    )


def _grade(reply: str) -> float:
    """1.0 for CORRECT, 0.0 for WRONG, NaN for anything else (one word, a final period ok)."""
    word = reply.strip().rstrip(".").strip().upper()
    return {"CORRECT": 1.0, "WRONG": 0.0}.get(word, NAN)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else NAN


def _row(pairs: list[tuple[_Job, _Outcome]]) -> dict[str, float]:
    if not pairs:
        return {}
    scored = [(j, o) for j, o in pairs if j.category in _SCORED]
    row = {"qa_f1": _mean([o.score for _, o in scored]), "qa_questions": float(len(pairs))}
    for c in _SCORED:
        row[f"qa_f1_{CATEGORIES[c]}"] = _mean([o.score for j, o in scored if j.category == c])
    row["qa_adversarial"] = _mean([o.score for j, o in pairs if j.category == 5])
    grades = [o.judge for _, o in pairs if o.judge == o.judge]  # NaN != NaN
    row["qa_judge"] = _mean(grades)
    row["qa_judge_invalid"] = float(sum(1 for _, o in pairs if o.judge != o.judge))
    row["qa_input_tokens"] = float(sum(o.usage.total_input_tokens for _, o in pairs))
    row["qa_output_tokens"] = float(sum(o.usage.output_tokens for _, o in pairs))
    return row


def _record(cell: Cell, job: _Job, outcome: _Outcome) -> dict[str, Any]:
    conv = cell.conversation
    return {
        "dataset": conv.dataset or "custom",
        "conversation_id": conv.id,
        "strategy": cell.strategy,
        "budget": cell.budget.max_tokens,
        "probe": job.probe.k,
        "question_index": job.index,
        "category": job.category,
        "question": job.question,
        "gold": job.gold if job.options is None else _NOT_MENTIONED,
        "answer": outcome.answer,
        "score": outcome.score,
        "judge": outcome.judge,
        "judge_reply": outcome.judge_reply,
        "input_tokens": outcome.usage.total_input_tokens,
        "output_tokens": outcome.usage.output_tokens,
        "cached": outcome.cached,
    }
