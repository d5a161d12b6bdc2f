"""``violations`` / ``over_budget_tokens``: breaches measured on what a strategy returned.

A careless strategy (drops the system message and the assistant turns that make tool calls,
keeps their results) is counted by `compare` and recounted here independently, row by row;
ctxlab's own strategies show 0 on a sample of every bundled dataset, `keep_all` only over
budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pytest

from ctxlab import Budget, Conversation, Message, datasets
from ctxlab.invariants import required_tokens
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import Violations
from ctxlab.strategies import default_names
from ctxlab.strategies.base import BaseStrategy, Decision, Pruned
from ctxlab.tokens import TokenCounter, get_counter

COUNTER = get_counter()
KINDS = ("over_budget", "orphan_result", "dangling_call", "system_lost", "user_lost", "order")


@dataclass(frozen=True, kw_only=True)
class Careless(BaseStrategy):
    """Keeps the newest messages that fit, but never a system message or a tool call."""

    name: ClassVar[str] = "careless"

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        sent: list[Message] = []
        for m in reversed(conversation.messages):
            if m.role == "system" or (m.role == "assistant" and m.tool_calls):
                continue
            if counter.count_messages([m, *sent]) > budget.available:
                break
            sent.insert(0, m)
        kept = {m.id for m in sent}
        decisions = [
            Decision(
                index=i, message_id=m.id, action="kept" if m.id in kept else "dropped", reason="x"
            )
            for i, m in enumerate(conversation.messages)
        ]
        return Pruned(
            conversation=conversation,
            messages=tuple(sent),
            tokens=counter.count_messages(sent),
            budget=budget,
            strategy=self.label,
            given_decisions=decisions,
        )

    def _check(self, original: Conversation, pruned: Pruned, budget: Budget, c: object) -> None:
        pass  # careless by design


def recount(original: Sequence[Message], sent: Sequence[Message], available: int) -> dict[str, int]:
    """Breaches counted from scratch: orphan results, pins lost, tokens above the budget."""
    called: set[str] = set()
    orphans = 0
    for m in sent:
        called |= {c.id for c in m.tool_calls}
        orphans += m.role == "tool" and m.tool_call_id not in called
    system = next(m for m in original if m.role == "system")
    user = [m for m in original if m.role == "user" and not m.is_tool_output][-1]
    over = max(0, COUNTER.count_messages(sent) - available)
    return {
        "orphan_result": orphans,
        "system_lost": int(system not in sent),
        "user_lost": int(user not in sent),
        "over_budget_tokens": over,
    }


@pytest.mark.parametrize("dataset", ["taubench", "sweagent"])
def test_columns_equal_an_independent_recount(dataset: str) -> None:
    conv = datasets.load(dataset)[0]
    report = compare(
        conv, [Careless()], [1000, 2000, 4000], metrics=[Violations()], progress=False
    )  # fmt: skip
    df = report.df
    assert len(df) > 3
    assert {"violations", "over_budget_tokens", *(f"violations_{k}" for k in KINDS)} <= set(
        df.columns
    )
    seen_orphans = 0
    for row in df.to_dict("records"):
        probe, budget = int(row["probe"]), int(row["budget"])
        prefix = conv.messages[:probe]
        if required_tokens(prefix, COUNTER) > budget:
            assert math.isnan(row["violations"])
            continue
        sent = Careless().prune(conv.prefix(probe), budget, COUNTER).messages
        want = recount(prefix, sent, budget)
        assert row["violations_orphan_result"] == want["orphan_result"]
        assert row["violations_system_lost"] == want["system_lost"] == 1
        assert row["violations_user_lost"] == want["user_lost"]
        assert row["over_budget_tokens"] == want["over_budget_tokens"] == 0
        assert row["violations_dangling_call"] == 0 and row["violations_order"] == 0
        assert row["violations"] == want["orphan_result"] + 1 + want["user_lost"]
        seen_orphans += want["orphan_result"]
    assert seen_orphans > 0  # the data does exercise orphan results


def test_ctxlab_strategies_show_no_violations_keep_all_only_over_budget() -> None:
    convs = [
        datasets.load("taubench")[0],
        datasets.load("sweagent")[0],
        datasets.load("locomo")[0],
        datasets.load("mtbench101")[0],
    ]
    names = [n for n in default_names() if n != "evidence_oracle"]
    report = compare(
        convs,
        names,
        [500, 2000, 8000],
        metrics=[Violations(), "input_tokens"],
        probes="auto",
        progress=False,
    )
    df = report.df.dropna(subset=["violations"])
    mine = df[df["strategy"] != "keep_all"]
    assert set(mine["strategy"]) == set(names) - {"keep_all"}
    assert (mine["violations"] == 0).all() and (mine["over_budget_tokens"] == 0).all()
    keep = df[df["strategy"] == "keep_all"]
    assert (keep["violations"] == keep["violations_over_budget"]).all()
    over = keep[keep["over_budget_tokens"] > 0]
    assert len(over) > 0 and (over["violations_over_budget"] == 1).all()
    assert (over["over_budget_tokens"] == over["input_tokens"] - over["budget"]).all()
