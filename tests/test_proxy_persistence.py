"""Proxy processes that restart, crash, or run side by side on one SQLite file or Redis."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_support import (
    ALICE,
    CAROL,
    ProxyProcess,
    Stub,
    config_text,
    free_port,
    sha256,
    start_proxy,
)

FLEET, BULK = "fleet-key-20", "bulk-key-unlimited"
FLEET_KEYS = f"""
[[keys]]
name = "fleet"
key = "sha256:{sha256(FLEET)}"
requests_per_minute = 20

[[keys]]
name = "bulk"
key = "sha256:{sha256(BULK)}"
"""


def history(proxy: ProxyProcess, key: str, sid: str) -> list[str]:
    with proxy.client(key) as c:
        r = c.get(f"/v1/sessions/{sid}")
    return [m["content"] for m in r.json()["messages"]] if r.status_code == 200 else []


def last_sent(stub: Stub, text: str) -> list[str]:
    found = [r for r in stub.requests() if r["messages"][-1].get("content") == text]
    assert len(found) == 1
    return [m["content"] for m in found[0]["messages"]]


def turn_and_check(proxy: ProxyProcess, stub: Stub, sid: str, done: list[str]) -> None:
    """Send one more turn; the upstream must get every earlier turn, the store all of them."""
    text = f"turn {len(done) // 2} {uuid.uuid4().hex[:8]}"
    assert proxy.chat(ALICE, text, sid).status_code == 200
    assert last_sent(stub, text) == [*done, text]
    done += [text, f"echo: {text}"]
    assert history(proxy, ALICE, sid) == done


def test_sqlite_sessions_survive_a_restart_and_a_crash(stub_upstream: Stub, tmp_path: Path) -> None:
    sid, done = f"restart-{uuid.uuid4().hex[:8]}", []
    proxy = start_proxy(tmp_path, stub_upstream, f"sqlite:///{tmp_path / 'proxy.db'}")
    try:
        turn_and_check(proxy, stub_upstream, sid, done)
        turn_and_check(proxy, stub_upstream, sid, done)
        proxy.stop()  # SIGTERM: a clean shutdown
        proxy.start()
        turn_and_check(proxy, stub_upstream, sid, done)
        assert proxy.proc is not None
        proxy.proc.kill()  # SIGKILL right after a reply: every answered turn is on disk
        proxy.proc.wait()
        proxy.proc = None
        proxy.start()
        turn_and_check(proxy, stub_upstream, sid, done)
    finally:
        proxy.stop()
    assert len(done) == 8


@pytest.fixture(scope="module")
def pair(redis_server: Any, stub_upstream: Stub, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two proxy instances on one (emptied) Redis database, for the whole module."""
    import redis

    url = redis_server.url(3)
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    workdir = tmp_path_factory.mktemp("pair")
    instances = []
    try:
        for _ in range(2):
            port = free_port()
            text = config_text(
                port=port, store=url, upstream=stub_upstream.base_url, extra_keys=FLEET_KEYS
            )
            instances.append(ProxyProcess(workdir, text, port).start())
        yield instances
    finally:
        for p in instances:
            p.stop()


def test_two_instances_share_sessions_and_limits(
    pair: list[ProxyProcess], stub_upstream: Stub
) -> None:
    a, b = pair
    sid, tag = f"pair-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    assert a.chat(ALICE, f"on a {tag}", sid).status_code == 200
    assert b.chat(ALICE, f"on b {tag}", sid).status_code == 200
    assert last_sent(stub_upstream, f"on b {tag}") == [
        f"on a {tag}",
        f"echo: on a {tag}",
        f"on b {tag}",
    ]
    assert history(a, ALICE, sid) == history(b, ALICE, sid)
    with b.client(ALICE) as c:
        assert c.delete(f"/v1/sessions/{sid}").status_code == 200
    assert history(a, ALICE, sid) == []
    # carol may make 5 requests a minute, whichever instance she asks.
    statuses = [(a if i % 2 else b).chat(CAROL, f"limit {i}").status_code for i in range(8)]
    assert statuses.count(200) == 5 and statuses[5:] == [429, 429, 429]


def test_parallel_turns_on_one_session_across_two_instances(pair: list[ProxyProcess]) -> None:
    sid = f"par2-{uuid.uuid4().hex[:8]}"
    texts = [f"turn {i} {uuid.uuid4().hex[:6]}" for i in range(20)]

    async def send_all() -> list[int]:
        headers = {"authorization": f"Bearer {ALICE}", "x-session-id": sid}
        clients = [httpx.AsyncClient(base_url=p.url, headers=headers, timeout=60) for p in pair]
        try:
            rs = await asyncio.gather(
                *[
                    clients[i % 2].post(
                        "/v1/chat/completions",
                        json={"model": "stub/echo", "messages": [{"role": "user", "content": t}]},
                    )
                    for i, t in enumerate(texts)
                ]
            )
        finally:
            for c in clients:
                await c.aclose()
        return [r.status_code for r in rs]

    assert asyncio.run(send_all()) == [200] * 20
    stored = history(pair[0], ALICE, sid)
    assert len(stored) == 40
    assert all(r == f"echo: {u}" for u, r in zip(stored[::2], stored[1::2], strict=True))
    assert sorted(stored[::2]) == sorted(texts)


def test_fifty_concurrent_clients_with_a_shared_rate_limit(pair: list[ProxyProcess]) -> None:
    fleet = asyncio.run(_fifty(pair, FLEET))
    bulk = asyncio.run(_fifty(pair, BULK))
    assert sum(1 for status, _ in fleet if status == 200) == 20  # exactly the allowance
    assert all(status == 429 for status, _ in fleet if status != 200)
    assert all(status == 200 for status, _ in bulk)
    for status, stored in fleet + bulk:
        assert len(stored) == (2 if status == 200 else 0)


async def _fifty(instances: list[ProxyProcess], key: str) -> list[tuple[int, list[str]]]:
    headers = {"authorization": f"Bearer {key}"}
    clients = [httpx.AsyncClient(base_url=p.url, headers=headers, timeout=60) for p in instances]

    async def one(i: int) -> tuple[int, list[str]]:
        c, sid, text = clients[i % 2], f"client-{i}-{uuid.uuid4().hex[:6]}", f"hello from {i}"
        body = {"model": "stub/echo+delay10", "messages": [{"role": "user", "content": text}]}
        r = await c.post("/v1/chat/completions", json=body, headers={"x-session-id": sid})
        got = await clients[1 - i % 2].get(f"/v1/sessions/{sid}")
        stored = [m["content"] for m in got.json()["messages"]] if got.status_code == 200 else []
        if stored:
            assert stored == [text, f"echo: {text}"]  # no other client's messages
        return r.status_code, stored

    try:
        return list(await asyncio.gather(*[one(i) for i in range(50)]))
    finally:
        for c in clients:
            await c.aclose()


def test_redis_sessions_survive_a_restart(pair: list[ProxyProcess], stub_upstream: Stub) -> None:
    a, b = pair
    sid, done = f"restart-{uuid.uuid4().hex[:8]}", []
    turn_and_check(a, stub_upstream, sid, done)
    turn_and_check(b, stub_upstream, sid, done)
    a.stop()
    b.stop()  # no instance left: only Redis holds the session
    a.start()
    turn_and_check(a, stub_upstream, sid, done)
    assert len(done) == 6
