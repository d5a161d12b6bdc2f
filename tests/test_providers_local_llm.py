"""The OpenAI-compatible adapter against the real local llama.cpp server (SmolLM2-135M)."""

from __future__ import annotations

import asyncio

from ctxlab.messages import Message
from ctxlab.providers import Completion, TextDelta, get_provider
from ctxlab.providers.local_llm import LocalLLMServer

PROMPT = [
    Message(role="system", content="You answer in one short sentence."),
    Message(role="user", content="What is the capital of France?"),
]


def test_complete_and_stream_against_llama_cpp(local_llm: LocalLLMServer) -> None:
    p = get_provider(local_llm.provider_spec, timeout=120)
    done = p.complete(PROMPT, max_tokens=16, temperature=0, seed=1)
    assert done.text.strip()
    assert done.finish_reason in ("stop", "length")
    # llama.cpp reports usage: nothing estimated, prompt tokens counted by the server.
    assert not done.usage.estimated and done.usage.input_tokens > 10
    assert 0 < done.usage.output_tokens <= 16
    events = list(p.stream(PROMPT, max_tokens=16, temperature=0, seed=1))
    final = events[-1]
    assert isinstance(final, Completion)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == final.text
    assert final.text == done.text  # temperature 0 and a seed: the same reply
    p.close()


def test_async_against_llama_cpp(local_llm: LocalLLMServer) -> None:
    async def run() -> Completion:
        async with get_provider(local_llm.provider_spec, timeout=120) as p:
            return await p.acomplete(PROMPT, max_tokens=8, temperature=0)

    done = asyncio.run(run())
    assert done.text.strip() and done.usage.output_tokens <= 8
