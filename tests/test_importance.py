"""The `importance` strategy: pins, tool units, scores in decisions, relevance on LoCoMo."""

from __future__ import annotations

import copy
import math

import pytest

from ctxlab import datasets
from ctxlab.errors import BudgetUnreachableError
from ctxlab.invariants import check
from ctxlab.messages import Conversation, Message
from ctxlab.scoring import Recency, Relevance, Weighted
from ctxlab.strategies import get_strategy
from ctxlab.strategies._tool_units import units_of
from ctxlab.strategies.importance import Importance
from ctxlab.tokens import get_counter

COUNTER = get_counter()


def _tau() -> Conversation:
    return next(c for c in datasets.load("taubench") if c.id == "2-1")


def test_a_pinned_message_is_kept_at_every_budget_that_allows_it() -> None:
    conv = datasets.load("locomo")[0]
    pinned = next(m for m in conv.messages if m.meta["dia_id"] == "D1:3")
    user = [m for m in conv.messages if m.role == "user"][-1]
    floor = COUNTER.count_messages([user])
    with_pin = COUNTER.count_messages([pinned, user])
    strategies = [
        Importance(pin_ids=(pinned.id,)),
        Importance(pin=lambda m: m.meta.get("dia_id") == "D1:3"),
    ]
    for strategy in strategies:
        for budget in range(floor, with_pin + 400, 37):
            pruned = strategy.prune(conv, budget, COUNTER)
            check(conv, pruned, budget, COUNTER)
            assert (pinned in pruned.messages) == (budget >= with_pin), budget
            decision = pruned.decisions[conv.index_of(pinned.id)]
            assert decision.score == math.inf


@pytest.mark.parametrize("dataset", ["taubench", "sweagent"])
def test_invariants_and_whole_tool_units_over_budgets(dataset: str) -> None:
    for conv in datasets.load(dataset)[:6]:
        total = COUNTER.count_messages(conv.messages)
        for share in (0.1, 0.3, 0.6, 1.0):
            budget = max(int(total * share), 50)
            try:
                pruned = Importance().prune(conv, budget, COUNTER)
            except BudgetUnreachableError:
                continue
            check(conv, pruned, budget, COUNTER)
            kept = pruned.kept_ids
            for m in conv.messages:
                if m.tool_calls and m.id in kept:
                    ids = {c.id for c in m.tool_calls}
                    assert all(r.id in kept for r in conv.messages if r.tool_call_id in ids)


def test_scores_are_in_the_decisions_and_the_choice_is_greedy() -> None:
    conv = _tau()
    budget = 2500
    pruned = Importance().prune(conv, budget, COUNTER)
    decisions = pruned.decisions
    assert all(d.score is not None for d in decisions)
    units, _ = units_of(conv.messages, COUNTER.count_many(conv.messages))
    left = budget - pruned.tokens
    low = [u for u in units if decisions[u.start].reason == "score too low for the room"]
    kept = [u for u in units if decisions[u.start].reason == "high score"]
    assert low and kept
    for unit in low:
        # Nothing dropped for its score would still have fitted in what was left...
        assert unit.cost > left
        # ...and a unit shares its score, the best of its members, with all of them.
        assert len({decisions[i].score for i in unit.members}) == 1
    assert max(decisions[u.start].score or 0 for u in kept) >= max(
        decisions[u.start].score or 0 for u in low
    )


def test_relevance_keeps_the_evidence_of_the_newest_question() -> None:
    """A LoCoMo question as the newest turn: importance keeps its evidence far more often."""
    conv = datasets.load("locomo")[0]
    index = {m.meta["dia_id"]: m.id for m in conv.messages}
    questions = [
        q
        for q in conv.annotations["questions"]
        if q["category"] in (1, 4) and q["evidence"] and all(e in index for e in q["evidence"])
    ][:60]
    recall = {"importance": 0.0, "token_window": 0.0}
    for q in questions:
        asked = conv.with_messages([*conv.messages, Message(role="user", content=q["question"])])
        for name in recall:
            kept = get_strategy(name).prune(asked, 1000, COUNTER).kept_ids
            recall[name] += sum(index[e] in kept for e in q["evidence"]) / len(q["evidence"])
    # Measured on the first 60 such questions at 1000 tokens: 0.30 vs 0.025.
    assert recall["importance"] / len(questions) >= 0.2
    assert recall["importance"] >= 4 * recall["token_window"]


def test_custom_scorer_changes_the_choice() -> None:
    conv = datasets.load("locomo")[1]
    newest = Importance(scorer=Recency()).prune(conv, 1500, COUNTER)
    window = get_strategy("token_window").prune(conv, 1500, COUNTER)
    # Recency alone keeps the newest messages, as a token window does.
    assert newest.kept_ids >= window.kept_ids - {conv.messages[0].id}
    mixed = Importance(scorer=Weighted(parts=((Relevance(), 1.0),))).prune(conv, 1500, COUNTER)
    assert mixed.kept_ids != newest.kept_ids
    assert mixed.strategy.startswith("importance(scorer=")


def test_replay_equals_prune_and_input_is_untouched() -> None:
    conv = _tau()
    before = copy.deepcopy(conv)
    probes = list(range(0, len(conv.messages) + 1, 3))
    strategy = get_strategy("importance")
    for k, got in zip(probes, strategy.replay(conv, probes, 2000, COUNTER), strict=True):
        want = strategy.prune(conv.prefix(k), 2000, COUNTER)
        assert got == want and got.decisions == want.decisions
        check(conv.prefix(k), got, 2000, COUNTER)
    assert conv == before


def test_budget_unreachable_only_for_system_plus_newest_user() -> None:
    conv = _tau()
    need = COUNTER.count_messages(
        [conv.messages[0], [m for m in conv.messages if m.role == "user"][-1]]
    )
    with pytest.raises(BudgetUnreachableError):
        Importance().prune(conv, need - 1, COUNTER)
    pruned = Importance().prune(conv, need, COUNTER)
    check(conv, pruned, need, COUNTER)
    assert len(pruned.messages) == 2


def test_open_tool_call_at_the_end_is_not_sent() -> None:
    conv = _tau()
    k = next(i for i, m in enumerate(conv.messages) if m.tool_calls) + 1
    prefix = conv.prefix(k)
    pruned = Importance().prune(prefix, 10_000, COUNTER)
    check(prefix, pruned, 10_000, COUNTER)
    assert pruned.decisions[-1].action == "dropped"
    assert pruned.decisions[-1].reason == "tool call awaiting its results"
