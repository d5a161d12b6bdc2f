"""The proxy as a real uvicorn process in front of the stub upstream (memory store).

One proxy serves the whole module; every test uses its own session ids and message markers,
so tests do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_support import ALICE, BOB, CAROL, DAVE, ERIN, ProxyProcess, Stub, start_proxy

import ctxlab
from ctxlab.formats.openai_chat import from_openai
from ctxlab.messages import Conversation
from ctxlab.strategies import get_strategy
from ctxlab.tokens import get_counter

BUDGET = 150


@pytest.fixture(scope="module")
def proxy(stub_upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("proxy")
    server = start_proxy(
        workdir,
        stub_upstream,
        "memory",
        budget=BUDGET,
        extra_server="max_request_bytes = 20000",
    )
    yield server
    server.stop()


def marker() -> str:
    return uuid.uuid4().hex[:10]


def sent_for(stub: Stub, text: str) -> list[dict[str, Any]]:
    """The messages the upstream received in the request whose last message says `text`."""
    found = [r for r in stub.requests() if r["messages"][-1].get("content") == text]
    assert len(found) == 1, f"expected one upstream request ending with {text!r}, got {len(found)}"
    messages: list[dict[str, Any]] = found[0]["messages"]
    return messages


def stored(proxy: ProxyProcess, key: str, session: str) -> list[dict[str, Any]]:
    with proxy.client(key) as c:
        r = c.get(f"/v1/sessions/{session}")
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


def test_healthz_and_metrics_need_no_key(proxy: ProxyProcess) -> None:
    assert httpx.get(proxy.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(proxy.url + "/metrics").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/sessions"),
        ("GET", "/v1/sessions/x"),
        ("DELETE", "/v1/sessions/x"),
        ("GET", "/v1/sessions/x/export"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key", ALICE + "x"])
def test_missing_or_wrong_key_is_401(
    proxy: ProxyProcess, method: str, path: str, key: str | None
) -> None:
    with proxy.client(key) as c:
        r = c.request(method, path, json={"model": "stub/echo", "messages": []})
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"


def test_keys_never_see_each_others_sessions(proxy: ProxyProcess, stub_upstream: Stub) -> None:
    sid, secret = f"shared-{marker()}", f"alice private {marker()}"
    assert proxy.chat(ALICE, secret, sid).status_code == 200
    with proxy.client(BOB) as bob:
        assert bob.get(f"/v1/sessions/{sid}").status_code == 404
        assert bob.get(f"/v1/sessions/{sid}/export").status_code == 404
        assert bob.delete(f"/v1/sessions/{sid}").status_code == 404
        assert sid not in [s["id"] for s in bob.get("/v1/sessions").json()["data"]]
    bob_text = f"bob here {marker()}"
    assert proxy.chat(BOB, bob_text, sid).status_code == 200
    assert [m["content"] for m in sent_for(stub_upstream, bob_text)] == [bob_text]
    assert [m["content"] for m in stored(proxy, ALICE, sid)] == [secret, f"echo: {secret}"]
    assert [m["content"] for m in stored(proxy, BOB, sid)] == [bob_text, f"echo: {bob_text}"]


def test_memory_across_turns_is_pruned_by_the_strategy(
    proxy: ProxyProcess, stub_upstream: Stub
) -> None:
    sid, tag, counter = f"mem-{marker()}", marker(), get_counter()
    system = {"role": "system", "content": "You are a terse assistant."}
    strategy = get_strategy("token_window")
    with proxy.client(ALICE, sid) as c:
        for turn in range(12):
            text = f"turn {turn} {tag}: tell me about the number {turn * 7919}"
            before = stored(proxy, ALICE, sid)
            messages = (
                [system, {"role": "user", "content": text}]
                if turn == 0
                else [{"role": "user", "content": text}]
            )
            r = c.post("/v1/chat/completions", json={"model": "stub/echo", "messages": messages})
            assert r.status_code == 200, r.text
            sent = sent_for(stub_upstream, text)
            # What the upstream got is exactly the strategy's pruning of history + new turn.
            history = from_openai([*(before or [system]), {"role": "user", "content": text}])
            expected = strategy.prune(
                Conversation(id=sid, messages=tuple(history)),
                ctxlab.Budget(max_tokens=BUDGET),
                counter,
            )
            assert [m["content"] for m in sent] == [m.text for m in expected.messages]
            assert r.headers["x-ctxlab-pruned"] == f"{len(sent)}/{len(history)}"
            if turn == 1:
                assert [m["content"] for m in sent[1:3]] == [
                    f"turn 0 {tag}: tell me about the number 0",
                    f"echo: turn 0 {tag}: tell me about the number 0",
                ]
    assert sent[0] == system  # the system message is always kept
    assert len(sent) < len(history)  # by turn 12 the oldest turns no longer fit
    assert counter.count_messages(from_openai(sent)) <= BUDGET
    assert len(stored(proxy, ALICE, sid)) == 1 + 2 * 12  # the store keeps everything


def test_a_new_system_message_replaces_the_old_one(
    proxy: ProxyProcess, stub_upstream: Stub
) -> None:
    sid, first, second = f"sys-{marker()}", marker(), marker()
    with proxy.client(ALICE, sid) as c:
        for system, text in (("Be brief.", first), ("Be verbose.", second)):
            body = {
                "model": "stub/echo",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": text},
                ],
            }
            assert c.post("/v1/chat/completions", json=body).status_code == 200
    sent = sent_for(stub_upstream, second)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "Be verbose."
    assert stored(proxy, ALICE, sid)[0]["content"] == "Be verbose."


def test_stateless_requests_are_forwarded_and_pruned_only_when_over_budget(
    proxy: ProxyProcess, stub_upstream: Stub
) -> None:
    small = marker()
    r = proxy.chat(ALICE, small)
    assert r.status_code == 200 and r.headers["x-ctxlab-pruned"] == "1/1"
    assert "x-session-id" not in r.headers
    history = []
    for i in range(20):
        history += [
            {"role": "user", "content": f"question {i} about the weather in city {i * 31}"},
            {"role": "assistant", "content": f"answer {i}: it is sunny, {i * 17} degrees"},
        ]
    last = f"final {marker()}"
    body = {"model": "stub/echo", "messages": [*history, {"role": "user", "content": last}]}
    with proxy.client(ALICE) as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    kept, total = map(int, r.headers["x-ctxlab-pruned"].split("/"))
    sent = sent_for(stub_upstream, last)
    assert total == 41 and kept == len(sent) < total
    assert [m["content"] for m in sent] == [m["content"] for m in body["messages"][-kept:]]
    assert get_counter().count_messages(from_openai(sent)) <= BUDGET


@pytest.mark.parametrize(
    ("model", "status", "message"),
    [
        ("stub/echo+fail500", 502, "HTTP 500"),
        ("stub/echo+fail503", 502, "HTTP 503"),
        ("stub/echo+stall", 504, "timed out"),
        ("stub/echo+fail400", 400, "stub failure 400 for echo+fail400"),
        ("stub/echo+fail404", 404, "stub failure 404 for echo+fail404"),
        ("stub/echo+fail429", 429, "stub failure 429 for echo+fail429"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_faults_are_mapped_and_leave_no_half_turn(
    proxy: ProxyProcess, model: str, status: int, message: str, stream: bool
) -> None:
    sid = f"fault-{marker()}"
    assert proxy.chat(ALICE, "a good first turn", sid).status_code == 200
    r = proxy.chat(ALICE, "this turn fails", sid, model=model, stream=stream)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert [m["content"] for m in stored(proxy, ALICE, sid)] == [
        "a good first turn",
        "echo: a good first turn",
    ]


def test_upstream_retries_happen_before_the_proxy_answers(
    proxy: ProxyProcess, stub_upstream: Stub
) -> None:
    model = f"retry/echo+flaky2+{marker()}"  # fails twice with 503, then answers
    text = f"flaky {marker()}"
    r = proxy.chat(ALICE, text, f"flaky-{marker()}", model=model)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == f"echo: {text}"
    assert (
        sum(1 for q in stub_upstream.requests() if q["model"] == model.removeprefix("retry/")) == 3
    )


def sse(response: httpx.Response) -> list[Any]:
    events = [
        line[len("data: ") :] for line in response.text.split("\n") if line.startswith("data: ")
    ]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def test_streaming_sends_deltas_then_usage_and_stores_the_turn(proxy: ProxyProcess) -> None:
    sid, text = f"stream-{marker()}", f"stream me {marker()}"
    r = proxy.chat(ALICE, text, sid, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text_out = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text_out == f"echo: {text}"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert (
        chunks[-1]["choices"] == []
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    )
    assert [m["content"] for m in stored(proxy, ALICE, sid)] == [text, f"echo: {text}"]


def test_stream_cut_midway_ends_with_an_error_event_and_stores_nothing(proxy: ProxyProcess) -> None:
    sid = f"cut-{marker()}"
    r = proxy.chat(ALICE, "words to be cut off", sid, model="stub/echo+cut", stream=True)
    assert r.status_code == 200  # the stream had started
    events = sse(r)
    assert "[DONE]" not in events and events[-1]["error"]["code"] == "bad_gateway"
    assert stored(proxy, ALICE, sid) == []


def test_request_shape_errors(proxy: ProxyProcess) -> None:
    with proxy.client(ALICE) as c:
        r = c.post("/v1/chat/completions", content=b'{"model": "stub/echo", ')
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json")
        big = {"model": "stub/echo", "messages": [{"role": "user", "content": "x" * 30000}]}
        r = c.post("/v1/chat/completions", json=big)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")
        r = c.post(
            "/v1/chat/completions",
            json={**big, "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 404
        assert r.json()["error"]["message"].endswith("known prefixes: stub/, retry/")
        r = c.post(
            "/v1/chat/completions",
            json={"model": "stub/echo", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-session-id": "bad id/with slash"},
        )
        assert (r.status_code, r.json()["error"]["param"]) == (400, "X-Session-Id")


def test_requests_per_minute_limit_answers_429_with_retry_after(proxy: ProxyProcess) -> None:
    statuses = [proxy.chat(CAROL, f"hi {i}").status_code for i in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    r = proxy.chat(CAROL, "again")
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 12
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_daily_spend_cap_answers_429_until_midnight(proxy: ProxyProcess) -> None:
    # gpt-4o-mini output costs 0.6 $/M tokens: 1000 tokens = 0.0006 $, the cap is 0.001 $.
    # The second request's worst case (another 0.0006 $) no longer fits: refused up front.
    statuses = [
        proxy.chat(DAVE, f"spend {i}", model="stub/gpt-4o-mini", max_tokens=1000).status_code
        for i in range(3)
    ]
    assert statuses == [200, 429, 429]
    r = proxy.chat(DAVE, "more", model="stub/gpt-4o-mini")
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    assert 1 <= int(r.headers["retry-after"]) <= 86400


def test_tokens_per_minute_limit(proxy: ProxyProcess) -> None:
    # 2000 tokens/min; each request is estimated at ~908 tokens and billed ~904.
    statuses = [proxy.chat(ERIN, "hi", max_tokens=900).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_twenty_parallel_requests_on_one_session_store_forty_messages_in_order(
    proxy: ProxyProcess, stub_upstream: Stub
) -> None:
    sid = f"par-{marker()}"
    texts = [f"parallel {i} {marker()}" for i in range(20)]

    async def send_all() -> list[int]:
        headers = {"authorization": f"Bearer {BOB}", "x-session-id": sid}
        async with httpx.AsyncClient(base_url=proxy.url, headers=headers, timeout=60) as c:
            rs = await asyncio.gather(
                *[
                    c.post(
                        "/v1/chat/completions",
                        json={
                            "model": "stub/echo+delay20",
                            "messages": [{"role": "user", "content": t}],
                        },
                    )
                    for t in texts
                ]
            )
        return [r.status_code for r in rs]

    assert asyncio.run(send_all()) == [200] * 20
    history = stored(proxy, BOB, sid)
    assert len(history) == 40
    for user, reply in zip(history[::2], history[1::2], strict=True):
        assert user["role"] == "user" and reply["content"] == f"echo: {user['content']}"
    assert sorted(m["content"] for m in history[::2]) == sorted(texts)
    # Each turn saw every earlier turn (budget permitting): the upstream's view is consistent.
    for k in range(1, 20):
        sent = sent_for(stub_upstream, history[2 * k]["content"])
        earlier = [m["content"] for m in history[: 2 * k + 1]]
        assert [m["content"] for m in sent] == earlier[len(earlier) - len(sent) :]


def test_sessions_list_get_delete(proxy: ProxyProcess) -> None:
    sid = f"life-{marker()}"
    proxy.chat(BOB, "one", sid)
    with proxy.client(BOB) as c:
        listed = {s["id"]: s for s in c.get("/v1/sessions").json()["data"]}
        assert listed[sid]["messages"] == 2
        assert c.delete(f"/v1/sessions/{sid}").json() == {
            "id": sid,
            "object": "session.deleted",
            "deleted": True,
        }
        assert c.get(f"/v1/sessions/{sid}").status_code == 404
        assert c.delete(f"/v1/sessions/{sid}").status_code == 404


def test_export_loads_back_and_feeds_compare(proxy: ProxyProcess, tmp_path: Path) -> None:
    sid = f"export-{marker()}"
    with proxy.client(ALICE, sid) as c:
        c.post(
            "/v1/chat/completions",
            json={
                "model": "stub/echo",
                "messages": [
                    {"role": "system", "content": "Be kind."},
                    {"role": "user", "content": "start"},
                ],
            },
        )
        for i in range(6):
            c.post(
                "/v1/chat/completions",
                json={
                    "model": "stub/echo",
                    "messages": [{"role": "user", "content": f"file src/mod_{i}.py has bug {i}00"}],
                },
            )
        r = c.get(f"/v1/sessions/{sid}/export")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    # The server's store location (a path on its disk) never reaches a client.
    assert json.loads(r.content)["source"] == {"dataset": "proxy", "path": None, "record": None}
    path = tmp_path / "export.jsonl"
    path.write_bytes(r.content)
    (conv,) = ctxlab.load(path)
    assert conv.id == sid and len(conv.messages) == 1 + 2 * 7
    assert [m.text for m in conv.messages] == [m["content"] for m in stored(proxy, ALICE, sid)]
    report = ctxlab.compare([conv], ["token_window", "keep_all"], [60, 400], progress=False)
    df = report.df
    assert set(df["strategy"]) == {"token_window", "keep_all"}
    tight = df[(df["strategy"] == "token_window") & (df["budget"] == 60)]
    loose = df[(df["strategy"] == "token_window") & (df["budget"] == 400)]
    assert tight["input_tokens"].max() <= 60 < loose["input_tokens"].max()


def test_models_lists_the_routes(proxy: ProxyProcess) -> None:
    with proxy.client(ALICE) as c:
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
    assert ids == ["stub/echo", "stub/gpt-4o-mini", "retry/"]


def test_metrics_count_by_key_and_route(proxy: ProxyProcess) -> None:
    proxy.chat(BOB, "count me")
    proxy.chat(BOB, "fail me", model="stub/echo+fail500")
    text = httpx.get(proxy.url + "/metrics").text

    def value(pattern: str) -> float:
        m = re.search(pattern + r" ([0-9.e+]+)", text)
        assert m, pattern
        return float(m[1])

    assert value(r'ctxlab_proxy_requests_total\{key="bob",route="stub/",status="200"\}') >= 1
    assert value(r'ctxlab_proxy_upstream_errors_total\{route="stub/",status="502"\}') >= 1
    assert value(r'ctxlab_proxy_tokens_total\{key="bob",kind="input",route="stub/"\}') >= 1
    assert value(r'ctxlab_proxy_request_seconds_count\{key="bob",route="stub/"\}') >= 2
    assert "ctxlab_proxy_cost_usd_total" in text and "ctxlab_proxy_rate_limited_total" in text


def test_access_log_has_one_line_per_request_without_keys_or_content(proxy: ProxyProcess) -> None:
    sid, secret = f"log-{marker()}", f"very private words {marker()}"
    proxy.chat(ALICE, secret, sid)
    deadline = time.monotonic() + 10  # the line is written just after the reply is sent
    while True:
        log = proxy.log_text()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        mine = [r for r in lines if r.get("session") == sid]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 1
    assert {
        "key",
        "session",
        "route",
        "model",
        "status",
        "latency_ms",
        "input_tokens",
        "output_tokens",
        "cost_usd",
    } <= set(mine[0])
    assert mine[0]["key"] == "alice" and mine[0]["status"] == 200
    for leaked in (ALICE, BOB, CAROL, DAVE, ERIN, secret):
        assert leaked not in log


def test_official_openai_client(proxy: ProxyProcess, stub_upstream: Stub) -> None:
    import openai  # the dev extra installs it

    sid, base = f"sdk-{marker()}", proxy.url + "/v1"
    user = [{"role": "user", "content": "x"}]
    with openai.OpenAI(
        base_url=base, api_key=ALICE, default_headers={"X-Session-Id": sid}, max_retries=0
    ) as client:
        first = client.chat.completions.create(
            model="stub/echo", messages=[{"role": "user", "content": "My name is Ada."}]
        )
        assert first.choices[0].message.content == "echo: My name is Ada."
        second = f"What is my name? {marker()}"
        with client.chat.completions.create(
            model="stub/echo",
            messages=[{"role": "user", "content": second}],
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == f"echo: {second}"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
        sent = [m["content"] for m in sent_for(stub_upstream, second)]
        assert sent == ["My name is Ada.", "echo: My name is Ada.", second]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="nowhere/x", messages=user)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="stub/echo+fail500", messages=user)
        assert info.value.status_code == 502
    stranger = openai.OpenAI(base_url=base, api_key="nope", max_retries=0)
    with stranger, pytest.raises(openai.AuthenticationError):
        stranger.models.list()
    carol = openai.OpenAI(base_url=base, api_key=CAROL, max_retries=0)
    with carol, pytest.raises(openai.RateLimitError):
        for _ in range(10):
            carol.chat.completions.create(model="stub/echo", messages=user)
