"""`retrieve`: a retrieval memory; recent turns plus the earlier turns most relevant to the query.

The query is the newest user message (at a question probe: the question). Earlier units (a
tool call with its results, or any other message) are ranked by relevance to it, BM25 by
default, or BM25 fused with dense embeddings (``embedder="minilm"`` or any callable
``list[str] -> array``), and the best ones that fit are sent in their original order, after a
window of the most recent turns. This is the shape of the retrieval memories of chat
frameworks (a vector or keyword store searched with the newest message, plus a short buffer
of recent turns).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.invariants import must_keep
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Action, Decision, Pruned
from ctxlab.scoring._bm25 import query_weights, terms
from ctxlab.scoring.relevance import (
    Embedder,
    Ranking,
    bm25_ranking,
    dense_ranking,
    fuse,
    ranking_of,
)
from ctxlab.scoring.scorers import history_postings
from ctxlab.strategies._branches import Branch, History, per_budget
from ctxlab.strategies._chunked import check_shares
from ctxlab.strategies._chunked_units import Shares, chunked_walk
from ctxlab.strategies._layout import prefix_of, share_of
from ctxlab.strategies._tool_units import Unit, units_of
from ctxlab.strategies.base import BaseStrategy
from ctxlab.tokens import TokenCounter

__all__ = ["Retrieve"]

_REPLY_PRIMING = 3


@dataclass(frozen=True, kw_only=True)
class Retrieve(BaseStrategy):
    """Pinned messages, a recent window, then earlier units ranked by relevance to the query.

    Guarantees:
        - at most ``budget.available`` tokens; `BudgetUnreachableError` when, and only when,
          the first system message and the newest user message alone exceed it;
        - the first system message and the newest user message are sent verbatim;
        - the newest units that fit in ``recent`` × the budget are sent (one contiguous run);
        - the rest of the room goes to earlier units by relevance to the newest user message,
          best first (ties: newer first), skipping those that no longer fit; units with no
          relevance at all (BM25 0, no embedder) are not sent; with no query to rank by, the
          recent window takes the whole room;
        - everything is sent in its original order; a tool call travels with all its results,
          calls still waiting for results and results without their call are never sent;
        - every decision of a ranked unit carries its score and rank
          (``"retrieved: score 7.1, rank 3"``);
        - ``trigger`` × the budget is what the recent window's share and the room are taken
          of; chunked eviction (`ctxlab.strategies._chunked_units`): with ``target <
          trigger`` the units sent after a cut stay, and newer units join them, while the
          request fits ``trigger`` × the budget; then the request is chosen afresh for
          ``target`` × the budget. Between cuts the sent prefix only grows (the decisions
          then say whether a message was chosen at the last cut or is newer).

    Attributes:
        recent: share of the available budget for the recent window, in [0, 1].
        embedder: None for BM25 alone; ``"minilm"`` for BM25 fused with the bundled MiniLM
            sentence embeddings (extra ``embed``); or any callable mapping a list of texts to
            one vector per text. Embeddings are cached by content (on disk for ``"minilm"``).
        trigger: share of the budget at which the request is chosen afresh, in (0, 1].
        target: share of the budget it is chosen for, in (0, trigger]; None: trigger (no
            chunks: every request is chosen for ``trigger`` × the budget).
    """

    name: ClassVar[str] = "retrieve"

    recent: float = 0.25
    embedder: str | Embedder | None = None
    trigger: float = 1.0
    target: float | None = None

    def __post_init__(self) -> None:
        check_shares(self.name, self.trigger, self.target)
        if not 0.0 <= float(self.recent) <= 1.0:
            raise UsageError(
                f"retrieve: recent must be a share of the budget in [0, 1], got {self.recent}"
            )
        if isinstance(self.embedder, str) and self.embedder != "minilm":
            raise UsageError(
                f"retrieve: unknown embedder {self.embedder!r}; use 'minilm' or a callable "
                "list[str] -> array"
            )

    @property
    def relevance(self) -> str:
        """Which relevance ranks the units: ``bm25`` or ``bm25+<embedder>``."""
        if self.embedder is None:
            return "bm25"
        name = self.embedder if isinstance(self.embedder, str) else _name(self.embedder)
        return f"bm25+{name}"

    @property
    def chunked(self) -> bool:
        """True when requests are chosen in chunks (``target < trigger``)."""
        return self.target is not None and self.target < self.trigger

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        if self.chunked:
            return next(self._replay(conversation, [len(conversation.messages)], budget, counter))
        return self._pick(self._request(conversation, counter), budget, self.trigger)[0]

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        if not self.chunked:
            if self.embedder is not None:
                yield from super()._replay(conversation, probes, budget, counter)
                return
            lexical = _PrefixRankings(conversation.messages)
            for k in probes:
                prefix = prefix_of(conversation, k)
                request = self._grouped(prefix, counter, lexical.at(k))
                yield self._pick(request, budget, self.trigger)[0]
            return

        def cut(prefix: Conversation, b: Budget, share: float) -> tuple[Pruned, set[int]]:
            return self._pick(self._request(prefix, counter), b, share)

        assert self.target is not None
        shares = Shares(trigger=self.trigger, target=self.target)
        yield from chunked_walk(conversation, probes, budget, counter, shares, cut, self.label)

    def _request(self, conversation: Conversation, counter: TokenCounter) -> _Request:
        return self._grouped(conversation, counter, self._ranking(conversation.messages))

    def _grouped(
        self, conversation: Conversation, counter: TokenCounter, ranking: Ranking | None
    ) -> _Request:
        msgs = conversation.messages
        counts = counter.count_many(msgs)
        units, tracker = units_of(msgs, counts)
        branch = Branch(conversation=conversation, counts=counts, units=units, tracker=tracker)
        return _Request(branch, ranking)

    def branches(
        self,
        conversation: Conversation,
        extras: Sequence[Message],
        budgets: Sequence[Budget],
        counter: TokenCounter,
    ) -> Iterator[list[Pruned | None]]:
        """For each extra message x, ``prune(conversation + x)`` at each budget (None: unmet).

        The history's counts, tool units and retrieval index are computed once; each
        request is ranked once for all budgets.
        """
        if self.chunked:
            for extra in extras:
                conv = conversation.with_messages((*conversation.messages, extra))
                yield per_budget(budgets, lambda b: self._prune(conv, b, counter))  # noqa: B023
            return
        history = History(conversation, counter)
        for extra in extras:
            branch = history.branch(extra)
            request = _Request(branch, self._ranking(branch.conversation.messages))
            yield per_budget(
                budgets,
                lambda b: self._pick(request, b, self.trigger)[0],  # noqa: B023
            )

    def _pick(self, request: _Request, budget: Budget, share: float) -> tuple[Pruned, set[int]]:
        """The request's result for ``share`` × the budget, and the indices it sends."""
        required = request.required
        if required > budget.available:
            raise BudgetUnreachableError(required, budget.available, "first system + newest user")
        available = share_of(budget, share)
        room = max(0, available - required)
        window = room if not request.searchable else min(room, int(self.recent * available))
        recent, used = _recent(request.candidates, window)
        plan = _Plan(recent=recent, ranking=request.ranking)
        ranked = [
            (u, s, r)
            for r, (u, s) in enumerate(
                (x for x in request.scored if id(x[0]) not in plan.recent), 1
            )
        ]
        retrieved = []
        for unit, score, _ in ranked:
            if score > 0 and used + unit.cost <= room:
                retrieved.append(unit)
                used += unit.cost
        plan.retrieved = {id(u) for u in retrieved}
        msgs, forced = request.msgs, request.forced
        kept = sorted({*forced, *(i for u in (*recent, *retrieved) for i in u.members)})
        units, reasons = request.units, request.reasons
        pruned = Pruned(
            conversation=request.conversation,
            messages=tuple(msgs[i] for i in kept),
            tokens=required + used,
            budget=budget,
            strategy=self.label,
            decide=lambda: plan.decisions(msgs, units, ranked, forced, reasons),
        )
        return pruned, set(kept)

    def _ranking(self, msgs: Sequence[Message]) -> Ranking | None:
        """Relevance of every message but the query to the query (None without a query)."""
        user = must_keep(msgs).user
        if user is None:
            return None
        query = msgs[user].text
        corpus = [m.text for i, m in enumerate(msgs) if i != user]
        lexical = bm25_ranking(corpus, query)
        if self.embedder is None:
            ranking = lexical
        else:
            from ctxlab.scoring.embeddings import resolve_embedder

            dense = dense_ranking(resolve_embedder(self.embedder), corpus, query)
            ranking = fuse(lexical, dense)
        # Back to message positions: the query takes no part (rank 0, score 0).
        return ranking.inserted(user)


class _PrefixRankings:
    """BM25 rankings of every prefix of a conversation from one set of term statistics.

    At prefix k the corpus is every message but the query (the newest user message), as
    `Retrieve._ranking` builds it; the statistics of the whole conversation answer it with
    the query's document left out, the same numbers without an index per prefix.
    """

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = messages
        self.postings = history_postings(tuple(m.text for m in messages))
        self.users = [i for i, m in enumerate(messages) if m.is_user_turn]

    def at(self, k: int) -> Ranking | None:
        """The ranking `Retrieve._ranking` gives for ``messages[:k]``."""
        pos = bisect.bisect_left(self.users, k)
        if not pos:
            return None
        user = self.users[pos - 1]
        weights = query_weights(terms(self.messages[user].text))
        raw = self.postings.scores(weights, k, skip=user) if k > 1 else []
        return ranking_of(np.asarray(raw, dtype=np.float64)).inserted(user)


class _Request:
    """One request, grouped and ranked once: what `Retrieve` fills at any budget."""

    def __init__(self, branch: Branch, ranking: Ranking | None) -> None:
        msgs = self.msgs = branch.conversation.messages
        self.conversation = branch.conversation
        self.units = branch.units
        self.ranking = ranking
        self.forced = list(must_keep(msgs).indices)
        self.required = _REPLY_PRIMING + sum(branch.counts[i] for i in self.forced)
        forced = set(self.forced)
        self.candidates = [u for u in branch.units if u.state == "ok" and u.start not in forced]
        self.searchable = ranking is not None and bool(np.any(ranking.ranks > 0))
        # Every candidate by relevance (ties: newer first), whatever the budget.
        self.scored: list[tuple[Unit, float]] = []
        if ranking is not None:
            scores = ranking.scores.tolist()
            self.scored = [
                (u, scores[u.start] if len(u.members) == 1 else max(scores[i] for i in u.members))
                for u in self.candidates
            ]
            self.scored.sort(key=lambda us: (-us[1], -us[0].start))
        self.reasons = dict(branch.tracker.bad_reason)
        self.reasons.update(
            dict.fromkeys(branch.tracker.open_members(), "tool call awaiting its results")
        )


class _Plan:
    """What one prune decided, kept to write the decisions lazily."""

    def __init__(self, *, recent: list[Unit], ranking: Ranking | None) -> None:
        self.recent = {id(u) for u in recent}
        self.ranking = ranking
        self.retrieved: set[int] = set()

    def decisions(
        self,
        msgs: Sequence[Message],
        units: list[Unit],
        ranked: list[tuple[Unit, float, int]],
        forced: list[int],
        reasons: dict[int, str],
    ) -> list[Decision]:
        """One decision per message, with the score and rank of ranked units."""
        unit_at = {i: u for u in units for i in u.members}
        rank_of = {id(u): (s, r) for u, s, r in ranked}
        out = []
        for i, m in enumerate(msgs):
            unit = unit_at[i]
            score, rank = rank_of.get(id(unit), (math.nan, 0))
            action: Action = "dropped"
            if i in forced:
                why = (
                    "pinned: system"
                    if m.role == "system"
                    else "pinned: newest user message (the query)"
                )
                action, score = "kept", math.inf
            elif i in reasons:
                why = reasons[i]
            elif id(unit) in self.recent:
                why, action = "recent window", "kept"
            elif id(unit) in self.retrieved:
                why, action = f"retrieved: score {self._score(unit, score)}, rank {rank}", "kept"
            elif rank and score > 0:
                why = f"not retrieved, no room: score {self._score(unit, score)}, rank {rank}"
            elif rank:
                why = f"not retrieved: nothing in common with the query (rank {rank})"
            else:
                why = "older than the recent window, and there is no query to rank by"
            out.append(
                Decision(
                    index=i,
                    message_id=m.id,
                    action=action,
                    reason=why,
                    score=None if math.isnan(score) else score,
                )
            )
        return out

    def _score(self, unit: Unit, score: float) -> str:
        """The unit's score; for a hybrid, with the BM25 and cosine of its best member."""
        assert self.ranking is not None
        parts = self.ranking.parts
        if not parts:
            return _fmt(score)
        best = max(unit.members, key=lambda i: float(self.ranking.scores[i]))  # type: ignore[union-attr]
        lexical, dense = (float(p.scores[best]) for p in parts)
        return f"{_fmt(score)} (bm25 {_fmt(lexical)}, cosine {dense:.2f})"


def _recent(candidates: list[Unit], share: int) -> tuple[list[Unit], int]:
    """The newest units that fit in `share` tokens, one contiguous run back from the newest."""
    chosen, used = [], 0
    for unit in reversed(candidates):
        if used + unit.cost > share:
            break
        chosen.append(unit)
        used += unit.cost
    return chosen, used


def _fmt(score: float) -> str:
    return f"{score:.3g}" if abs(score) < 1 else f"{score:.1f}"


def _name(embedder: Embedder) -> str:
    return str(getattr(embedder, "name", None) or getattr(embedder, "__name__", "custom"))
