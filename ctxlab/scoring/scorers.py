"""Importance scorers: composable, offline, deterministic scores for the messages of a conversation.

A `Scorer` returns one float per message (``score(conversation, counter)``). The scorers here
return values in [0, 1] so they can be mixed with `Weighted`; `Pins` returns ``inf`` for the
messages that must stay, which survives any weighting::

    Weighted(((Recency(half_life=12), 0.4), (Relevance(), 0.4), (KeyDensity(), 0.2)))

Lexical relevance uses BM25 (`bm25_scores`), scored exactly as the `bm25s` library scores it,
over words lower-cased and with English stopwords removed (`terms`, with the stopword list of
`bm25s`).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, runtime_checkable

from ctxlab.errors import UsageError
from ctxlab.keys import key_strings
from ctxlab.messages import Conversation, FrozenDict, Message
from ctxlab.scoring._bm25 import Postings, bm25_scores, query_weights, terms
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
    "prefix_scores",
    "terms",
]


@runtime_checkable
class Scorer(Protocol):
    """Scores every message of a conversation; higher means more worth keeping."""

    def score(self, conversation: Conversation, counter: TokenCounter) -> list[float]:
        """One score per message, in order."""
        ...


#: ``scores(n)``: the scores of the first n messages, as if scoring ``messages[:n]`` alone.
PrefixScores = Callable[[int], list[float]]


def prefix_scores(
    scorer: Scorer, conversation: Conversation, counter: TokenCounter
) -> PrefixScores:
    """Scores of every prefix of a conversation, sharing work between prefixes where it can.

    ``prefix_scores(scorer, conv, counter)(k) == scorer.score(conv.prefix(k), counter)``: a
    scorer with a ``prefix_scores`` method of its own (all those here) precomputes what does
    not depend on the prefix (per-message scores, BM25 term statistics); any other scorer is
    called on each prefix.
    """
    own = getattr(scorer, "prefix_scores", None)
    if own is not None:
        result: PrefixScores = own(conversation, counter)
        return result
    return lambda n: scorer.score(conversation.prefix(n), counter)


def _sliced(scores: list[float]) -> PrefixScores:
    return lambda n: scores[:n]


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
        return self._of(len(conversation.messages))

    def prefix_scores(self, conversation: Conversation, counter: TokenCounter) -> PrefixScores:
        """Scores of each prefix (see `prefix_scores`)."""
        return self._of

    def _of(self, n: int) -> list[float]:
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

    def prefix_scores(self, conversation: Conversation, counter: TokenCounter) -> PrefixScores:
        """Scores of each prefix (see `prefix_scores`): one message's score never changes."""
        return _sliced(self.score(conversation, counter))


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
        return self.prefix_scores(conversation, counter)(len(conversation.messages))

    def prefix_scores(self, conversation: Conversation, counter: TokenCounter) -> PrefixScores:
        """Scores of each prefix (see `prefix_scores`), from one set of term statistics."""
        messages = conversation.messages
        # Requests that share a history differ in the newest message only: the statistics
        # of the others are kept, and the newest one is scored as an extra document.
        postings = history_postings(tuple(m.text for m in messages[:-1]))
        newest = terms(messages[-1].text) if messages else ()
        last = len(messages)
        users = [i for i, m in enumerate(messages) if m.is_user_turn]

        def of(n: int) -> list[float]:
            pos = bisect.bisect_left(users, n)
            anchor = users[pos - 1] if self.query is None and pos else None
            if self.query is not None:
                query = self.query
            else:
                query = messages[anchor].text if anchor is not None else ""
            weights = query_weights(terms(query))
            if n == 0:
                return []
            if n == last:
                raw = postings.scores(weights, n - 1, extra=newest)
            else:
                raw = postings.scores(weights, n)
            if anchor is not None:
                raw[anchor] = 0.0
            scores = _normalise(raw)
            if anchor is not None:
                scores[anchor] = 1.0
            return scores

        return of


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
            min(1.0, 100.0 * _key_count(m.text) / max(c, 1) / self.saturation)
            for m, c in zip(conversation.messages, counts, strict=True)
        ]

    def prefix_scores(self, conversation: Conversation, counter: TokenCounter) -> PrefixScores:
        """Scores of each prefix (see `prefix_scores`): one message's score never changes."""
        return _sliced(self.score(conversation, counter))


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

    def prefix_scores(self, conversation: Conversation, counter: TokenCounter) -> PrefixScores:
        """Scores of each prefix (see `prefix_scores`): one message's score never changes."""
        return _sliced(self.score(conversation, counter))


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
        return self.prefix_scores(conversation, counter)(len(conversation.messages))

    def prefix_scores(self, conversation: Conversation, counter: TokenCounter) -> PrefixScores:
        """Scores of each prefix (see `prefix_scores`), from those of every part."""
        total = sum(w for _, w in self.parts)
        parts = [
            (prefix_scores(scorer, conversation, counter), weight)
            for scorer, weight in self.parts
            if weight != 0
        ]

        def of(n: int) -> list[float]:
            out = [0.0] * n
            for scores, weight in parts:
                for i, s in enumerate(scores(n)):
                    out[i] += weight * s
            return [v / total for v in out]

        return of


@lru_cache(maxsize=65536)
def _key_count(text: str) -> int:
    return len(key_strings(text))


_POSTINGS: OrderedDict[tuple[str, ...], Postings] = OrderedDict()
_POSTINGS_LOCK = threading.Lock()


def history_postings(texts: tuple[str, ...]) -> Postings:
    """BM25 statistics of these documents, built once and kept for the next request."""
    with _POSTINGS_LOCK:
        found = _POSTINGS.get(texts)
        if found is not None:
            _POSTINGS.move_to_end(texts)
            return found
    postings = Postings()
    for text in texts:
        postings.add(terms(text))
    with _POSTINGS_LOCK:
        _POSTINGS[texts] = postings
        while len(_POSTINGS) > 16:
            _POSTINGS.popitem(last=False)
    return postings


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
