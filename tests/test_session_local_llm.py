"""`Session` end to end against the real local llama.cpp server (SmolLM2-135M).

Skipped when the local LLM is not installed, unless CI requires it (see local_llm_fixture).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from session_support import locomo_pairs

from ctxlab.live import sent_ids
from ctxlab.live.session import Session
from ctxlab.messages import Message
from ctxlab.providers import Completion, get_provider
from ctxlab.providers.scripted import ScriptedProvider
from ctxlab.strategies import get_strategy
from ctxlab.summarizers.llm import LLMSummarizer


def test_session_against_the_local_server(local_llm: Any) -> None:
    provider = get_provider(local_llm.provider_spec)
    with Session(
        provider,
        "token_window",
        300,
        store="memory",
        system="You are a helpful assistant. Answer in one short sentence.",
    ) as session:
        first = session.send("My name is Ada. What is the capital of France?", max_tokens=24)
        assert first.text.strip() and first.usage.output_tokens > 0
        streamed = "".join(session.stream("Say hello.", max_tokens=16))

        async def last_turn() -> Completion:
            try:
                return await session.asend("What is my name?", max_tokens=24)
            finally:
                await provider.aclose()  # its async client belongs to this event loop

        third = asyncio.run(last_turn())
        # Later calls carry the earlier turns: the server bills more prompt tokens.
        assert third.usage.total_input_tokens > first.usage.total_input_tokens
        history = session.history
        assert [m.role for m in history] == ["system"] + ["user", "assistant"] * 3
        assert history[4].text == streamed and streamed.strip()
        assert history[-1].text == third.text
        assert history[2].meta["model"] and history[2].meta["usage"]["output_tokens"] > 0
        pruned = session.last_pruned
        assert pruned is not None and pruned.tokens <= 300
        assert sent_ids(history, history[-1]) == [m.id for m in pruned.messages]


def summarizer_calls(replies: list[Message]) -> list[tuple[int, int]]:
    """(summarizer calls, summarizer input tokens) of each turn, from the replies' meta."""
    out = []
    for r in replies:
        extra = r.meta.get("extra_usage") or {}
        out.append((extra.get("requests", 0), extra.get("input_tokens", 0)))
    return out


def test_sixty_turns_call_the_summarizer_once_per_fold(local_llm: Any, data_dir: Path) -> None:
    # 60 LoCoMo user turns at 800 tokens, the summary written by the local llama.cpp server
    # (the replies are LoCoMo's own, so only the summarizer needs the LLM). Before the walk was
    # stored with the turns, every turn re-summarized the whole history: 128 calls here.
    pairs = locomo_pairs(data_dir)[:60]
    llm = get_provider(local_llm.provider_spec)
    strategy = get_strategy("summarize", summarizer=LLMSummarizer(llm))
    try:
        with Session(ScriptedProvider([r for _, r in pairs]), strategy, 800, store="memory") as s:
            for text, _ in pairs:
                s.send(text)
            replies = [m for m in s.history if m.role == "assistant"]
            state = json.loads(s.store.load_state(s.key) or "{}")
    finally:
        llm.close()
    calls = summarizer_calls(replies)
    total, tokens = sum(c for c, _ in calls), sum(t for _, t in calls)
    print(f"\nsummarizer calls: {total}, input tokens: {tokens}, folds: {state['folds']}")
    assert all(r.meta["resumed_at"] > 0 for r in replies[1:])
    # A turn calls the summarizer only when it folds (its summary changes), at most for the
    # fold and one re-compaction: calls grow with the folds, not with turns x folds.
    previous = None
    for r, (n, _) in zip(replies, calls, strict=True):
        changed = r.meta.get("summary_id") != previous
        assert n == 0 or changed, r.meta
        assert n <= 2
        previous = r.meta.get("summary_id")
    assert state["folds"] >= 5 and total <= 2 * state["versions"] <= 4 * state["folds"]
    assert total < 60
