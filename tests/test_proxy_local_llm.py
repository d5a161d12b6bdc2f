"""End to end: the official openai client -> ctxlab serve -> the local llama.cpp server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from proxy_support import ALICE, ProxyProcess, Stub, free_port
from session_support import locomo_pairs

import ctxlab
from ctxlab.providers.local_llm import LocalLLMServer


@pytest.fixture
def local_proxy(local_llm: LocalLLMServer, tmp_path: Path) -> Iterator[ProxyProcess]:
    port = free_port()
    config = f"""
[server]
host = "127.0.0.1"
port = {port}
store = "sqlite:///{tmp_path / "local.db"}"

[[keys]]
name = "alice"
key = "env:PROXY_TEST_ALICE"

[[routes]]
prefix = "local/"
provider = "openai-compatible"
base_url = "{local_llm.base_url}"
timeout = 120.0

[memory]
strategy = "token_window"
budget = 1000
params = {{}}
"""
    proxy = ProxyProcess(tmp_path, config, port).start()
    yield proxy
    proxy.stop()


def test_a_session_through_the_proxy_to_llama_cpp(
    local_proxy: ProxyProcess, local_llm: LocalLLMServer
) -> None:
    import openai  # the dev extra installs it

    model = f"local/{local_llm.model}"
    with openai.OpenAI(
        base_url=local_proxy.url + "/v1",
        api_key=ALICE,
        default_headers={"X-Session-Id": "llama"},
        max_retries=0,
        timeout=120,
    ) as client:
        first = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "My favourite colour is green."}],
            max_tokens=12,
            temperature=0,
        )
        with client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "What is my favourite colour?"}],
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            chunks = list(stream)
    assert first.choices[0].message.content
    assert first.usage is not None and first.usage.completion_tokens > 0
    second_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert second_text and usage is not None
    # The second request carried the first turn: its prompt is longer than the first one's.
    assert usage.prompt_tokens > first.usage.prompt_tokens
    with local_proxy.client(ALICE) as c:
        stored = c.get("/v1/sessions/llama").json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1]["content"] == first.choices[0].message.content
    assert stored[3]["content"] == second_text


def test_the_proxy_calls_its_llm_summarizer_once_per_fold(
    local_llm: LocalLLMServer, stub_upstream: Stub, tmp_path: Path, data_dir: Path
) -> None:
    # Replies come from the stub; the running summary is written by llama.cpp through the
    # proxy's own route (`[memory.summarizer]`) and resumed from the store at every turn.
    port = free_port()
    config = f"""
[server]
host = "127.0.0.1"
port = {port}
store = "sqlite:///{tmp_path / "summaries.db"}"

[[keys]]
name = "alice"
key = "env:PROXY_TEST_ALICE"

[[routes]]
prefix = "stub/"
provider = "openai-compatible"
base_url = "{stub_upstream.base_url}"
timeout = 600.0

[[routes]]
prefix = "local/"
provider = "openai-compatible"
base_url = "{local_llm.base_url}"
timeout = 600.0

[memory]
strategy = "summarize"
budget = 800

[memory.summarizer]
model = "local/{local_llm.model}"
"""
    proxy = ProxyProcess(tmp_path, config, port).start()
    try:
        auth = {"authorization": f"Bearer {ALICE}", "x-session-id": "folds"}
        # A turn that folds waits for the summarizer: minutes on a busy machine.
        with httpx.Client(base_url=proxy.url, headers=auth, timeout=600) as c:
            for text, _ in locomo_pairs(data_dir)[:40]:
                body = {"model": "stub/echo", "messages": [{"role": "user", "content": text}]}
                assert c.post("/v1/chat/completions", json=body).status_code == 200
            r = c.get("/v1/sessions/folds/export")
    finally:
        proxy.stop()
    (tmp_path / "folds.jsonl").write_bytes(r.content)
    (conv,) = ctxlab.load(tmp_path / "folds.jsonl")
    replies = [m for m in conv.messages if m.role == "assistant"]
    calls = [(r.meta.get("extra_usage") or {}).get("requests", 0) for r in replies]
    tokens = [(r.meta.get("extra_usage") or {}).get("input_tokens", 0) for r in replies]
    changes = sum(
        1
        for a, b in zip([None, *replies], replies, strict=False)
        if b.meta.get("summary_id") != (a.meta.get("summary_id") if a else None)
    )
    print(f"\nproxy summarizer calls: {sum(calls)}, input tokens: {sum(tokens)}")
    assert all(r.meta["resumed_at"] > 0 for r in replies[1:])
    previous = None
    for r, n in zip(replies, calls, strict=True):
        assert n == 0 or r.meta.get("summary_id") != previous  # a call only when it folds
        previous = r.meta.get("summary_id")
    assert changes >= 5 and sum(calls) <= 2 * changes + 2 and sum(calls) < 60
    assert len(conv.annotations["summaries"]) >= changes - 1
