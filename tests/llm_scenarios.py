"""The `summarize` + LLM summarizer run on one bundled LoCoMo conversation, and its cassette.

The scenario is small on purpose (SmolLM2-135M on one thread takes seconds per summary): the
first three sessions of ``conv-26`` at a 600-token budget, probed at each session end.

Record the cassette again against the local llama.cpp server (needs the ``local`` extra) with::

    python tests/llm_scenarios.py record

It writes ``data/cassettes/locomo_summarize_smollm2.jsonl`` (the HTTP exchanges) and
``locomo_summarize_smollm2.expected.json`` (each probe's summary and summarizer usage), which
`tests/test_llm_summarizer.py` and ``notebooks/05_summarization_with_an_llm.ipynb`` replay
offline, with no server. The cassette lives beside the bundled data, not under ``tests/``,
because the notebooks read it too.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ctxlab import datasets
from ctxlab.lab.harness import compare
from ctxlab.lab.report import Report
from ctxlab.messages import Conversation
from ctxlab.providers import Cassette, Provider, get_provider
from ctxlab.strategies.summarize import Summarize
from ctxlab.summarizers.llm import LLMSummarizer

CASSETTES = Path(__file__).resolve().parent.parent / "data" / "cassettes"
CASSETTE = CASSETTES / "locomo_summarize_smollm2.jsonl"
EXPECTED = CASSETTES / "locomo_summarize_smollm2.expected.json"
#: The base URL used when replaying: nothing listens there, the cassette answers.
OFFLINE_URL = "http://127.0.0.1:9/v1"
BUDGET = 600
SESSIONS = 3


def conversation(sessions: int = SESSIONS) -> Conversation:
    """The first `sessions` sessions of LoCoMo's ``conv-26``."""
    conv = next(c for c in datasets.load("locomo") if c.id == "conv-26")
    k = max(i for i, m in enumerate(conv.messages) if m.meta["session"] <= sessions) + 1
    return conv.prefix(k)


def probes(conv: Conversation) -> list[int]:
    """One probe after each session."""
    msgs = conv.messages
    ends = [
        i + 1
        for i in range(len(msgs) - 1)
        if msgs[i].meta["session"] != msgs[i + 1].meta["session"]
    ]
    return [*ends, len(conv.messages)]


def strategy(provider: Provider) -> Summarize:
    """`summarize` with the LLM summarizer, short summaries."""
    return Summarize(summarizer=LLMSummarizer(provider, max_summary_tokens=80))


def run(provider: Provider) -> Report:
    """The scenario through `compare`, priced as gpt-4o-mini."""
    conv = conversation()
    return compare(
        [conv],
        [strategy(provider)],
        [BUDGET],
        metrics=["input_tokens", "extra_input_tokens", "extra_output_tokens", "cost_usd"],
        probes=probes(conv),
        model="gpt-4o-mini",
        progress=False,
    )


def summaries(provider: Provider) -> list[dict[str, Any]]:
    """Per probe: the summary text sent and the summarizer's usage at that probe."""
    conv = conversation()
    out = []
    for pruned in strategy(provider).replay(conv, probes(conv), BUDGET):
        summary = [m.text for m in pruned.messages if m.is_synthetic]
        u = pruned.extra_usage
        out.append(
            {
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


def record() -> None:
    """Run the scenario against a fresh local server and write the cassette and expectations."""
    from ctxlab.providers.local_llm import LocalLLMServer

    CASSETTES.mkdir(parents=True, exist_ok=True)
    with LocalLLMServer() as server:
        tape = Cassette(CASSETTE, mode="record")
        provider = get_provider(server.provider_spec, cassette=tape, timeout=600)
        start = time.perf_counter()
        result = summaries(provider)
        took = time.perf_counter() - start
        provider.close()
    EXPECTED.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    calls = sum(r["requests"] for r in result)
    print(f"{calls} summarizer calls in {took:.1f} s ({took / max(calls, 1):.1f} s per call)")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python tests/llm_scenarios.py record")
    record()
