"""Spend caps that hold, against real proxy processes (memory, SQLite and Redis stores).

Before: an unpriced model counted as free, so a cap never applied to it; 50 parallel requests
on a priced model were all admitted against a $0.001 cap; a restart reset the day's spend.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from proxy_support import ProxyProcess, Stub, config_text, free_port, sha256

CAP = 0.001
CAPPED = [f"capped-key-{i}" for i in range(4)]
KEYS = "\n".join(
    f'[[keys]]\nname = "capped{i}"\nkey = "sha256:{sha256(k)}"\nusd_per_day = {CAP}\n'
    for i, k in enumerate(CAPPED)
)


def priced_route(upstream: str) -> str:
    return f"""
[[routes]]
prefix = "priced/"
provider = "openai-compatible"
base_url = "{upstream}"
timeout = 5.0
max_retries = 0
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60
"""


def start(tmp_path: Path, stub: Stub, store: str) -> ProxyProcess:
    port = free_port()
    text = config_text(
        port=port,
        store=store,
        upstream=stub.base_url,
        keys=KEYS,
        extra_routes=priced_route(stub.base_url),
        stub_timeout=5.0,
    )
    return ProxyProcess(tmp_path, text, port, env={}).start()


def spent(proxy: ProxyProcess, name: str) -> float:
    text = httpx.get(proxy.url + "/metrics").text
    found = re.findall(rf'ctxlab_proxy_cost_usd_total\{{key="{name}",route="[^"]+"\}} (\S+)', text)
    return sum(float(v) for v in found)


def ask(proxy: ProxyProcess, key: str, model: str, text: str, **body: object) -> httpx.Response:
    return proxy.chat(key, text, model=model, **body)


@pytest.fixture(scope="module")
def proxy(stub_upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> ProxyProcess:
    server = start(tmp_path_factory.mktemp("spend"), stub_upstream, "memory")
    yield server  # type: ignore[misc]
    server.stop()


def test_an_unpriced_model_is_refused_under_a_spend_cap(proxy: ProxyProcess) -> None:
    r = ask(proxy, CAPPED[0], "stub/echo", "hello", max_tokens=10)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "model_not_priced" and error["param"] == "model"
    assert "input_usd_per_mtok" in error["message"]
    # The same model priced by its route is served and its cost counted against the cap.
    r = ask(proxy, CAPPED[0], "priced/echo", "hello", max_tokens=10)
    assert r.status_code == 200, r.text
    assert spent(proxy, "capped0") > 0
    # 1000 output tokens bill 0.0006 $: a second such request no longer fits under the cap.
    assert ask(proxy, CAPPED[0], "priced/echo", "x", max_tokens=1000).status_code == 200
    assert ask(proxy, CAPPED[0], "priced/echo", "y", max_tokens=1000).status_code == 429


def _parallel(proxy: ProxyProcess, key: str, n: int) -> list[int]:
    def one(i: int) -> int:
        return ask(proxy, key, "stub/gpt-4o-mini", f"parallel {i}", max_tokens=500).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_fifty_parallel_requests_never_overshoot_the_cap(proxy: ProxyProcess) -> None:
    # Each reply bills 500 output tokens at 0.6 $/M = 0.0003 $: three fit under 0.001 $.
    statuses = _parallel(proxy, CAPPED[1], 50)
    assert statuses.count(200) == 3 and statuses.count(429) == 47
    assert 0.0009 <= spent(proxy, "capped1") <= CAP


def test_a_request_without_max_tokens_reserves_the_default_cap(
    proxy: ProxyProcess, stub_upstream: Stub
) -> None:
    # 4096 output tokens at 0.6 $/M = 0.0025 $: more than the cap, so refused up front.
    r = ask(proxy, CAPPED[2], "stub/gpt-4o-mini", "no limit given")
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"


def test_sqlite_limits_survive_a_restart(stub_upstream: Stub, tmp_path: Path) -> None:
    server = start(tmp_path, stub_upstream, f"sqlite:///{tmp_path / 'proxy.db'}")
    try:
        assert ask(server, CAPPED[0], "stub/gpt-4o-mini", "a", max_tokens=1000).status_code == 200
        server.stop()
        server.start()
        r = ask(server, CAPPED[0], "stub/gpt-4o-mini", "b", max_tokens=1000)
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        statuses = _parallel(server, CAPPED[3], 20)
        assert statuses.count(200) == 3
    finally:
        server.stop()


def test_redis_limits_hold_under_fifty_parallel_requests(
    stub_upstream: Stub, tmp_path: Path, redis_url: str
) -> None:
    server = start(tmp_path, stub_upstream, redis_url)
    try:
        statuses = _parallel(server, CAPPED[1], 50)
        assert statuses.count(200) == 3 and statuses.count(429) == 47
        assert 0.0009 <= spent(server, "capped1") <= CAP
    finally:
        server.stop()
