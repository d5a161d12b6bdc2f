"""``langchain_summarize`` with SmolLM2 on a few bundled conversations, and its cassette.

The scenario is small on purpose (SmolLM2-135M on one thread takes tens of seconds per
LangChain summary prompt): one tau-bench run, one SWE-agent run and one LoCoMo conversation,
each probed at its end, at 2,000 and 4,000 tokens. LangChain shows the model at most 1,000
(approximate) tokens of what it summarizes, so its prompt fits SmolLM2's 4,096-token window.

Record the cassette again against the local llama.cpp server (needs the ``local`` extra) with::

    python tests/peer_scenarios.py record

It writes ``data/cassettes/langchain_summarize_smollm2.jsonl`` (the HTTP exchanges) and
``langchain_summarize_smollm2.expected.json`` (each cell's summary and usage), which
`tests/test_peers_langchain_summarize.py` and
``notebooks/10_your_framework_vs_the_alternatives.ipynb`` replay offline, with no server.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ctxlab import datasets
from ctxlab.messages import Conversation
from ctxlab.providers import Cassette, Provider, get_provider
from ctxlab.strategies import get_strategy
from ctxlab.strategies.base import BaseStrategy

CASSETTES = Path(__file__).resolve().parent.parent / "data" / "cassettes"
CASSETTE = CASSETTES / "langchain_summarize_smollm2.jsonl"
EXPECTED = CASSETTES / "langchain_summarize_smollm2.expected.json"
#: The base URL used when replaying: nothing listens there, the cassette answers.
OFFLINE_URL = "http://127.0.0.1:9/v1"
BUDGETS = [2000, 4000]
PARAMS: dict[str, Any] = {"trim_tokens_to_summarize": 1000, "max_summary_tokens": 128}


def conversations() -> list[Conversation]:
    """tau-bench's first run, SWE-agent's second (pydicom), LoCoMo's conv-26."""
    return [
        datasets.load("taubench")[0],
        datasets.load("sweagent")[1],
        datasets.load("locomo")[0],
    ]


def strategy(provider: Provider) -> BaseStrategy:
    """`langchain_summarize` with the provider writing LangChain's summaries."""
    return get_strategy("langchain_summarize", provider=provider, **PARAMS)


def summaries(provider: Provider) -> list[dict[str, Any]]:
    """Per conversation and budget: the summary sent and the summarizer's usage."""
    out = []
    for conv in conversations():
        for budget in BUDGETS:
            pruned = strategy(provider).prune(conv, budget)
            summary = [m.text for m in pruned.messages if m.is_synthetic]
            u = pruned.extra_usage
            out.append(
                {
                    "conversation": f"{conv.dataset}:{conv.id}",
                    "budget": budget,
                    "summary": summary[0] if summary else None,
                    "tokens": pruned.tokens,
                    "input_tokens": u.input_tokens,
                    "output_tokens": u.output_tokens,
                    "requests": u.requests,
                }
            )
    return out


def replay_provider() -> Provider:
    """The local model as recorded in the cassette; no server needed."""
    return get_provider(
        f"openai-compatible:smollm2@{OFFLINE_URL}", cassette=Cassette(CASSETTE, mode="replay")
    )


def record(base_url: str | None = None) -> None:
    """Run the scenario against a local server and write the cassette and expectations.

    Args:
        base_url: a server already running (``ctxlab local-llm``); None starts one.
    """
    from ctxlab.providers.local_llm import LocalLLMServer

    CASSETTES.mkdir(parents=True, exist_ok=True)
    tape = Cassette(CASSETTE, mode="record")
    start = time.perf_counter()
    if base_url is None:
        with LocalLLMServer() as server:
            provider = get_provider(server.provider_spec, cassette=tape, timeout=900)
            result = summaries(provider)
            provider.close()
    else:
        provider = get_provider(f"openai-compatible:smollm2@{base_url}", cassette=tape, timeout=900)
        result = summaries(provider)
        provider.close()
    took = time.perf_counter() - start
    EXPECTED.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    calls = sum(r["requests"] for r in result)
    print(f"{calls} summarizer calls in {took:.1f} s ({took / max(calls, 1):.1f} s per call)")


if __name__ == "__main__":
    if sys.argv[1:2] != ["record"] or len(sys.argv) > 3:
        sys.exit("usage: python tests/peer_scenarios.py record [BASE_URL]")
    record(sys.argv[2] if len(sys.argv) == 3 else None)
