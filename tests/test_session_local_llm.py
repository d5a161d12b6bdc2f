"""`Session` end to end against the real local llama.cpp server (SmolLM2-135M).

Skipped when the local LLM is not installed, unless CI requires it (see local_llm_fixture).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ctxlab.live.session import Session
from ctxlab.providers import Completion, get_provider


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
        assert list(history[-1].meta["sent"]) == [m.id for m in pruned.messages]
