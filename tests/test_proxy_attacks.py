"""A hostile client and a broken upstream against a real proxy process (uvicorn, 127.0.0.1).

Each test is one finding that once held: a stalled event loop, a route timeout that was no
deadline, unbounded model names, plain-text 500s, orphan tool results answered, raw line
separators in the export, an open /metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_support import ALICE, KEYS_ENV, ProxyProcess, Stub, config_text, free_port

import ctxlab
from ctxlab.errors import UsageError
from ctxlab.live.proxy.config import RouteConfig
from ctxlab.live.proxy.routes import Route
from ctxlab.live.proxy.spend import MAX_MODELS, Prices
from ctxlab.live.session import Session
from ctxlab.messages import Message, ToolCall
from ctxlab.providers.scripted import ScriptedProvider

METRICS_KEY = "metrics-key-6"


@pytest.fixture(scope="module")
def proxy(stub_upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    port = free_port()
    text = config_text(
        port=port,
        store="memory",
        upstream=stub_upstream.base_url,
        budget=2000,
        extra_server=(
            "max_request_bytes = 8388608\nread_timeout = 3.0\n"
            'metrics_key = "env:PROXY_TEST_METRICS"'
        ),
    )
    env = {**KEYS_ENV, "PROXY_TEST_METRICS": METRICS_KEY}
    server = ProxyProcess(tmp_path_factory.mktemp("attacks"), text, port, env=env).start()
    yield server
    server.stop()


def post(proxy: ProxyProcess, body: Any, session: str | None = None, **kw: Any) -> httpx.Response:
    with proxy.client(ALICE, session) as c:
        if isinstance(body, (bytes, str)):
            headers = {"content-type": "application/json"}
            return c.post("/v1/chat/completions", content=body, headers=headers, **kw)
        return c.post("/v1/chat/completions", json=body, **kw)


def user(text: str, model: str = "stub/echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


_ATTACK = """
import json, sys, threading, httpx
url, key = sys.argv[1], sys.argv[2]
blob = json.dumps({"model": "stub/echo", "messages": [{"role": "user", "content": "a" * 4000000}]})
huge = json.dumps({"model": "stub/echo+huge30", "messages": [{"role": "user", "content": "hi"}]})
statuses = []
def attack(i):
    with httpx.Client(timeout=120) as c:
        r = c.post(url + "/v1/chat/completions", content=blob if i % 4 else huge,
                   headers={"authorization": "Bearer " + key, "content-type": "application/json"})
        statuses.append(r.status_code)
workers = [threading.Thread(target=attack, args=(i,)) for i in range(12)]
[w.start() for w in workers]
[w.join() for w in workers]
print(json.dumps(sorted(statuses)))
"""


def test_healthz_stays_fast_while_huge_requests_and_replies_run(proxy: ProxyProcess) -> None:
    # The attackers run in their own process, so the probe below measures only the proxy.
    attack = subprocess.Popen(
        [sys.executable, "-c", _ATTACK, proxy.url, ALICE], stdout=subprocess.PIPE, text=True
    )
    latencies = []
    with httpx.Client(timeout=30) as c:
        while attack.poll() is None:
            start = time.perf_counter()
            assert c.get(proxy.url + "/healthz").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
    out, _ = attack.communicate()
    results = json.loads(out)
    # 4 MB words are over the memory budget (400); the 30 MB replies go over the reply size
    # limit (502) or, with the stub busy writing them, past the route's 1 s deadline (504).
    assert results[:9] == [400] * 9 and set(results[9:]) <= {502, 504}, results
    assert len(latencies) >= 10
    # A blocked event loop delays every probe that arrives while it is blocked; one scheduler
    # hiccup on a busy machine delays one. So: nearly all probes are fast, none waits long.
    slowest = sorted(latencies)
    assert slowest[int(len(slowest) * 0.9)] < 0.05, slowest[-5:]
    assert slowest[-1] < 0.5, slowest[-5:]


def test_huge_upstream_reply_is_cut_off_with_a_502(proxy: ProxyProcess) -> None:
    for stream in (False, True):
        r = post(proxy, user("hi", model="stub/echo+huge30", stream=stream))
        assert r.status_code == 502, r.text
        assert "max_reply_bytes" in r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_route_timeout_is_a_deadline_for_the_whole_request(
    proxy: ProxyProcess, stream: bool
) -> None:
    sid = f"drip-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    r = post(proxy, user("slowly", model="stub/echo+drip", stream=stream), sid)
    took = time.perf_counter() - start
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert took < 4, took  # the stub route's timeout is 1 s; the drip would take minutes
    start = time.perf_counter()
    assert post(proxy, user("next turn"), sid).status_code == 200
    assert time.perf_counter() - start < 2


def test_a_slow_upload_gets_408(proxy: ProxyProcess) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            f"authorization: Bearer {ALICE}\r\ncontent-type: application/json\r\n"
            "content-length: 1000\r\n\r\n{"
        )
        s.sendall(head.encode())
        start = time.perf_counter()
        reply = ""
        while '"code"' not in reply and time.perf_counter() - start < 8:
            reply += s.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 408"), reply[:200]
    assert time.perf_counter() - start < 6  # read_timeout is 3 s
    assert '"code": "request_timeout"' in reply


def test_model_names_are_bounded(proxy: ProxyProcess) -> None:
    r = post(proxy, user("hi", model="stub/" + "m" * 300))
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert "m" * 300 not in proxy.log_text()
    route = Route(
        config=RouteConfig(prefix="x/", provider="openai-compatible"),
        provider=ScriptedProvider(),
        client=httpx.AsyncClient(),
    )
    prices = Prices()
    for i in range(MAX_MODELS + 500):
        prices.price(route, f"model-{i}")
    assert len(prices._known) == MAX_MODELS


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            '{"model":"stub/echo","messages":[{"role":"user","content":"hi"}],"x":'
            + "[" * 5000
            + "]" * 5000
            + "}",
            "nested deeper",
        ),
        (
            '{"model":"stub/echo","messages":[{"role":"user","content":"hi","meta":'
            + '{"a":' * 100
            + "1"
            + "}" * 100
            + "}]}",
            "nested deeper",
        ),
        ('{"model":"stub/echo","messages":[{"role":"user","content":"hi"}],"self":1}', "'self'"),
        ('{"model":"stub/echo","messages":[{"role":"user","content":"hi"}],"new":1}', "'new'"),
        (
            '{"model":"stub/echo","messages":[{"role":"user","content":"hi"}],"temperature":NaN}',
            "NaN",
        ),
        (
            '{"model":"stub/echo","messages":[{"role":"user","content":"hi"}],"seed":Infinity}',
            "Infinity",
        ),
        ('{"model":"stub/echo","messages":[{"role":"user","content":"a\\ud800b"}]}', "surrogate"),
    ],
)
def test_hostile_bodies_get_json_400s(proxy: ProxyProcess, body: str, words: str) -> None:
    for session in (None, f"hostile-{uuid.uuid4().hex[:8]}"):
        r = post(proxy, body, session)
        assert r.status_code == 400, r.text
        assert words in r.json()["error"]["message"]
    assert "Traceback" not in proxy.log_text()


@pytest.mark.parametrize("fault", ["badusage", "negusage"])
def test_garbage_upstream_usage_is_a_502_still_logged_and_counted(
    proxy: ProxyProcess, fault: str
) -> None:
    model = f"stub/echo+{fault}"
    before = proxy.log_text().count(f'"model": "echo+{fault}"')
    for stream in (False, True):
        r = post(proxy, user("hi", model=model, stream=stream))
        if stream:
            assert r.status_code == 200 and "usage" in r.text and '"error"' in r.text
        else:
            assert r.status_code == 502, r.text
    time.sleep(0.5)
    assert proxy.log_text().count(f'"model": "echo+{fault}"') == before + 2
    metrics = httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"})
    assert 'ctxlab_proxy_requests_total{key="alice",route="stub/",status="502"}' in metrics.text


def test_metrics_need_the_configured_key(proxy: ProxyProcess) -> None:
    assert httpx.get(proxy.url + "/metrics").status_code == 401
    bad = httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {ALICE}"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    good = httpx.get(proxy.url + "/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"})
    assert good.status_code == 200 and "ctxlab_proxy_requests_total" in good.text


def test_an_orphan_tool_result_is_refused_by_name(proxy: ProxyProcess) -> None:
    sid = f"orphan-{uuid.uuid4().hex[:8]}"
    assert post(proxy, user("first"), sid).status_code == 200
    body = {
        "model": "stub/echo",
        "messages": [{"role": "tool", "tool_call_id": "call_nobody_made", "content": "42"}],
    }
    r = post(proxy, body, sid)
    assert r.status_code == 400 and "call_nobody_made" in r.json()["error"]["message"]
    with proxy.client(ALICE) as c:
        assert len(c.get(f"/v1/sessions/{sid}").json()["messages"]) == 2


def test_session_send_refuses_an_orphan_tool_result() -> None:
    call = ToolCall(id="call_1", name="lookup", arguments='{"q": "x"}')
    provider = ScriptedProvider(
        replies=[Message(role="assistant", content="", tool_calls=(call,)), "done"]
    )
    s = Session(provider, "token_window", 1000, store="memory")
    s.send("look it up")
    with pytest.raises(UsageError, match="call_2"):
        s.send(Message(role="tool", tool_call_id="call_2", content="r"))
    assert len(s.history) == 2
    assert s.send(Message(role="tool", tool_call_id="call_1", content="r")).text == "done"


def test_export_escapes_line_separators_and_loads_back(proxy: ProxyProcess, tmp_path: Path) -> None:
    sid = f"seps-{uuid.uuid4().hex[:8]}"
    text = "one\u2028two\u2029three\x85four"
    assert post(proxy, user(text), sid).status_code == 200
    with proxy.client(ALICE) as c:
        exported = c.get(f"/v1/sessions/{sid}/export")
    assert exported.status_code == 200
    assert all(ch not in exported.text for ch in "\u2028\u2029\x85")
    path = tmp_path / "export.jsonl"
    path.write_bytes(exported.content)
    (conv,) = ctxlab.load(path)
    assert conv.messages[0].text == text
    assert conv.messages[1].text == "echo: " + text


def test_redis_down_gives_json_503(stub_upstream: Stub, tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is required"
    port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    proxy_port = free_port()
    text = config_text(
        port=proxy_port, store=f"redis://127.0.0.1:{port}/0", upstream=stub_upstream.base_url
    )
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        server = ProxyProcess(tmp_path, text, proxy_port).start()
        try:
            assert server.chat(ALICE, "while redis is up", "r1").status_code == 200
            redis.terminate()
            redis.wait(10)
            r = server.chat(ALICE, "redis is down", "r1")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable"
            with server.client(ALICE) as c:
                listed = c.get("/v1/sessions")
            assert listed.status_code == 503 and listed.json()["error"]["type"] == "api_error"
            assert "Traceback" not in server.log_text()
        finally:
            server.stop()
    finally:
        if redis.poll() is None:
            redis.terminate()
            redis.wait(10)


def test_deadline_in_process_leaves_the_loop_free() -> None:
    # The 504 helper itself: the inner work is cancelled, not left running.
    from ctxlab.live.proxy.errors import ProxyHTTPError
    from ctxlab.live.proxy.work import within as _within

    cancelled = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def run() -> None:
        with pytest.raises(ProxyHTTPError) as caught:
            await _within(slow(), 0.05)
        assert caught.value.status == 504

    asyncio.run(run())
    assert cancelled == [True]
    assert os.environ.get("CTXLAB_HOME")
