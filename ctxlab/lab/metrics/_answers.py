"""Where LoCoMo's gold answers occur in a probe's context, for ``answer_presence``.

An answer is a normalised word sequence (`Answers.patterns`, written `` w1 w2 ``). In the
context it either lies inside one message, or straddles the junction between two messages
with words. Occurrences inside verbatim messages, and across the junctions of messages that
were adjacent in the conversation, are found once per conversation (`answers`); the rest,
inside rewritten messages (summaries, truncations) and across the junctions a strategy
creates, are searched per probe (`search_context`), with every text's hits cached per
conversation, since the same rewritten messages and junctions recur across probes and
budgets.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ctxlab.lab.metrics.base import Facts, Probe
from ctxlab.lab.metrics.text import message_words, words_of
from ctxlab.messages import Message

__all__ = ["Answers", "answers", "search_context"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, kw_only=True)
class Answers:
    """Where each answer occurs in the whole conversation's normalised text."""

    patterns: tuple[str, ...]  # " normalised answer " ("" when there is none)
    has_words: BoolArray  # per message
    next_nonempty: IntArray  # next message with words, n when none
    within_q: IntArray  # (question, message): the answer lies inside that message
    within_m: IntArray
    spans: tuple[tuple[int, tuple[int, ...]], ...]  # (question, messages it straddles)
    multiword: BoolArray  # per question: two words or more (can straddle a junction)
    width: int  # words of the longest answer, minus one: how far a junction window reaches
    by_first: dict[str, tuple[int, ...]]  # first word -> questions whose answer starts so


def answers(facts: Facts, patterns: tuple[str, ...]) -> Answers:
    """Occurrences of each pattern inside messages, and across originally adjacent ones."""
    words = message_words(facts)
    nonempty = [i for i, w in enumerate(words) if w]
    texts = [" ".join(words[i]) for i in nonempty]
    starts = list(np.cumsum([0] + [len(t) + 1 for t in texts[:-1]])) if texts else []
    hay = " " + " ".join(texts) + " "
    within_q: list[int] = []
    within_m: list[int] = []
    spans: list[tuple[int, tuple[int, ...]]] = []
    for q, pattern in enumerate(patterns):
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
    sizes = [p.count(" ") - 1 for p in patterns]  # words per pattern (0 for "")
    by_first: dict[str, list[int]] = {}
    for q, pattern in enumerate(patterns):
        if pattern:
            by_first.setdefault(pattern.split()[0], []).append(q)
    return Answers(
        patterns=patterns,
        has_words=np.asarray([bool(w) for w in words], dtype=np.bool_),
        next_nonempty=nxt[: len(words)],
        within_q=np.asarray(within_q, dtype=np.int64),
        within_m=np.asarray(within_m, dtype=np.int64),
        spans=tuple(spans),
        multiword=np.asarray([n > 1 for n in sizes], dtype=np.bool_),
        width=max([n - 1 for n in sizes if n > 1], default=0),
        by_first={w: tuple(q) for w, q in by_first.items()},
    )


def search_context(
    ans: Answers, facts: Facts, probe: Probe, applying: BoolArray, present: BoolArray
) -> None:
    """Mark in `present` the answers found outside single verbatim messages.

    Junctions between originally-adjacent verbatim messages are covered by the precomputed
    spans; every other junction, and every rewritten message, is searched here.
    """
    assert probe.pruned is not None
    order = probe.order
    # Verbatim messages without words take no part in any occurrence: leave them out.
    # The question of a question probe (-2) is not context: it takes no part either.
    keep = (order == -1) | ((order >= 0) & ans.has_words[np.maximum(order, 0)])
    pos, orig = np.flatnonzero(keep), order[keep]
    old = np.zeros(len(pos), dtype=np.bool_)
    if len(pos) > 1:
        a, b = orig[:-1], orig[1:]
        old[1:] = (a >= 0) & (b >= 0) & (ans.next_nonempty[np.maximum(a, 0)] == b)
    linked = np.zeros(len(ans.has_words), dtype=np.bool_)
    linked[orig[:-1][old[1:]]] = True
    for q, members in ans.spans:
        if applying[q] and not present[q] and linked[list(members[:-1])].all():
            present[q] = True
    if not (applying & ~present).any():
        return
    words = _Words(facts, probe.pruned.messages, pos, orig)
    for j in np.flatnonzero(orig < 0):
        present[_hits(facts, ans, " " + " ".join(words[int(j)]) + " ")] = True
    if (applying & ~present & ans.multiword).any():
        for j in np.flatnonzero(~old[1:]) + 1:
            present[_hits(facts, ans, _junction(words, int(j), ans.width))] = True


def _hits(facts: Facts, ans: Answers, text: str) -> IntArray:
    """The questions whose pattern occurs in `text` (cached per conversation)."""

    def find(t: str) -> IntArray:
        # Only answers starting with one of the text's words can occur in it.
        maybe = {q for w in set(t.split()) for q in ans.by_first.get(w, ())}
        return np.asarray(sorted(q for q in maybe if ans.patterns[q] in t), np.int64)

    return facts.per_text("answers.hits", text, find)


class _Words:
    """Normalised words of the context's j-th message with words (computed on demand)."""

    def __init__(self, facts: Facts, sent: Sequence[Message], pos: IntArray, orig: IntArray):
        self.facts, self.sent, self.pos, self.orig = facts, sent, pos, orig
        self.originals = message_words(facts)

    def __len__(self) -> int:
        return len(self.pos)

    def __getitem__(self, j: int) -> tuple[str, ...]:
        if self.orig[j] >= 0:
            return self.originals[self.orig[j]]
        return words_of(self.facts, self.sent[self.pos[j]])


def _junction(words: _Words, j: int, width: int) -> str:
    """Text of up to `width` words on each side of the junction before message `j`.

    The window is a contiguous stretch of the context's words, so whatever it holds is a real
    occurrence; `width` words each side reach across the junction for any answer.
    """
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
