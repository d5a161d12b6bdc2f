"""The summary peers with a real model, offline: the recorded cassette gives the same run.

``tests/peers_scenarios.py`` recorded ``llamaindex_summary`` and ``sk_summarize`` with the
local SmolLM2 server on LoCoMo and tau-bench; replaying the cassette, with no server, gives at
every probe the summary and the summarizer's usage measured then, bills those calls in the
report, and maps each summary back to the originals it replaced.
"""

from __future__ import annotations

import json

import peers_scenarios
import pytest

from ctxlab.providers import Provider


@pytest.fixture(scope="module")
def provider() -> Provider:
    return peers_scenarios.replay_provider()


def test_replay_gives_the_recorded_summaries_and_usage(provider: Provider) -> None:
    expected = json.loads(peers_scenarios.EXPECTED.read_text(encoding="utf-8"))
    got = peers_scenarios.summaries(provider)
    assert got == expected
    assert sum(r["requests"] for r in got) > 0
    for name in peers_scenarios.PEERS:  # each peer wrote real summaries somewhere
        assert any(r["summary"] for r in got if r["strategy"] == name)


def test_replay_bills_the_summaries_and_maps_them_back(provider: Provider) -> None:
    expected = json.loads(peers_scenarios.EXPECTED.read_text(encoding="utf-8"))
    for conv, budgets, probes in peers_scenarios.runs():
        df = peers_scenarios.run(provider, conv, budgets, probes).df
        for name in peers_scenarios.PEERS:
            mine = df[df["strategy"].str.startswith(name)]
            want = [r for r in expected if r["strategy"] == name and r["conversation"] == conv.id]
            assert mine["extra_input_tokens"].sum() == sum(r["input_tokens"] for r in want)
            assert mine["extra_output_tokens"].sum() == sum(r["output_tokens"] for r in want)
            assert (mine["violations_malformed"] == 0).all()  # bookkeeping of the summaries
            for budget in budgets:
                pruned = peers_scenarios.strategy(name, provider).prune(conv, budget)
                summaries = [m for m in pruned.messages if m.is_synthetic]
                folded = [d for d in pruned.decisions if d.action == "summarized"]
                assert {d.into for d in folded} == {s.id for s in summaries}
                if summaries:
                    assert set(summaries[0].meta["summary_of"]) == {d.message_id for d in folded}
