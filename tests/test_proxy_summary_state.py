"""The proxy resumes a session's running summary from its store, across turns and restarts.

Real processes: ``ctxlab serve`` (uvicorn) in front of the stub upstream, with `summarize` at
800 tokens; the user lines are LoCoMo's first sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from proxy_support import ALICE, ProxyProcess, Stub, start_proxy
from session_support import locomo_pairs

import ctxlab
from ctxlab.live import sent_ids
from ctxlab.messages import Conversation
from ctxlab.strategies import get_strategy
from ctxlab.tokens import get_counter

BUDGET = 800


def export(proxy: ProxyProcess, sid: str, path: Path) -> Conversation:
    with proxy.client(ALICE) as c:
        r = c.get(f"/v1/sessions/{sid}/export")
    assert r.status_code == 200, r.text
    path.write_bytes(r.content)
    (conv,) = ctxlab.load(path)
    return conv


def replies(conv: Conversation) -> list[Any]:
    return [m for m in conv.messages if m.role == "assistant"]


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"], indirect=True)
def test_turns_through_the_proxy_resume_the_summary(
    stub_upstream: Stub, tmp_path: Path, data_dir: Path, stores: Any
) -> None:
    lines = [text for text, _ in locomo_pairs(data_dir)[:41]]
    # A generous route timeout: this machine is shared, and the turn includes the pruning.
    proxy = start_proxy(
        tmp_path,
        stub_upstream,
        store=stores.url,
        strategy="summarize",
        budget=BUDGET,
        stub_timeout=30.0,
    )
    try:
        for text in lines[:40]:
            assert proxy.chat(ALICE, text, "sum").status_code == 200
        proxy.stop()
        proxy.start()  # a restarted server resumes the stored state, it does not redo it
        assert proxy.chat(ALICE, lines[40], "sum").status_code == 200
        conv = export(proxy, "sum", tmp_path / "sum.jsonl")
    finally:
        proxy.stop()
    sent = replies(conv)
    assert [r.meta["resumed_at"] for r in sent] == [0] + [2 * i - 1 for i in range(1, 41)]
    assert not any("state_rejected" in r.meta for r in sent)
    # Each turn sent exactly what a fresh prune of its history gives (same summary, same ids).
    strategy, counter = get_strategy("summarize"), get_counter()
    users = [i for i, m in enumerate(conv.messages) if m.role == "user"]
    for i, reply in zip(users, sent, strict=True):
        prefix = Conversation(id="sum", messages=conv.messages[: i + 1])
        fresh = strategy.prune(prefix, BUDGET, counter)
        assert sent_ids(conv.messages, reply) == [m.id for m in fresh.messages]
        summary = next((m for m in fresh.messages if m.meta.get("summary_of")), None)
        assert reply.meta.get("summary_id") == (summary.id if summary else None)
        if summary is not None:
            assert conv.annotations["summaries"][summary.id] == summary.text
    assert sum("summary_id" in r.meta for r in sent) > 20
