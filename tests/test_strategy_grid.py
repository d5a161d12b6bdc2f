"""Every registered strategy x bundled conversations x budgets from below the system prompt to
above the whole conversation, through `ctxlab.invariants.check`.

`BudgetUnreachableError` must be raised exactly when the first system message plus the newest
user message exceed the budget (`keep_all` ignores budgets and never raises). LoCoMo and
SWE-agent are used whole; tau-bench and MT-Bench-101 through a fixed sample.
"""

from __future__ import annotations

import copy

import pytest
from strategy_helpers import with_questions

from ctxlab import datasets
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.invariants import check, must_keep, required_tokens
from ctxlab.messages import Conversation
from ctxlab.strategies import get_strategy, names, peer_names
from ctxlab.tokens import get_counter

COUNTER = get_counter()
SAMPLE_EVERY = {"locomo": 1, "sweagent": 1, "taubench": 10, "mtbench101": 100}


def _conversations() -> list[Conversation]:
    out: list[Conversation] = []
    for name, step in SAMPLE_EVERY.items():
        out += datasets.load(name)[::step]
    return out


CONVERSATIONS = _conversations()


def budgets(conv: Conversation) -> list[int]:
    """Budgets around every threshold: system prompt, pinned messages, whole conversation."""
    pins = must_keep(conv.messages)
    system = COUNTER.count_messages([conv[pins.system]]) if pins.system is not None else 4
    need = required_tokens(conv.messages, COUNTER)
    whole = COUNTER.count_messages(conv.messages)
    between = [need + (whole - need) * share // 8 for share in (1, 2, 4, 6)]
    points = {1, system - 1, need - 1, need, need + 1, *between, whole - 1, whole, whole + 1000}
    return sorted(p for p in points if p >= 1)


# peers promise nothing: the violations metric measures them (tests/test_peers_langchain.py)
@pytest.mark.parametrize("strategy_name", [n for n in names() if n not in peer_names()])
@pytest.mark.parametrize("conv", CONVERSATIONS, ids=lambda c: f"{c.dataset}:{c.id}")
def test_invariants_hold(strategy_name: str, conv: Conversation) -> None:
    strategy = get_strategy(strategy_name)
    if strategy_name == "evidence_oracle" and not conv.annotations.get("questions"):
        with pytest.raises(UsageError, match="oracle"):
            strategy.prune(conv, 10**6, COUNTER)
        conv = with_questions(conv)
    snapshot = copy.deepcopy(conv.messages)
    need = required_tokens(conv.messages, COUNTER)
    for budget in budgets(conv):
        if need > budget and strategy_name != "keep_all":
            with pytest.raises(BudgetUnreachableError):
                strategy.prune(conv, budget, COUNTER)
            continue
        pruned = strategy.prune(conv, budget, COUNTER)
        check(conv, pruned, budget, COUNTER)
    assert conv.messages == snapshot  # the input is never changed
