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

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from ctxlab.messages import Conversation, Message
from ctxlab.metrics.base import NAN, Cell, Facts, Probe, ProbeMetric, Values
from ctxlab.metrics.text import full_text, normalise

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


def _has_questions(conversation: Conversation) -> bool:
    return bool(conversation.annotations.get("questions"))


def _category(value: Any) -> int:
    if isinstance(value, str) and not value.isdigit():
        return _BY_NAME.get(value.lower(), 0)
    try:
        return int(value)
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
        rows = [self._at(qs, p) for p in cell.probes]
        return {col: [r[i] for r in rows] for i, col in enumerate(self.columns)}

    def _at(self, qs: _Questions, probe: Probe) -> list[float]:
        applying = (qs.category != _ADVERSARIAL) & ~qs.outside
        applying &= (qs.n_evidence > 0) & (qs.last < probe.k)
        if probe.pruned is None or not applying.any():
            return [NAN] * (len(self._CATS) + 2)
        hits = np.bincount(
            qs.ev_question,
            weights=probe.kept[qs.ev_message].astype(np.float64),
            minlength=len(qs.category),
        )
        recall = hits / np.maximum(qs.n_evidence, 1)
        out = [float(recall[applying].mean())]
        for c in self._CATS:
            mask = applying & (qs.category == c)
            out.append(float(recall[mask].mean()) if mask.any() else NAN)
        out.append(float(applying.sum()))
        return out


@dataclass(frozen=True, kw_only=True)
class _Answers:
    """Where each answer occurs in the whole conversation's normalised text."""

    words: tuple[tuple[str, ...], ...]  # normalised words of each message
    has_words: npt.NDArray[np.bool_]
    next_nonempty: IntArray  # next message with words, n when none
    within_q: IntArray  # (question, message): the answer lies inside that message
    within_m: IntArray
    spans: tuple[tuple[int, tuple[int, ...]], ...]  # (question, messages it straddles)
    multiword: tuple[bool, ...]


def _answers(facts: Facts) -> _Answers:
    qs = facts.memo("locomo.questions", _questions)
    words = tuple(tuple(normalise(full_text(m)).split()) for m in facts.conversation.messages)
    nonempty = [i for i, w in enumerate(words) if w]
    texts = [" ".join(words[i]) for i in nonempty]
    starts = list(np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])) if texts else []
    hay = " " + " ".join(texts) + " "
    within_q: list[int] = []
    within_m: list[int] = []
    spans: list[tuple[int, tuple[int, ...]]] = []
    for q, pattern in enumerate(qs.patterns):
        pos = hay.find(pattern) if pattern else -1
        while pos >= 0:
            first = bisect.bisect_right(starts, pos) - 1
            last = bisect.bisect_right(starts, pos + len(pattern) - 3) - 1
            if first == last:
                within_q.append(q)
                within_m.append(nonempty[first])
            else:
                spans.append((q, tuple(nonempty[first : last + 1])))
            pos = hay.find(pattern, pos + 1)
    nxt = np.full(len(words) + 1, len(words), dtype=np.int64)
    for i in range(len(words) - 1, -1, -1):
        nxt[i] = i + 1 if i + 1 < len(words) and words[i + 1] else nxt[i + 1]
    return _Answers(
        words=words,
        has_words=np.asarray([bool(w) for w in words], dtype=np.bool_),
        next_nonempty=nxt[: len(words)],
        within_q=np.asarray(within_q, dtype=np.int64),
        within_m=np.asarray(within_m, dtype=np.int64),
        spans=tuple(spans),
        multiword=tuple(p.count(" ") > 2 for p in qs.patterns),
    )


@dataclass(frozen=True)
class AnswerPresence(ProbeMetric):
    """``answer_presence``: share of the applying questions whose answer is in the context.

    The gold answer, normalised (lowercase; punctuation and the words a/an/the/and removed;
    whitespace collapsed), must occur as a contiguous word sequence in the normalised
    context text (the `full_text` of the context's messages joined by whitespace), so
    summaries and truncated messages count too. Category 5 and questions without an answer
    are excluded. A question applies under the rule of `EvidenceRecall` (all its evidence at
    or before the probe), one without evidence at the end only. NaN when no question
    applies.
    """

    name: ClassVar[str] = "answer_presence"

    def applies(self, conversation: Conversation) -> bool:
        """Conversations with LoCoMo questions."""
        return _has_questions(conversation)

    def value(self, cell: Cell, probe: Probe) -> float:
        """Share of applying questions whose normalised answer occurs in the context."""
        facts = cell.facts
        qs = facts.memo("locomo.questions", _questions)
        ans = facts.memo("locomo.answers", _answers)
        at_end = probe.k == facts.n
        applying = (qs.category != _ADVERSARIAL) & qs.has_answer & ~qs.outside
        applying &= np.where(qs.n_evidence > 0, qs.last < probe.k, at_end)
        if not applying.any():
            return NAN
        present = np.zeros(len(qs.patterns), dtype=np.bool_)
        present[ans.within_q[probe.kept[ans.within_m]]] = True
        if (applying & ~present).any():
            _search_context(qs, ans, probe, applying, present)
        return float(present[applying].mean())


def _search_context(
    qs: _Questions,
    ans: _Answers,
    probe: Probe,
    applying: npt.NDArray[np.bool_],
    present: npt.NDArray[np.bool_],
) -> None:
    """Find answers outside single verbatim messages: straddling, in rewritten messages.

    An occurrence in the context either lies inside one message (verbatim ones are
    precomputed), or straddles a junction between two messages with words. Junctions between
    originally-adjacent verbatim messages are covered by the precomputed spans; every other
    junction, and every rewritten message, is searched here.
    """
    assert probe.pruned is not None
    order = probe.order
    # Verbatim messages without words take no part in any occurrence: leave them out.
    keep = (order < 0) | ans.has_words[np.maximum(order, 0)]
    pos, orig = np.flatnonzero(keep), order[keep]
    old = np.zeros(len(pos), dtype=np.bool_)
    if len(pos) > 1:
        a, b = orig[:-1], orig[1:]
        old[1:] = (a >= 0) & (b >= 0) & (ans.next_nonempty[np.maximum(a, 0)] == b)
    linked = np.zeros(len(ans.words), dtype=np.bool_)
    linked[orig[:-1][old[1:]]] = True
    for q, members in ans.spans:
        if applying[q] and not present[q] and linked[list(members[:-1])].all():
            present[q] = True
    todo = [int(q) for q in np.flatnonzero(applying & ~present)]
    if not todo:
        return
    words = _Words(ans, probe.pruned.messages, pos, orig)
    for j in np.flatnonzero(orig < 0):
        _mark(" " + " ".join(words[int(j)]) + " ", todo, qs, present)
    # Only answers of two or more words can straddle a junction.
    multi = [q for q in todo if ans.multiword[q] and not present[q]]
    if multi:
        width = max(qs.patterns[q].count(" ") - 2 for q in multi)
        for j in np.flatnonzero(~old[1:]) + 1:
            _mark(_junction(words, int(j), width), multi, qs, present)


def _mark(text: str, todo: list[int], qs: _Questions, present: npt.NDArray[np.bool_]) -> None:
    for q in todo:
        if not present[q] and qs.patterns[q] in text:
            present[q] = True


class _Words:
    """Normalised words of the context's j-th message with words (computed on demand)."""

    def __init__(
        self, ans: _Answers, sent: Sequence[Message], pos: IntArray, orig: IntArray
    ) -> None:
        self.ans, self.sent, self.pos, self.orig = ans, sent, pos, orig
        self.cache: dict[int, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.pos)

    def __getitem__(self, j: int) -> tuple[str, ...]:
        if self.orig[j] >= 0:
            return self.ans.words[self.orig[j]]
        if j not in self.cache:
            self.cache[j] = tuple(normalise(full_text(self.sent[self.pos[j]])).split())
        return self.cache[j]


def _junction(words: _Words, j: int, width: int) -> str:
    """Text of up to `width` words on each side of the junction before message `j`."""
    left: list[str] = []
    i = j - 1
    while i >= 0 and len(left) < width:
        left = list(words[i][-width:]) + left
        i -= 1
    right: list[str] = []
    i = j
    while i < len(words) and len(right) < width:
        right += words[i][:width]
        i += 1
    return " " + " ".join(left[-width:] + right[:width]) + " "
