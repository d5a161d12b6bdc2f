"""Importance scorers: each one's definition, their combination, and relevance on LoCoMo."""

from __future__ import annotations

import math
import statistics

import pytest

from ctxlab import datasets
from ctxlab.errors import UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.scoring import (
    KeyDensity,
    Pins,
    Recency,
    Relevance,
    RoleWeights,
    Scorer,
    Weighted,
    bm25_scores,
    default_scorer,
    terms,
)
from ctxlab.tokens import get_counter

COUNTER = get_counter()


def _conv(*texts: tuple[str, str]) -> Conversation:
    return Conversation(
        id="t",
        messages=tuple(Message(role=r, content=t) for r, t in texts),  # type: ignore[arg-type]
    )


def test_terms_lowercase_and_drop_stopwords() -> None:
    assert terms("The Cat's hat, and THE dog") == ("cat", "hat", "dog")


def test_bm25_scores_match_only_documents_with_query_terms() -> None:
    docs = [terms("pottery class on friday"), terms("camping trip"), terms("pottery pottery")]
    scores = bm25_scores(docs, terms("pottery"))
    assert scores[1] == 0.0
    assert scores[0] > 0 and scores[2] > scores[0]  # more occurrences in a shorter document
    assert bm25_scores(docs, []) == [0.0, 0.0, 0.0]
    assert bm25_scores([], terms("x")) == []


def test_bm25_weights_scale_linearly() -> None:
    docs = [terms("red apple"), terms("green apple"), terms("red car")]
    one = bm25_scores(docs, {"red": 1.0})
    two = bm25_scores(docs, {"red": 2.0})
    assert two == pytest.approx([2 * s for s in one])


def test_recency_halves_every_half_life() -> None:
    conv = _conv(*[("user", str(i)) for i in range(9)])
    scores = Recency(half_life=4).score(conv, COUNTER)
    assert scores[-1] == 1.0
    assert scores[-5] == pytest.approx(0.5)
    assert scores[0] == pytest.approx(0.25)
    with pytest.raises(UsageError):
        Recency(half_life=0)


def test_role_weights_treat_tagged_observations_as_tool() -> None:
    conv = Conversation(
        id="t",
        messages=(
            Message(role="system", content="s"),
            Message(role="user", content="u"),
            Message(role="user", content="obs", meta={"tool_output": True}),
            Message(role="assistant", content="a"),
        ),
    )
    assert RoleWeights().score(conv, COUNTER) == [1.0, 0.7, 0.3, 0.5]
    assert RoleWeights(weights={"user": 1.0}).score(conv, COUNTER) == [0.0, 1.0, 0.0, 0.0]


def test_relevance_ranks_the_matching_message_first() -> None:
    conv = _conv(
        ("user", "I adopted a dog named Oscar last spring"),
        ("assistant", "The weather was sunny"),
        ("user", "We went camping near the lake"),
        ("user", "What is the name of your dog?"),
    )
    scores = Relevance().score(conv, COUNTER)
    assert scores[-1] == 1.0  # the query itself
    assert scores[0] == 1.0 and scores[1] == 0.0 and scores[2] == 0.0


def test_relevance_with_an_explicit_query() -> None:
    conv = _conv(("user", "camping near the lake"), ("user", "pottery class"))
    assert Relevance(query="lake camping").score(conv, COUNTER) == [1.0, 0.0]


def test_relevance_finds_locomo_evidence_for_the_newest_question() -> None:
    """A LoCoMo question asked as the newest user turn: its evidence turn ranks near the top."""
    conv = datasets.load("locomo")[0]
    index = {m.meta["dia_id"]: i for i, m in enumerate(conv.messages)}
    questions = [
        q
        for q in conv.annotations["questions"]
        if q["category"] in (1, 4) and len(q["evidence"]) == 1
    ][:40]
    ranks = []
    for q in questions:
        asked = conv.with_messages([*conv.messages, Message(role="user", content=q["question"])])
        scores = Relevance().score(asked, COUNTER)[:-1]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        ranks.append(order.index(index[q["evidence"][0]]))
    top5 = len(conv.messages) // 20
    # Measured: median rank 5.5 of 419 turns, 27 of 40 evidence turns in the top 5%.
    assert statistics.median(ranks) < top5
    assert sum(r <= top5 for r in ranks) >= len(ranks) // 2


def test_key_density_favours_messages_full_of_identifiers() -> None:
    conv = _conv(
        ("assistant", "I edited src/app.py and fixed ValueError in parse_config at line 1234"),
        ("assistant", "I think that went quite well overall, thank you for asking"),
    )
    dense, plain = KeyDensity().score(conv, COUNTER)
    assert dense == 1.0 and plain == 0.0


def test_pins_by_id_and_predicate() -> None:
    conv = _conv(("user", "a"), ("assistant", "b"), ("user", "c"))
    first = conv.messages[0].id
    by_id = Pins(ids=frozenset({first})).score(conv, COUNTER)
    assert by_id == [math.inf, 0.0, 0.0]
    by_role = Pins(predicate=lambda m: m.role == "assistant").score(conv, COUNTER)
    assert by_role == [0.0, math.inf, 0.0]
    with pytest.raises(UsageError):
        Pins(ids=first)  # type: ignore[arg-type]


def test_weighted_is_a_weighted_mean_and_keeps_pins_infinite() -> None:
    conv = _conv(("user", "a"), ("assistant", "b"))
    mix = Weighted(parts=((Recency(half_life=1), 3.0), (RoleWeights(), 1.0)))
    scores = mix.score(conv, COUNTER)
    assert scores == pytest.approx([(3 * 0.5 + 0.7) / 4, (3 * 1.0 + 0.5) / 4])
    pinned = Weighted(parts=((Recency(), 1.0), (Pins(ids=frozenset({conv.messages[0].id})), 1.0)))
    assert pinned.score(conv, COUNTER)[0] == math.inf
    with pytest.raises(UsageError):
        Weighted(parts=((Recency(), 0.0),))
    with pytest.raises(UsageError):
        Weighted(parts=((Recency(), -1.0), (RoleWeights(), 2.0)))


def test_default_scorer_is_deterministic_and_bounded_on_real_data() -> None:
    scorer = default_scorer()
    assert isinstance(scorer, Scorer)
    for name in ("taubench", "sweagent"):
        conv = datasets.load(name)[1]
        first = scorer.score(conv, COUNTER)
        assert first == scorer.score(conv, COUNTER)
        assert len(first) == len(conv.messages)
        assert all(0.0 <= s <= 1.0 for s in first)
