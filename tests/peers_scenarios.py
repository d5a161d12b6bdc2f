"""The summary peers run on bundled data with the local model, and their cassette.

``llamaindex_summary`` and ``sk_summarize`` (SmolLM2-135M behind each library's model
interface, replies of at most 48 tokens at temperature 0) through `compare` on:

- the first three sessions of LoCoMo's ``conv-26`` at a 600-token budget, probed at each
  session end (the scenario of ``tests/llm_scenarios.py``);
- the first two tau-bench conversations at 2,000 and 4,000 tokens, probed before each
  assistant turn.

Record the cassette again against the local llama.cpp server (needs the ``local`` extra) with::

    python tests/peers_scenarios.py record

It writes ``data/cassettes/peers_summaries_smollm2.jsonl`` (the HTTP exchanges) and
``peers_summaries_smollm2.expected.json`` (per strategy, conversation, budget and probe: the
summary sent and the summarizer's usage there), which ``tests/test_peers_cassette.py`` replays
offline, with no server.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import llm_scenarios

from ctxlab import datasets
from ctxlab.lab.harness import compare
from ctxlab.lab.report import Report
from ctxlab.messages import Conversation
from ctxlab.providers import Cassette, Provider, get_provider
from ctxlab.strategies import get_strategy
from ctxlab.strategies.base import BaseStrategy

CASSETTES = llm_scenarios.CASSETTES
CASSETTE = CASSETTES / "peers_summaries_smollm2.jsonl"
EXPECTED = CASSETTES / "peers_summaries_smollm2.expected.json"
PEERS = ("llamaindex_summary", "sk_summarize")
#: (conversation, budgets, probes) of each run
Run = tuple[Conversation, list[int], list[int]]


def runs() -> list[Run]:
    """The conversations, budgets and probes of the scenario."""
    locomo = llm_scenarios.conversation()
    out: list[Run] = [(locomo, [600], llm_scenarios.probes(locomo))]
    for conv in datasets.load("taubench")[:2]:
        turns = [k for k, m in enumerate(conv.messages) if m.role == "assistant" and k > 0]
        out.append((conv, [2000, 4000], [*turns, len(conv.messages)]))
    return out


def strategy(name: str, provider: Provider) -> BaseStrategy:
    """The summary peer `name` summarizing with `provider` (short replies, temperature 0)."""
    return get_strategy(name, provider=provider, max_tokens=48)


def run(provider: Provider, conv: Conversation, budgets: list[int], probes: list[int]) -> Report:
    """Both summary peers on one conversation through `compare`, priced as gpt-4o-mini."""
    return compare(
        [conv],
        [strategy(name, provider) for name in PEERS],
        budgets,
        metrics=["input_tokens", "extra_input_tokens", "extra_output_tokens", "violations"],
        probes=probes,
        model="gpt-4o-mini",
        progress=False,
    )


def summaries(provider: Provider) -> list[dict[str, Any]]:
    """Per strategy, conversation, budget and probe: the summary sent and the usage there."""
    out = []
    for conv, budgets, probes in runs():
        for name in PEERS:
            for budget in budgets:
                replay = strategy(name, provider).replay(conv, probes, budget)
                for k, pruned in zip(probes, replay, strict=True):
                    summary = [m.text for m in pruned.messages if m.is_synthetic]
                    u = pruned.extra_usage
                    out.append({
                        "strategy": name, "conversation": conv.id, "budget": budget, "probe": k,
                        "summary": summary[0] if summary else None, "tokens": pruned.tokens,
                        "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                        "requests": u.requests,
                    })  # fmt: skip
    return out


def replay_provider() -> Provider:
    """The local model as recorded in the cassette; no server needed."""
    return get_provider(
        f"openai-compatible:smollm2@{llm_scenarios.OFFLINE_URL}",
        cassette=Cassette(CASSETTE, mode="replay"),
    )


def record() -> None:
    """Run the scenario against a fresh local server and write the cassette and expectations."""
    from ctxlab.providers.local_llm import LocalLLMServer

    with LocalLLMServer() as server:
        tape = Cassette(CASSETTE, mode="record")
        provider = get_provider(server.provider_spec, cassette=tape, timeout=600)
        start = time.perf_counter()
        result = summaries(provider)
        took = time.perf_counter() - start
        provider.close()
    text = json.dumps(result, indent=1, ensure_ascii=False) + "\n"
    Path(EXPECTED).write_text(text, encoding="utf-8")
    calls = sum(r["requests"] for r in result)
    print(f"{calls} summarizer calls in {took:.1f} s ({took / max(calls, 1):.1f} s per call)")


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python tests/peers_scenarios.py record")
    record()
