"""Relevance of documents to a query: BM25, dense cosine, and the hybrid of both.

The `retrieve` strategy ranks earlier turns by one of these against the newest user message.
The BM25 index of a corpus is built once and kept (keyed by the corpus's texts), so every
question asked after the same conversation reuses it: index once, query many.

The hybrid fuses the two rankings by reciprocal rank fusion (``1/(k + rank)`` summed over
the rankings, k=60, as Cormack, Clarke and Büttcher, SIGIR 2009): ranks, unlike raw BM25 and
cosine values, are on one scale, so neither signal needs tuning against the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ctxlab.errors import UsageError
from ctxlab.scoring._bm25 import query_weights, terms
from ctxlab.scoring.scorers import history_postings

__all__ = [
    "RRF_K",
    "Embedder",
    "Ranking",
    "bm25_ranking",
    "dense_ranking",
    "fuse",
    "ranking_of",
]

#: Turns texts into one vector per text (rows), e.g. a sentence-embedding model.
Embedder = Callable[[list[str]], npt.ArrayLike]
FloatArray = npt.NDArray[np.float64]
RRF_K = 60  # the constant of reciprocal rank fusion


@dataclass(frozen=True, kw_only=True)
class Ranking:
    """Scores of a corpus for one query, and the rank each document takes (1 = best).

    Attributes:
        scores: the relevance of each document (higher is better).
        ranks: 1-based rank of each document by score (ties: later documents first); 0 for
            documents that do not match at all (a BM25 score of 0).
    """

    scores: FloatArray
    ranks: npt.NDArray[np.int64]
    parts: tuple[Ranking, ...] = ()

    def inserted(self, at: int) -> Ranking:
        """The ranking with a document of score 0 and no rank inserted at position `at`."""
        return Ranking(
            scores=np.insert(self.scores, at, 0.0),
            ranks=np.insert(self.ranks, at, 0),
            parts=tuple(p.inserted(at) for p in self.parts),
        )


def _ranks(scores: FloatArray, matched: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    n = len(scores)
    # Best first; among equal scores the later (newer) document first.
    order = np.lexsort((-np.arange(n), -scores))
    ranks = np.zeros(n, dtype=np.int64)
    ranks[order] = np.arange(1, n + 1)
    ranks[~matched] = 0
    return ranks


def bm25_ranking(corpus: Sequence[str], query: str) -> Ranking:
    """BM25 (as `bm25s` scores it) of every document of `corpus` for `query`."""
    texts = tuple(corpus)
    weights = query_weights(terms(query))
    raw = history_postings(texts).scores(weights) if texts else []
    return ranking_of(np.asarray(raw, dtype=np.float64))


def ranking_of(scores: FloatArray) -> Ranking:
    """The BM25 ranking of these scores: documents scoring 0 take no rank."""
    return Ranking(scores=scores, ranks=_ranks(scores, scores > 0))


def dense_ranking(embed: Embedder, corpus: Sequence[str], query: str) -> Ranking:
    """Cosine similarity of every document's embedding to the query's."""
    texts = list(corpus)
    if not texts:
        empty = np.zeros(0, dtype=np.float64)
        return Ranking(scores=empty, ranks=np.zeros(0, dtype=np.int64))
    vectors = np.asarray(embed([*texts, query]), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts) + 1:
        raise UsageError(
            f"the embedder returned shape {vectors.shape} for {len(texts) + 1} texts; "
            "it must return one row per text"
        )
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    scores = unit[:-1] @ unit[-1]
    return Ranking(scores=scores, ranks=_ranks(scores, np.ones(len(texts), dtype=np.bool_)))


def fuse(*rankings: Ranking, k: int = RRF_K) -> Ranking:
    """Reciprocal rank fusion: Σ 1/(k + rank) over the rankings that rank a document.

    The result keeps the fused rankings as its `parts`.
    """
    total = np.zeros(len(rankings[0].scores), dtype=np.float64)
    for r in rankings:
        total += np.where(r.ranks > 0, 1.0 / (k + r.ranks), 0.0)
    return Ranking(scores=total, ranks=_ranks(total, total > 0), parts=rankings)
