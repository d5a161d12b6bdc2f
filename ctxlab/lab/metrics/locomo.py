"""LoCoMo retention metrics: are the evidence turns, and the answers, still in the context?

LoCoMo conversations carry ``annotations["questions"]``: question, answer, category (1
multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial) and evidence message ids.
A question applies at probe k when all its evidence lies in ``messages[:k]``; a question
without evidence applies only at the end of the conversation. A question naming an evidence
id that the conversation does not hold (in a prefix, `Conversation.prefix`, of a longer
conversation: evidence after the cut) never applies: its evidence is not shrunk to what is
there. (Ids the loader could not resolve at all are kept apart, in ``unresolved_evidence``.)
Category 5 (adversarial: the gold answer is that the conversation does not say) is excluded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ctxlab.lab.metrics._answers import Answers, answers, search_context
from ctxlab.lab.metrics.base import NAN, Cell, Facts, Probe, ProbeMetric, Values
from ctxlab.lab.metrics.text import normalise
from ctxlab.messages import Conversation

__all__ = ["CATEGORIES", "AnswerPresence", "EvidenceRecall"]

#: LoCoMo's category ids and the column suffixes used for them.
CATEGORIES: Mapping[int, str] = {
    1: "multi_hop",
    2: "temporal",
    3: "open_domain",
    4: "single_hop",
    5: "adversarial",
}
_BY_NAME = {v.replace("_", "-"): k for k, v in CATEGORIES.items()} | {
    v: k for k, v in CATEGORIES.items()
}
_ADVERSARIAL = 5
IntArray = npt.NDArray[np.int64]


def _asked(probe: Probe, n: int) -> npt.NDArray[np.bool_]:
    """At a question probe only the question asked applies; elsewhere every question may."""
    if probe.question is None:
        return np.ones(n, dtype=np.bool_)
    mask = np.zeros(n, dtype=np.bool_)
    if 0 <= probe.question < n:
        mask[probe.question] = True
    return mask


def _has_questions(conversation: Conversation) -> bool:
    return bool(conversation.annotations.get("questions"))


def _category(value: Any) -> int:
    if isinstance(value, str) and not value.isdigit():
        return _BY_NAME.get(value.lower(), 0)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, kw_only=True)
class _Questions:
    """Per-conversation question data, arrays indexed by question."""

    category: IntArray
    last: IntArray  # position of the latest evidence turn, -1 when none
    outside: npt.NDArray[np.bool_]  # some evidence id is not in the conversation
    n_evidence: IntArray
    ev_question: IntArray  # flat (question, message) evidence pairs
    ev_message: IntArray
    patterns: tuple[str, ...]  # " normalised answer " ("" when there is none)
    has_answer: npt.NDArray[np.bool_]


def _questions(facts: Facts) -> _Questions:
    cat, last, n_ev, ev_q, ev_m, patterns, outside = [], [], [], [], [], [], []
    for q, item in enumerate(facts.conversation.annotations.get("questions") or ()):
        evidence = item.get("evidence") or ()
        positions = sorted({facts.index[e] for e in evidence if e in facts.index})
        outside.append(any(e not in facts.index for e in evidence))
        cat.append(_category(item.get("category")))
        last.append(positions[-1] if positions else -1)
        n_ev.append(len(positions))
        ev_q += [q] * len(positions)
        ev_m += positions
        answer = item.get("answer")
        norm = normalise(str(answer)) if answer is not None else ""
        patterns.append(f" {norm} " if norm else "")
    arr = np.asarray
    return _Questions(
        category=arr(cat, dtype=np.int64),
        last=arr(last, dtype=np.int64),
        outside=arr(outside, dtype=np.bool_),
        n_evidence=arr(n_ev, dtype=np.int64),
        ev_question=arr(ev_q, dtype=np.int64),
        ev_message=arr(ev_m, dtype=np.int64),
        patterns=tuple(patterns),
        has_answer=arr([bool(p) for p in patterns], dtype=np.bool_),
    )


@dataclass(frozen=True)
class EvidenceRecall(ProbeMetric):
    """``evidence_recall``: share of the applying questions' evidence turns kept verbatim.

    For each applying question (category 5 excluded; all its evidence ids in the
    conversation and at or before the probe):
    |evidence messages sent verbatim| / |evidence messages|; averaged over the questions.
    This mirrors LoCoMo's official ``recall_acc``. Also per category
    (``evidence_recall_multi_hop``, ``_temporal``, ``_open_domain``, ``_single_hop``) and
    ``evidence_questions``, the number of questions averaged. NaN when no question applies.
    """

    name: ClassVar[str] = "evidence_recall"
    _CATS: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)

    @property
    def columns(self) -> tuple[str, ...]:
        """The overall recall, one column per category, and the question count."""
        per = tuple(f"evidence_recall_{CATEGORIES[c]}" for c in self._CATS)
        return ("evidence_recall", *per, "evidence_questions")

    def applies(self, conversation: Conversation) -> bool:
        """Conversations with LoCoMo questions."""
        return _has_questions(conversation)

    def compute(self, cell: Cell) -> Values:
        """Recall at every probe (NaN where none applies or the budget failed)."""
        qs = cell.facts.memo("locomo.questions", _questions)
        known: dict[Any, list[float]] = cell.facts.memo("probe_values", lambda _: {})
        rows = []
        for p in cell.probes:
            if p.pruned is None:
                rows.append(self._at(qs, p))
                continue
            key = (self, p.context_key)  # the same context gives the same recall
            if key not in known:
                known[key] = self._at(qs, p)
            rows.append(known[key])
        return {col: [r[i] for r in rows] for i, col in enumerate(self.columns)}

    def _at(self, qs: _Questions, probe: Probe) -> list[float]:
        applying = (qs.category != _ADVERSARIAL) & ~qs.outside
        applying &= (qs.n_evidence > 0) & (qs.last < probe.k)
        applying &= _asked(probe, len(qs.category))
        if probe.pruned is None or not applying.any():
            return [NAN] * (len(self._CATS) + 2)
        hits = np.bincount(
            qs.ev_question,
            weights=probe.kept[qs.ev_message].astype(np.float64),
            minlength=len(qs.category),
        )
        recall = (hits / np.maximum(qs.n_evidence, 1))[applying]
        category = qs.category[applying]
        sums = np.bincount(category, weights=recall, minlength=len(CATEGORIES) + 1)
        counts = np.bincount(category, minlength=len(CATEGORIES) + 1)
        per = [float(sums[c] / counts[c]) if counts[c] else NAN for c in self._CATS]
        return [float(recall.sum() / len(recall)), *per, float(len(recall))]


@dataclass(frozen=True)
class AnswerPresence(ProbeMetric):
    """``answer_presence``: share of the applying questions whose answer is in the context.

    The gold answer, normalised (lowercase; punctuation and the words a/an/the/and removed;
    whitespace collapsed), must occur as a contiguous word sequence in the normalised
    context text (the `full_text` of the context's messages joined by whitespace), so
    summaries and truncated messages count too. Category 5 and questions without an answer
    are excluded. A question applies under the rule of `EvidenceRecall` (all its evidence at
    or before the probe), one without evidence at the end only, so at the end this share can
    be over more questions than `evidence_recall`'s. ``answer_questions`` is the number of
    questions it is over. NaN (and no count) when no question applies.
    """

    name: ClassVar[str] = "answer_presence"
    by_context: ClassVar[bool] = True

    @property
    def columns(self) -> tuple[str, ...]:
        """The share and the number of questions it is over."""
        return ("answer_presence", "answer_questions")

    def compute(self, cell: Cell) -> Values:
        """The share and the count at every probe, once per distinct context."""
        known: dict[Any, tuple[float, float]] = cell.facts.memo("probe_values", lambda _: {})
        rows = []
        for p in cell.probes:
            if p.pruned is None:
                rows.append((NAN, NAN))
                continue
            key = (self, p.context_key)
            if key not in known:
                known[key] = self._at(cell, p)
            rows.append(known[key])
        return {"answer_presence": [r[0] for r in rows], "answer_questions": [r[1] for r in rows]}

    def applies(self, conversation: Conversation) -> bool:
        """Conversations with LoCoMo questions."""
        return _has_questions(conversation)

    def _at(self, cell: Cell, probe: Probe) -> tuple[float, float]:
        """(share of applying questions whose normalised answer occurs, their number)."""
        facts = cell.facts
        qs = facts.memo("locomo.questions", _questions)
        ans: Answers = facts.memo("locomo.answers", lambda f: answers(f, qs.patterns))
        at_end = probe.k == facts.n
        applying = (qs.category != _ADVERSARIAL) & qs.has_answer & ~qs.outside
        applying &= np.where(qs.n_evidence > 0, qs.last < probe.k, at_end)
        applying &= _asked(probe, len(qs.category))
        if not applying.any():
            return NAN, NAN
        present = np.zeros(len(qs.patterns), dtype=np.bool_)
        present[ans.within_q[probe.kept[ans.within_m]]] = True
        if (applying & ~present).any():
            search_context(ans, facts, probe, applying, present)
        n = np.count_nonzero(applying)
        return np.count_nonzero(present & applying) / n, float(n)
