"""The fault suite: what is retried, how often, after which waits, and what is raised."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from providers_support import (
    ANTHROPIC_KEY,
    ANTHROPIC_REPLY,
    OPENAI_KEY,
    OPENAI_REPLY,
    CutStream,
    Recorder,
    Waits,
    json_response,
    sse,
    sse_response,
)

from ctxlab.errors import ProviderConnectionError, ProviderHTTPError, ProviderResponseError
from ctxlab.messages import Message
from ctxlab.providers import Completion, TextDelta
from ctxlab.providers.anthropic import AnthropicProvider
from ctxlab.providers.openai import OpenAIProvider
from ctxlab.providers.retry import RetryPolicy, retry_after

USER = Message(role="user", content="Capital of France?")
REPLIES = {"openai": OPENAI_REPLY, "anthropic": ANTHROPIC_REPLY}


def make(
    kind: str, rec: Recorder, waits: Waits, **policy: Any
) -> OpenAIProvider | AnthropicProvider:
    if kind == "openai":
        return OpenAIProvider(
            "gpt-4o-mini", api_key=OPENAI_KEY, client=rec.client(), retry=waits.policy(**policy)
        )
    return AnthropicProvider(
        "claude-sonnet-4-5",
        api_key=ANTHROPIC_KEY,
        client=rec.client(),
        retry=waits.policy(**policy),
    )


def error(
    status: int, message: str = "boom", headers: dict[str, str] | None = None
) -> httpx.Response:
    return json_response(status, {"error": {"message": message, "type": "x"}}, headers)


KINDS = pytest.mark.parametrize("kind", ["openai", "anthropic"])


@KINDS
def test_429_with_retry_after_then_200(kind: str) -> None:
    waits = Waits()
    rec = Recorder([error(429, headers={"retry-after": "2"}), json_response(200, REPLIES[kind])])
    done = make(kind, rec, waits).complete([USER])
    assert done.text == "Paris."
    assert len(rec.requests) == 2 and waits.waits == [2.0]


def test_retry_after_ms_wins_over_retry_after() -> None:
    waits = Waits()
    headers = {"retry-after-ms": "1500", "retry-after": "9"}
    rec = Recorder([error(429, headers=headers), json_response(200, OPENAI_REPLY)])
    make("openai", rec, waits).complete([USER])
    assert waits.waits == [1.5]


@KINDS
def test_500_twice_then_200_waits_half_then_one_second(kind: str) -> None:
    waits = Waits()
    rec = Recorder([error(500), error(500), json_response(200, REPLIES[kind])])
    assert make(kind, rec, waits).complete([USER]).text == "Paris."
    assert len(rec.requests) == 3 and waits.waits == [0.5, 1.0]


@KINDS
def test_500_three_times_raises_after_three_attempts(kind: str) -> None:
    waits = Waits()
    rec = Recorder([error(500, "server melted")] * 3)
    with pytest.raises(ProviderHTTPError) as info:
        make(kind, rec, waits).complete([USER])
    assert (info.value.status, info.value.message) == (500, "server melted")
    assert info.value.provider == kind
    assert len(rec.requests) == 3 and waits.waits == [0.5, 1.0]


def test_529_overloaded_is_retried() -> None:
    waits = Waits()
    overloaded = json_response(
        529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    rec = Recorder([overloaded, json_response(200, ANTHROPIC_REPLY)])
    assert make("anthropic", rec, waits).complete([USER]).text == "Paris."
    assert len(rec.requests) == 2 and waits.waits == [0.5]


@pytest.mark.parametrize("status", [408, 409, 502, 503])
def test_other_retryable_statuses(status: int) -> None:
    waits = Waits()
    rec = Recorder([error(status), json_response(200, OPENAI_REPLY)])
    make("openai", rec, waits).complete([USER])
    assert len(rec.requests) == 2 and waits.waits == [0.5]


@KINDS
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_raise_at_once_with_the_providers_message(kind: str, status: int) -> None:
    waits = Waits()
    rec = Recorder([error(status, "max_tokens: field required")])
    with pytest.raises(ProviderHTTPError) as info:
        make(kind, rec, waits).complete([USER])
    assert info.value.status == status
    assert info.value.message == "max_tokens: field required"
    assert f"HTTP {status}: max_tokens: field required" in str(info.value)
    assert len(rec.requests) == 1 and waits.waits == []


def test_read_timeout_is_retried_then_succeeds() -> None:
    waits = Waits()
    timeout = httpx.ReadTimeout("timed out")
    rec = Recorder([timeout, timeout, json_response(200, OPENAI_REPLY)])
    assert make("openai", rec, waits).complete([USER]).text == "Paris."
    assert len(rec.requests) == 3 and waits.waits == [0.5, 1.0]


def test_read_timeout_every_time_raises_connection_error() -> None:
    waits = Waits()
    rec = Recorder(lambda request: httpx.ReadTimeout("timed out"))
    with pytest.raises(ProviderConnectionError, match="timed out after 3 attempt"):
        make("openai", rec, waits).complete([USER])
    assert len(rec.requests) == 3 and waits.waits == [0.5, 1.0]


def test_connect_error_is_retried() -> None:
    waits = Waits()
    rec = Recorder([httpx.ConnectError("refused"), json_response(200, OPENAI_REPLY)])
    make("openai", rec, waits).complete([USER])
    assert len(rec.requests) == 2 and waits.waits == [0.5]


@KINDS
def test_malformed_json_body_raises_response_error_without_retry(kind: str) -> None:
    waits = Waits()
    rec = Recorder(
        [
            httpx.Response(
                200, content=b'{"choices": [', headers={"content-type": "application/json"}
            )
        ]
    )
    with pytest.raises(ProviderResponseError, match="not JSON"):
        make(kind, rec, waits).complete([USER])
    assert len(rec.requests) == 1 and waits.waits == []


def test_openai_stream_cut_in_the_middle_is_not_retried() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "Par"}, "finish_reason": None}]}
    stream = CutStream(sse([(None, chunk)]))
    waits = Waits()
    rec = Recorder(
        [httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})] * 3
    )
    seen: list[object] = []
    with pytest.raises(ProviderConnectionError, match="stream was cut"):
        for event in make("openai", rec, waits).stream([USER]):
            seen.append(event)
    assert seen == [TextDelta(text="Par")]
    assert len(rec.requests) == 1 and waits.waits == []


def test_anthropic_stream_cut_in_the_middle_async() -> None:
    start = {
        "type": "message_start",
        "message": {"id": "m", "model": "c", "content": [], "usage": {}},
    }
    stream = CutStream(sse([("message_start", start)]))
    rec = Recorder([httpx.Response(200, stream=stream)] * 3)
    waits = Waits()
    p = AnthropicProvider(
        "claude-sonnet-4-5",
        api_key=ANTHROPIC_KEY,
        async_client=rec.async_client(),
        retry=waits.policy(),
    )

    async def run() -> None:
        async for _ in p.astream([USER]):
            pass

    with pytest.raises(ProviderConnectionError, match="stream was cut"):
        asyncio.run(run())
    assert len(rec.requests) == 1


def test_anthropic_error_event_before_any_text_is_retried() -> None:
    start = {
        "type": "message_start",
        "message": {"id": "m", "model": "c", "content": [], "usage": {}},
    }
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    good = sse(
        [
            ("message_start", start),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "Hi"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 2},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )
    rec = Recorder(
        [sse_response(sse([("message_start", start), ("error", overloaded)])), sse_response(good)]
    )
    waits = Waits()
    events = list(make("anthropic", rec, waits).stream([USER]))
    assert len(rec.requests) == 2 and waits.waits == [0.5]
    assert isinstance(events[-1], Completion) and events[-1].text == "Hi"


def test_stream_429_before_it_starts_is_retried() -> None:
    waits = Waits()
    body = sse(
        [
            (
                None,
                {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]},
            ),
            (None, "[DONE]"),
        ]
    )
    rec = Recorder([error(429, headers={"retry-after": "3"}), sse_response(body)])
    events = list(make("openai", rec, waits).stream([USER]))
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta(text="ok")]
    assert len(rec.requests) == 2 and waits.waits == [3.0]


def test_async_retries_use_the_async_sleep() -> None:
    waits = Waits()
    rec = Recorder(
        [
            error(500),
            error(429, headers={"retry-after-ms": "250"}),
            json_response(200, OPENAI_REPLY),
        ]
    )
    p = OpenAIProvider(
        "gpt-4o-mini", api_key=OPENAI_KEY, async_client=rec.async_client(), retry=waits.policy()
    )
    done = asyncio.run(p.acomplete([USER]))
    assert done.text == "Paris." and waits.waits == [0.5, 0.25]


def test_retry_after_above_the_cap_falls_back_to_backoff() -> None:
    waits = Waits()
    rec = Recorder([error(429, headers={"retry-after": "3600"}), json_response(200, OPENAI_REPLY)])
    make("openai", rec, waits).complete([USER])
    assert waits.waits == [0.5]


def test_x_should_retry_header_overrides_the_status() -> None:
    waits = Waits()
    rec = Recorder([error(500, headers={"x-should-retry": "false"})])
    with pytest.raises(ProviderHTTPError):
        make("openai", rec, waits).complete([USER])
    assert len(rec.requests) == 1
    rec2 = Recorder(
        [error(400, headers={"x-should-retry": "true"}), json_response(200, OPENAI_REPLY)]
    )
    make("openai", rec2, waits).complete([USER])
    assert len(rec2.requests) == 2


def test_max_retries_zero_and_configurable() -> None:
    waits = Waits()
    rec = Recorder([error(503)] * 6)
    with pytest.raises(ProviderHTTPError):
        make("openai", rec, waits, max_retries=0).complete([USER])
    assert len(rec.requests) == 1
    with pytest.raises(ProviderHTTPError):
        make("openai", rec, waits, max_retries=4).complete([USER])
    assert len(rec.requests) == 6 and waits.waits == [0.5, 1.0, 2.0, 4.0]


def test_backoff_is_capped_at_eight_seconds_with_jitter_below() -> None:
    policy = RetryPolicy(max_retries=10, random=lambda: 0.0)
    assert [policy.backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    jittered = RetryPolicy(random=lambda: 1.0)
    assert jittered.backoff(0) == pytest.approx(0.375)  # at most 25% shorter


def test_retry_after_reads_http_dates() -> None:
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"}
    assert retry_after(headers, now=lambda: 1445412480.0) == pytest.approx(5.0)
    assert retry_after({"retry-after": "soon"}) is None
