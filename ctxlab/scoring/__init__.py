"""Text scoring shared by the strategies and the summarizers: BM25 and importance scorers.

`scorers` holds the composable importance scorers (`Recency`, `Relevance`, `KeyDensity`, `Pins`,
`Weighted`...); `relevance` the BM25, dense and hybrid rankings of `retrieve`; `embeddings` the
offline MiniLM embedder and its cache; `_bm25` the BM25 arithmetic and word tokenising shared with
the extractive summarizer. May import only the core values (`messages`, `tokens`, `keys`, `errors`,
`_config`).
"""

from __future__ import annotations

from ctxlab.scoring.embeddings import CachedEmbedder, MiniLM
from ctxlab.scoring.scorers import (
    DEFAULT_ROLE_WEIGHTS,
    KeyDensity,
    Pins,
    PrefixScores,
    Recency,
    Relevance,
    RoleWeights,
    Scorer,
    Weighted,
    bm25_scores,
    default_scorer,
    prefix_scores,
    terms,
)

__all__ = [
    "DEFAULT_ROLE_WEIGHTS",
    "CachedEmbedder",
    "KeyDensity",
    "MiniLM",
    "Pins",
    "PrefixScores",
    "Recency",
    "Relevance",
    "RoleWeights",
    "Scorer",
    "Weighted",
    "bm25_scores",
    "default_scorer",
    "prefix_scores",
    "terms",
]
