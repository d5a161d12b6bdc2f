"""`replay` gives exactly what `prune` gives on every prefix, and stays compact."""

from __future__ import annotations

import pytest
from strategy_helpers import NEEDS_MODEL, built, prepared

from ctxlab import datasets
from ctxlab.errors import BudgetUnreachableError
from ctxlab.messages import Conversation
from ctxlab.strategies import get_strategy, names
from ctxlab.strategies.base import Pruned
from ctxlab.tokens import get_counter

COUNTER = get_counter()


def _samples() -> list[Conversation]:
    tau = max(datasets.load("taubench")[:20], key=lambda c: len(c.messages))
    swe = next(c for c in datasets.load("sweagent") if c.id == "i_got_id_demo")
    fc = next(c for c in datasets.load("sweagent") if c.id == "function_calling_simple")
    locomo = datasets.load("locomo")[1].prefix(150)
    return [tau, swe, fc, locomo]


SAMPLES = _samples()


def outcomes(results, usage: bool = True) -> list[tuple]:
    return [
        (r.messages, r.tokens, r.decisions, r.extra_usage if usage else None,
         r.conversation.messages)
        for r in results
    ]  # fmt: skip


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("conv", SAMPLES, ids=lambda c: f"{c.dataset}:{c.id}")
def test_replay_equals_prune_on_every_prefix(name: str, conv: Conversation) -> None:
    strategy = built(name)
    conv = prepared(name, conv)
    whole = COUNTER.count_messages(conv.messages)
    for share in (0.35, 0.8):
        budget = int(whole * share)
        probes = range(len(conv.messages) + 1)
        expected: list[Pruned] = []
        for k in probes:
            try:
                expected.append(strategy.prune(conv.prefix(k), budget, COUNTER))
            except BudgetUnreachableError:
                break
        got: list[Pruned] = []
        try:
            got.extend(strategy.replay(conv, probes, budget, COUNTER))
        except BudgetUnreachableError:
            assert len(got) == len(expected) < len(conv.messages) + 1
        # a model's calls: prune reports all of them, a replay's probe those made there
        usage = name not in NEEDS_MODEL
        assert outcomes(got, usage) == outcomes(expected, usage)


@pytest.mark.parametrize(
    "name", ["keep_all", "token_window", "sliding_window", "head_tail", "mask_tool_outputs"]
)
def test_a_long_replay_builds_no_decisions_until_asked(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTXLAB_DEBUG", raising=False)  # debug checks read every decision
    conv = datasets.load("locomo")[3]
    probes = range(1, len(conv.messages) + 1)
    results = list(get_strategy(name).replay(conv, probes, 4000, COUNTER))
    assert len(results) == len(conv.messages) > 500
    assert not any("decisions" in r.__dict__ for r in results)
    assert [d.index for d in results[-1].decisions] == list(range(len(conv.messages)))
