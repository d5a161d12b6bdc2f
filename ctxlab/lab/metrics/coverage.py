"""``dropped_content_coverage``: how much of what was removed do summaries and masks retell?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ctxlab.lab.metrics.base import NAN, Cell, Facts, Probe, ProbeMetric
from ctxlab.lab.metrics.text import STOPWORDS, full_text, message_words, words_of
from ctxlab.messages import Message

__all__ = ["DroppedContentCoverage"]


@dataclass(frozen=True, kw_only=True)
class _Words:
    ids: dict[str, int]
    word: npt.NDArray[np.int64]  # flat (word, message) pairs of distinct content words
    message: npt.NDArray[np.int64]
    has_words: npt.NDArray[np.bool_]  # per message


def _words(facts: Facts) -> _Words:
    ids: dict[str, int] = {}
    word: list[int] = []
    message: list[int] = []
    has = np.zeros(facts.n, dtype=np.bool_)
    for i, words in enumerate(message_words(facts)):
        found = sorted(set(words) - STOPWORDS)
        has[i] = bool(found)
        word += [ids.setdefault(w, len(ids)) for w in found]
        message += [i] * len(found)
    return _Words(
        ids=ids,
        word=np.asarray(word, dtype=np.int64),
        message=np.asarray(message, dtype=np.int64),
        has_words=has,
    )


@dataclass(frozen=True)
class DroppedContentCoverage(ProbeMetric):
    """``dropped_content_coverage``: share of removed content words that rewritten messages keep.

    At a probe, the removed messages are those of ``messages[:k]`` not sent verbatim
    (dropped, summarized, masked or truncated). Their content words (distinct normalised
    words, stopwords excluded) form D; the content words of the context's rewritten messages
    (summaries, placeholders, truncated texts) form S. Coverage = |D ∩ S| / |D|: 0 for a
    strategy that only drops, NaN when nothing with content words was removed.
    """

    name: ClassVar[str] = "dropped_content_coverage"
    by_context: ClassVar[bool] = True

    def value(self, cell: Cell, probe: Probe) -> float:
        """|D ∩ S| / |D| at this probe."""
        words = cell.facts.memo("coverage.words", _words)
        removed = ~probe.kept[: probe.k] & words.has_words[: probe.k]
        if not removed.any():
            return NAN
        if not probe.others:
            return 0.0
        gone = np.zeros(len(words.ids), dtype=np.bool_)
        in_prefix = words.message < probe.k
        gone[words.word[in_prefix][removed[words.message[in_prefix]]]] = True
        told = np.zeros(len(words.ids), dtype=np.bool_)
        for _, m in probe.others:
            told[_known(cell, words, m)] = True
        return float((gone & told).sum() / gone.sum())


def _known(cell: Cell, words: _Words, message: Message) -> npt.NDArray[np.int64]:
    """Ids of the conversation's content words that `message` holds (cached by text)."""

    def find(_: str) -> npt.NDArray[np.int64]:
        held = set(words_of(cell.facts, message)) - STOPWORDS
        return np.asarray([words.ids[w] for w in held if w in words.ids], dtype=np.int64)

    return cell.facts.per_text("coverage.known", full_text(message), find)
