"""The proxy's parts that need no server: config checks, keys, limits, wire format, error map."""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from ctxlab.errors import (
    BudgetUnreachableError,
    ConfigurationError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
)
from ctxlab.live.proxy.auth import KeyRing
from ctxlab.live.proxy.config import KeyConfig, load_config, parse_config
from ctxlab.live.proxy.errors import ProxyHTTPError, from_exception
from ctxlab.live.proxy.limits import MemoryLimits, RedisLimits
from ctxlab.live.proxy.wire import ChatRequest, Reply
from ctxlab.providers.base import Completion
from ctxlab.usage import Usage

ISSUE_CONFIG = """
[server]
host = "127.0.0.1"
port = 8080
store = "sqlite:///ctxlab-proxy.db"     # or "memory", or "redis://127.0.0.1:6379/0"

[[keys]]
name = "alice"
key = "env:ALICE_KEY"                   # or "sha256:<hex digest of the key>"
requests_per_minute = 60                # optional
tokens_per_minute = 200000              # optional
usd_per_day = 5.0                       # optional spend cap

[[routes]]
prefix = "local/"
provider = "openai-compatible"          # or "openai", "anthropic"
base_url = "http://127.0.0.1:8765/v1"
api_key = "env:UPSTREAM_KEY"            # optional

[memory]
strategy = "token_window"               # any registry name
budget = 4000
params = {}                             # strategy parameters
"""


def minimal(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "keys": [{"name": "a", "key": "env:K"}],
        "routes": [{"prefix": "p/", "provider": "openai-compatible", "base_url": "http://x/v1"}],
    }
    data.update(changes)
    return data


def test_the_documented_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(ISSUE_CONFIG)
    cfg = load_config(path)
    assert cfg.server.store == "sqlite:///ctxlab-proxy.db" and cfg.server.port == 8080
    (key,) = cfg.keys
    assert (key.requests_per_minute, key.tokens_per_minute, key.usd_per_day) == (60, 200000, 5.0)
    assert cfg.routes[0].prefix == "local/" and cfg.routes[0].api_key == "env:UPSTREAM_KEY"
    assert (cfg.memory.strategy, cfg.memory.budget, dict(cfg.memory.params)) == (
        "token_window",
        4000,
        {},
    )


def test_a_summarizer_routed_like_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", "a-client-key")
    from ctxlab.live.proxy.state import ProxyState

    memory = {
        "strategy": "summary_window",
        "budget": 800,
        "summarizer": {"model": "p/tiny", "max_summary_tokens": 120},
    }
    cfg = parse_config(minimal(memory=memory, server={"store": "memory"}))
    assert cfg.memory.summarizer is not None and cfg.memory.summarizer.model == "p/tiny"
    state = ProxyState(cfg)
    try:
        summarizer = state.strategy.summarizer  # type: ignore[attr-defined]
        assert summarizer.model == "tiny" and summarizer.max_summary_tokens == 120
        assert summarizer.provider is state.router.routes[0].provider
    finally:
        asyncio.run(state.aclose())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (minimal(keys=[{"name": "a", "key": "plaintext-secret"}]), "keys[0].key"),
        (
            minimal(keys=[{"name": "a", "key": "env:K", "requests_per_minute": -5}]),
            "keys[0].requests_per_minute",
        ),
        (minimal(keys=[{"name": "a", "key": "env:K", "usd_per_day": "5"}]), "keys[0].usd_per_day"),
        (
            minimal(keys=[{"name": "a", "key": "env:K"}, {"name": "a", "key": "env:J"}]),
            "keys[1].name",
        ),
        (minimal(keys=[{"key": "env:K"}]), "keys[0].name"),
        (minimal(keys=[]), "keys"),
        (minimal(routes=[{"prefix": "p/", "provider": "vertex"}]), "routes[0].provider"),
        (minimal(routes=[{"prefix": "p/", "provider": "openai-compatible"}]), "routes[0].base_url"),
        (
            minimal(routes=[{"prefix": "p/", "provider": "openai", "api_key": "sk-live"}]),
            "routes[0].api_key",
        ),
        (minimal(server={"port": 70000}), "server.port"),
        (minimal(server={"prot": 1}), "server.prot"),
        (minimal(memory={"strategy": "no_such"}), "memory.strategy"),
        (minimal(memory={"strategy": "sliding_window", "params": {"nope": 1}}), "memory.strategy"),
        (minimal(memory={"budget": 0}), "memory.budget"),
        (
            minimal(memory={"strategy": "summarize", "summarizer": {"model": "q/m"}}),
            "memory.summarizer.model",
        ),
        (
            minimal(memory={"strategy": "summarize", "summarizer": {"model": "p/m", "x": 1}}),
            "memory.summarizer.x",
        ),
        (
            minimal(memory={"summarizer": {"model": "p/m"}}),  # token_window writes no summary
            "memory.summarizer",
        ),
        (
            minimal(
                memory={
                    "strategy": "summarize",
                    "summarizer": {"model": "p/m", "max_summary_tokens": 2},
                }
            ),
            "memory.summarizer.max_summary_tokens",
        ),
    ],
)
def test_config_errors_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(data, source="proxy.toml")
    assert str(info.value).startswith(f"proxy.toml: {field} ")


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server\nport = 1")
    with pytest.raises(ConfigurationError, match=r"broken\.toml: not valid TOML"):
        load_config(path)


def test_keyring_accepts_env_and_sha256_keys_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_ALICE", "alice-secret")
    digest = hashlib.sha256(b"bob-secret").hexdigest()
    ring = KeyRing(
        [KeyConfig(name="alice", key="env:K_ALICE"), KeyConfig(name="bob", key=f"sha256:{digest}")]
    )
    assert ring.authenticate("Bearer alice-secret").name == "alice"  # type: ignore[union-attr]
    assert ring.authenticate("bearer  bob-secret ").name == "bob"  # type: ignore[union-attr]
    for bad in (None, "", "Bearer", "Basic alice-secret", "Bearer alice-secre", "alice-secret"):
        assert ring.authenticate(bad) is None
    assert "alice-secret" not in repr(ring) and "alice-secret" not in repr(ring.keys)


def test_keyring_refuses_unset_env_and_bad_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("K_UNSET", raising=False)
    with pytest.raises(ConfigurationError, match="K_UNSET, which is not set"):
        KeyRing([KeyConfig(name="a", key="env:K_UNSET")])
    with pytest.raises(ConfigurationError, match="64 hex digits"):
        KeyRing([KeyConfig(name="a", key="sha256:abc")])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_request_bucket_admits_exactly_the_allowance_then_refills() -> None:
    clock = Clock()
    limits = MemoryLimits(clock=clock, wall=lambda: 5 * 86400.0 + 100)
    key = KeyConfig(name="k", key="env:X", requests_per_minute=6)
    verdicts = [run(limits.admit(key, 10)) for _ in range(10)]
    assert [v.allowed for v in verdicts] == [True] * 6 + [False] * 4
    assert verdicts[-1].reason == "requests" and verdicts[-1].retry_after == pytest.approx(10.0)
    clock.now += 10.0  # one request's worth at 6/min
    assert run(limits.admit(key, 10)).allowed
    assert not run(limits.admit(key, 10)).allowed


def test_token_bucket_settles_to_billed_tokens() -> None:
    clock = Clock()
    limits = MemoryLimits(clock=clock, wall=lambda: 0.0)
    key = KeyConfig(name="k", key="env:X", tokens_per_minute=600)
    assert run(limits.admit(key, 100)).allowed
    run(limits.settle(key, 450, math.nan, 0))  # billed 550 in all: 50 left
    verdict = run(limits.admit(key, 100))
    assert (verdict.allowed, verdict.reason) == (False, "tokens")
    assert verdict.retry_after == pytest.approx(5.0)  # 50 more tokens at 10/s
    assert run(limits.admit(key, 50)).allowed


def test_spend_cap_refuses_until_the_utc_day_rolls_over() -> None:
    wall = [3 * 86400.0 + 86000]
    limits = MemoryLimits(clock=Clock(), wall=lambda: wall[0])
    key = KeyConfig(name="k", key="env:X", usd_per_day=0.01)
    admitted = run(limits.admit(key, 1))
    assert admitted.allowed and admitted.day == 3
    run(limits.settle(key, 0, 0.011, admitted.day))
    verdict = run(limits.admit(key, 1))
    assert (verdict.allowed, verdict.reason, verdict.retry_after) == (False, "spend", 400.0)
    wall[0] += 400
    assert run(limits.admit(key, 1)).allowed


def test_redis_limits_are_exact_under_concurrency(redis_url: str) -> None:
    key = KeyConfig(name="shared", key="env:X", requests_per_minute=7, usd_per_day=1.0)

    async def scenario() -> list[bool]:
        a, b = RedisLimits(redis_url), RedisLimits(redis_url)  # two "instances"
        try:
            verdicts = await asyncio.gather(*[(a if i % 2 else b).admit(key, 5) for i in range(30)])
            await a.settle(key, 0, 1.5, next(v.day for v in verdicts if v.allowed))
            spent = await b.admit(key, 1)
            assert (spent.allowed, spent.reason) == (False, "spend")
            return [v.allowed for v in verdicts]
        finally:
            await a.aclose()
            await b.aclose()

    assert sum(run(scenario())) == 7


def test_chat_request_parsing() -> None:
    req = ChatRequest.parse(
        {
            "model": "local/m",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "max_completion_tokens": 7,
            "temperature": 0.5,
            "tool_choice": "none",
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert [m.role for m in req.messages] == ["system", "user"]
    assert req.stream and req.include_usage
    assert req.call_options() == {"temperature": 0.5, "tool_choice": "none", "max_tokens": 7}
    for body, param in [
        ([], None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ]:
        with pytest.raises(ProxyHTTPError) as info:
            ChatRequest.parse(body)
        assert (info.value.status, info.value.param) == (400, param)


def test_reply_usage_follows_openai_convention() -> None:
    done = Completion(
        text="hi",
        usage=Usage(input_tokens=10, cached_input_tokens=30, output_tokens=5, requests=1),
        finish_reason="stop",
    )
    body = Reply(model="p/m").completion(done)
    assert body["usage"] == {
        "prompt_tokens": 40,
        "completion_tokens": 5,
        "total_tokens": 45,
        "prompt_tokens_details": {"cached_tokens": 30},
    }
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi"}


def _timed_out() -> ProviderConnectionError:
    try:
        try:
            raise httpx.ReadTimeout("read timed out")
        except httpx.TimeoutException:
            raise ProviderConnectionError("x timed out after 1 attempt(s)") from None
    except ProviderConnectionError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ProviderHTTPError("openai", 500, "{}", "boom"), 502),
        (ProviderHTTPError("openai", 529, "{}", "overloaded"), 502),
        (ProviderHTTPError("openai", 400, "{}", "bad input"), 400),
        (ProviderHTTPError("openai", 429, "{}", "slow down"), 429),
        (ProviderConnectionError("could not connect"), 502),
        (_timed_out(), 504),
        (ProviderResponseError("not JSON"), 502),
        (BudgetUnreachableError(900, 100), 400),
    ],
)
def test_upstream_failures_map_to_statuses(exc: Exception, status: int) -> None:
    failure = from_exception(exc)  # type: ignore[arg-type]
    assert failure.status == status
    if isinstance(exc, ProviderHTTPError) and exc.status < 500:
        assert failure.message == exc.message


def test_access_log_carries_message_content_only_in_debug(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    from ctxlab.live.proxy.log import emit, request_record
    from ctxlab.messages import Message

    record = request_record(
        key="alice", session="s1", route="p/", model="m", status=200, latency_s=0.0123
    )
    with caplog.at_level(logging.INFO, logger="ctxlab.live.proxy.access"):
        emit(record)
        emit(record, debug_messages=[Message(role="user", content="secret words")])
    plain, debug = (json.loads(r.getMessage()) for r in caplog.records)
    assert plain["key"] == "alice" and plain["latency_ms"] == 12.3 and "messages" not in plain
    assert debug["messages"] == [{"role": "user", "content": "secret words"}]


def test_the_example_config_is_valid() -> None:
    from pathlib import Path

    from ctxlab.live.proxy.config import load_config

    path = Path(__file__).resolve().parents[1] / "examples" / "proxy.toml"
    config = load_config(path)
    assert config.server.metrics_key == "env:CTXLAB_METRICS_KEY"
    local = config.routes[0]
    assert (local.input_usd_per_mtok, local.output_usd_per_mtok) == (0.0, 0.0)
    assert config.keys[0].usd_per_day == 5.0
