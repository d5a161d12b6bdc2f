"""BM25 as the `bm25s` library scores it, from term statistics kept per document.

`bm25_scores(documents, query)` gives, bit for bit, what a `bm25s` index (Lucene variant,
k1=1.5, b=0.75) built over the documents scores for the query: each (document, term) score is
the same float32 value (idf x term-frequency part, computed in float64 with the same formula),
and the weighted sum over query terms is taken in float64 in sorted term order. `Postings`
keeps the statistics of a growing list of documents, so the scores of any leading part of it
come without re-indexing: what a replay over every prefix of a conversation needs. The tests
compare both with an index of the library itself.

`terms` is the tokenization both use: words lower-cased, English stopwords (the list of
`bm25s`) and one-letter words removed.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

__all__ = ["Postings", "bm25_scores", "query_weights", "terms"]

_WORD = re.compile(r"[^\W_]+")
_K1, _B = 1.5, 0.75  # BM25 parameters (the bm25s defaults)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


@lru_cache(maxsize=65536)
def terms(text: str) -> tuple[str, ...]:
    """The words of `text` that BM25 looks at: lower-cased, English stopwords removed."""
    stop = _stopwords()
    return tuple(w for w in _WORD.findall(text.lower()) if w not in stop and len(w) > 1)


def bm25_scores(
    documents: Sequence[Sequence[str]], query: Sequence[str] | Mapping[str, float]
) -> list[float]:
    """BM25 (Lucene variant, k1=1.5, b=0.75) score of each document for a query.

    Args:
        documents: each document as its list of terms (see `terms`).
        query: the query's terms (repeats add up), or a mapping term -> weight.

    Returns:
        One score per document (0.0 when no query term occurs in it).
    """
    weights = query_weights(query)
    n = len(documents)
    if not n or not weights or not any(documents):
        return [0.0] * n
    import numpy as np

    words, tfs, docs = _pairs(documents)
    vocab = sorted(set(words))  # the term order of the sums
    index = {t: j for j, t in enumerate(vocab)}
    term_at = np.array([index[t] for t in words])
    wanted = [weights.get(t, 0.0) if t else 0.0 for t in vocab]
    df = np.bincount(term_at, minlength=len(vocab)).tolist()
    # One float32 idf per term, from the same float64 formula as bm25s (math.log, not np.log).
    idf32 = np.array(
        [
            math.log(1 + (n - f + 0.5) / (f + 0.5)) if w else 0.0
            for f, w in zip(df, wanted, strict=True)
        ],
        dtype=np.float32,
    )
    keep = np.array(wanted)[term_at] != 0
    # Term-major order: each document's sum then adds up in the same order as bm25s's.
    order = np.lexsort((np.array(docs)[keep], term_at[keep]))
    at = np.array(docs)[keep][order]
    terms_at = term_at[keep][order]
    return _combine(
        n,
        np.array(tfs, dtype=np.float64)[keep][order],
        at,
        np.array([len(d) for d in documents]),
        idf32[terms_at],
        np.array(wanted, dtype=np.float64)[terms_at],
    )


def _pairs(documents: Sequence[Sequence[str]]) -> tuple[list[str], list[int], list[int]]:
    """Every (term, frequency, document) of the documents, as three flat lists."""
    words: list[str] = []
    tfs: list[int] = []
    docs: list[int] = []
    for i, d in enumerate(documents):
        ws, fs = _term_counts(tuple(d))
        words += ws
        tfs += fs
        docs += [i] * len(ws)
    return words, tfs, docs


def _combine(n: int, tf: Any, at: Any, lens: Any, idf32: Any, weight: Any) -> list[float]:
    """Σ over terms of weight x float32(idf x tf part) per document, as bm25s computes them."""
    import numpy as np

    # bm25s adds a float64 scalar to a float32 array: float64 under NumPy 2's promotion rules,
    # float32 under NumPy 1's. Compute in whichever type that mix gives here.
    mixed = np.result_type(np.float64(1.0), np.empty(0, dtype=np.float32))
    tf = tf.astype(mixed)
    length = (_K1 * ((1 - _B) + _B * lens[at] / lens.mean())).astype(mixed)
    part = tf / (length + tf)
    score = (idf32.astype(mixed) * part).astype(np.float32)  # bm25s stores float32
    totals = np.bincount(at, score.astype(np.float64) * weight, minlength=n)
    return [float(x) for x in totals]


class Postings:
    """Term statistics of a growing list of documents, for BM25 over any leading part of it.

    The scores are those of a `bm25s` index built over the same documents, bit for bit: the
    same float32 per-term scores (idf x term-frequency part, Lucene variant) summed in float64
    in sorted term order (the tests compare both). Keeping the statistics instead of an index
    lets a replay score every prefix of a conversation without re-indexing it: documents are
    added once, and `scores(weights, n)` only visits the postings of the query terms.
    """

    def __init__(self) -> None:
        self.lens: list[int] = []
        self._docs: dict[str, list[int]] = {}
        self._tfs: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.lens)

    def add(self, document: Sequence[str]) -> None:
        """Append a document (its terms)."""
        i = len(self.lens)
        self.lens.append(len(document))
        for term, tf in zip(*_term_counts(tuple(document)), strict=True):
            self._docs.setdefault(term, []).append(i)
            self._tfs.setdefault(term, []).append(tf)

    def scores(
        self,
        weights: Mapping[str, float],
        n: int | None = None,
        extra: Sequence[str] | None = None,
        skip: int | None = None,
    ) -> list[float]:
        """BM25 score of each of the first `n` documents (default: all) for weighted terms.

        With `extra`, one more document (its terms) is scored after those `n`, as if it had
        been added there: the same numbers, without changing these statistics. With `skip`,
        document `skip` (below `n`) is left out, as if it had never been added: the scores
        are those of the other documents, in order.
        """
        import numpy as np

        n = len(self.lens) if n is None else n
        lens = self.lens[:n]
        if skip is not None and skip < n:
            lens = [*lens[:skip], *lens[skip + 1 :]]
        else:
            skip = None
        tail = dict(zip(*_term_counts(tuple(extra)), strict=True)) if extra is not None else {}
        if extra is not None:
            lens = [*lens, len(extra)]
        total = len(lens)
        if total == 0 or not weights or not any(lens):
            return [0.0] * total
        at: list[int] = []
        tfs: list[int] = []
        dfs, idfs, ws = [], [], []
        # Terms in sorted order: each document's sum then adds up in the same order as bm25s's.
        for term in sorted(weights):
            docs = self._docs.get(term) if term else None
            df = bisect.bisect_left(docs, n) if docs is not None else 0
            more = tail.get(term, 0) if term else 0
            if docs is not None and df:
                found, freqs = docs[:df], self._tfs[term][:df]
                if skip is not None:
                    found, freqs = _without(found, freqs, skip)
                    df = len(found)
                at += found
                tfs += freqs
            if more:
                at.append(total - 1)
                tfs.append(more)
            if df or more:
                seen = df + (1 if more else 0)
                dfs.append(seen)
                idfs.append(math.log(1 + (total - seen + 0.5) / (seen + 0.5)))
                ws.append(weights[term])
        if not at:
            return [0.0] * total
        idf = np.repeat(np.array(idfs, dtype=np.float32), dfs)
        weight = np.repeat(np.array(ws, dtype=np.float64), dfs)
        tf = np.array(tfs, dtype=np.float64)
        return _combine(total, tf, np.array(at), np.array(lens), idf, weight)


def _without(docs: list[int], tfs: list[int], skip: int) -> tuple[list[int], list[int]]:
    """Postings without document `skip`, the documents after it moved down by one."""
    pos = bisect.bisect_left(docs, skip)
    gone = pos < len(docs) and docs[pos] == skip
    after = [d - 1 for d in docs[pos + gone :]]
    return [*docs[:pos], *after], [*tfs[:pos], *tfs[pos + gone :]]


@lru_cache(maxsize=65536)
def _term_counts(document: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    counts = Counter(document)
    return tuple(counts), tuple(counts.values())


def query_weights(query: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    """Term -> weight: a mapping as given (zero weights dropped), a term list by counts."""
    if isinstance(query, Mapping):
        return {t: float(w) for t, w in query.items() if w}
    out: dict[str, float] = {}
    for t in query:
        out[t] = out.get(t, 0.0) + 1.0
    return out
