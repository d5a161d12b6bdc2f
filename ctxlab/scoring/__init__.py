"""Text scoring shared by the strategies and the summarizers: BM25 and importance scorers.

`scorers` holds the composable importance scorers (`Recency`, `Relevance`, `KeyDensity`, `Pins`,
`Weighted`...); `_bm25` the BM25 arithmetic and word tokenising they and the extractive
summarizer share. May import only the core values (`messages`, `tokens`, `keys`, `errors`).
"""

from __future__ import annotations

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
    "KeyDensity",
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
