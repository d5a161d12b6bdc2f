"""Importance scorers: composable, offline, deterministic scores for the messages of a conversation.

A `Scorer` returns one float per message (``score(conversation, counter)``). The scorers here
return values in [0, 1] so they can be mixed with `Weighted`; `Pins` returns ``inf`` for the
messages that must stay, which survives any weighting::

    Weighted(((Recency(half_life=12), 0.4), (Relevance(), 0.4), (KeyDensity(), 0.2)))

Lexical relevance uses BM25 from the `bm25s` library (`bm25_scores`), over words lower-cased
and with English stopwords removed (`terms`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, runtime_checkable

from ctxlab.errors import UsageError
from ctxlab.keys import key_strings
from ctxlab.messages import Conversation, FrozenDict, Message
from ctxlab.tokens import TokenCounter

__all__ = [
    "DEFAULT_ROLE_WEIGHTS",
    "KeyDensity",
    "Pins",
    "Recency",
    "Relevance",
    "RoleWeights",
    "Scorer",
    "Weighted",
    "bm25_scores",
    "default_scorer",
    "terms",
]

_WORD = re.compile(r"[^\W_]+")


@runtime_checkable
class Scorer(Protocol):
    """Scores every message of a conversation; higher means more worth keeping."""

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """One score per message, in order."""
        ...


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
    weights = _query_weights(query)
    if not documents or not weights or not any(documents):
        return [0.0] * len(documents)
    import bm25s
    import numpy as np

    index = bm25s.BM25()
    index.index([list(d) for d in documents], show_progress=False)
    data, indices, indptr = (index.scores[k] for k in ("data", "indices", "indptr"))
    cols, vals = [], []
    # Terms in sorted order so float sums come out the same whatever bm25s's vocabulary order.
    for term in sorted(weights):
        tid = index.vocab_dict.get(term)
        if tid is None or term == "":
            continue
        start, end = int(indptr[tid]), int(indptr[tid + 1])
        cols.append(indices[start:end])
        vals.append(data[start:end].astype(np.float64) * weights[term])
    if not cols:
        return [0.0] * len(documents)
    totals = np.bincount(np.concatenate(cols), np.concatenate(vals), minlength=len(documents))
    return [float(x) for x in totals]


def _query_weights(query: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(query, Mapping):
        return {t: float(w) for t, w in query.items() if w}
    out: dict[str, float] = {}
    for t in query:
        out[t] = out.get(t, 0.0) + 1.0
    return out


def _newest_user(messages: Sequence[Message]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user" and not messages[i].is_tool_output:
            return i
    return None


def _normalise(values: Sequence[float]) -> list[float]:
    top = max(values, default=0.0)
    return [v / top if top > 0 else 0.0 for v in values]


@dataclass(frozen=True, kw_only=True)
class Recency:
    """Newer is better: ``0.5 ** (age / half_life)``, age in messages (the newest has age 0).

    Attributes:
        half_life: messages after which the score halves.
    """

    half_life: float = 12.0

    def __post_init__(self) -> None:
        if not self.half_life > 0:
            raise UsageError(f"Recency.half_life must be positive, got {self.half_life}")

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """One score per message, 1.0 for the newest."""
        n = len(conversation.messages)
        return [0.5 ** ((n - 1 - i) / self.half_life) for i in range(n)]


DEFAULT_ROLE_WEIGHTS: Mapping[str, float] = FrozenDict(
    system=1.0, user=0.7, assistant=0.5, tool=0.3
)


@dataclass(frozen=True, kw_only=True)
class RoleWeights:
    """A fixed score per role; tool outputs sent as user messages count as ``tool``.

    Attributes:
        weights: role -> score in [0, 1]; roles not listed score 0.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_ROLE_WEIGHTS)

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """One score per message."""
        return [
            float(self.weights.get("tool" if m.is_tool_output else m.role, 0.0))
            for m in conversation.messages
        ]


@dataclass(frozen=True, kw_only=True)
class Relevance:
    """Lexical relevance (BM25) of each message to a query, scaled so the best other one is 1.

    Attributes:
        query: the query text; by default the newest user message (not tool output), which
            then scores 1.0 itself and does not take part in the scaling.
    """

    query: str | None = None

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """One score per message in [0, 1]."""
        messages = conversation.messages
        anchor = None if self.query is not None else _newest_user(messages)
        if self.query is not None:
            query = self.query
        else:
            query = messages[anchor].text if anchor is not None else ""
        raw = bm25_scores([terms(m.text) for m in messages], terms(query))
        if anchor is not None:
            raw[anchor] = 0.0
        scores = _normalise(raw)
        if anchor is not None:
            scores[anchor] = 1.0
        return scores


@dataclass(frozen=True, kw_only=True)
class KeyDensity:
    """Share of key strings (`ctxlab.keys`): keys per 100 tokens, capped at `saturation`.

    Attributes:
        saturation: keys per 100 tokens that score 1.0.
    """

    saturation: float = 4.0

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """One score per message in [0, 1]."""
        counts = counter.count_many(conversation.messages)
        return [
            min(1.0, 100.0 * len(key_strings(m.text)) / max(c, 1) / self.saturation)
            for m, c in zip(conversation.messages, counts, strict=True)
        ]


@dataclass(frozen=True, kw_only=True)
class Pins:
    """Explicit pins: ``inf`` for pinned messages, 0 for the others.

    Attributes:
        ids: message ids to pin.
        predicate: pins every message for which it returns True.
    """

    ids: Collection[str] = frozenset()
    predicate: Callable[[Message], bool] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.ids, str):
            raise UsageError("Pins.ids takes a collection of ids, not one string")
        object.__setattr__(self, "ids", frozenset(self.ids))

    def pinned(self, message: Message) -> bool:
        """True when the message is pinned."""
        return message.id in self.ids or (self.predicate is not None and self.predicate(message))

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """``inf`` or 0.0 per message."""
        return [math.inf if self.pinned(m) else 0.0 for m in conversation.messages]


@dataclass(frozen=True, kw_only=True)
class Weighted:
    """A weighted mean of scorers: ``Σ wᵢ·sᵢ / Σ wᵢ`` (an ``inf`` score stays ``inf``).

    Attributes:
        parts: (scorer, weight) pairs; weights are non-negative and not all zero.
    """

    parts: tuple[tuple[Scorer, float], ...]

    def __post_init__(self) -> None:
        parts = tuple((s, float(w)) for s, w in self.parts)
        if not parts or any(w < 0 for _, w in parts) or not any(w > 0 for _, w in parts):
            raise UsageError("Weighted needs (scorer, weight) pairs with non-negative weights")
        object.__setattr__(self, "parts", parts)

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """One combined score per message."""
        total = sum(w for _, w in self.parts)
        out = [0.0] * len(conversation.messages)
        for scorer, weight in self.parts:
            if weight == 0:
                continue
            for i, s in enumerate(scorer.score(conversation, counter)):
                out[i] += weight * s
        return [v / total for v in out]


def default_scorer() -> Weighted:
    """The offline default mix: recency 0.4, relevance 0.3, key density 0.2, role 0.1."""
    return Weighted(
        parts=(
            (Recency(), 0.4),
            (Relevance(), 0.3),
            (KeyDensity(), 0.2),
            (RoleWeights(), 0.1),
        )
    )
