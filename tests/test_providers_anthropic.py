"""Anthropic Messages adapter: requests as the API reference describes them, the full SSE
event sequence, cumulative usage, error events inside a 200 stream, usage normalisation."""

from __future__ import annotations

import asyncio

import pytest
from providers_support import (
    ANTHROPIC_KEY,
    ANTHROPIC_REPLY,
    Recorder,
    json_response,
    sse,
    sse_response,
)

from ctxlab.errors import ProviderHTTPError, ProviderResponseError
from ctxlab.messages import Message, ToolCall
from ctxlab.providers import Completion, TextDelta, get_provider
from ctxlab.providers.anthropic import AnthropicProvider, anthropic_usage

SYSTEM = Message(role="system", content="You are terse.")
USER = Message(role="user", content="Capital of France?")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def anthropic(rec: Recorder, **kwargs: object) -> AnthropicProvider:
    return AnthropicProvider(
        "claude-sonnet-4-5",
        api_key=ANTHROPIC_KEY,
        client=rec.client(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_request_hoists_system_and_always_sends_max_tokens() -> None:
    rec = Recorder([json_response(200, ANTHROPIC_REPLY)])
    anthropic(rec).complete([SYSTEM, USER], temperature=0.2)
    (req,) = rec.requests
    assert str(req.url) == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == ANTHROPIC_KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    assert rec.bodies[0] == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}],
        "temperature": 0.2,
    }


def test_usage_input_tokens_exclude_cache_reads_and_writes() -> None:
    done = anthropic(Recorder([json_response(200, ANTHROPIC_REPLY)])).complete(
        [USER], max_tokens=64
    )
    assert done.text == "Paris." and done.finish_reason == "stop"
    u = done.usage
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens) == (
        20,
        1000,
        100,
        4,
    )
    assert u.total_input_tokens == 1120
    assert anthropic_usage(None).requests == 0


def test_tools_translated_and_tool_use_read_back() -> None:
    reply = {
        **ANTHROPIC_REPLY,
        "content": [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
    }
    rec = Recorder([json_response(200, reply), json_response(200, ANTHROPIC_REPLY)])
    p = anthropic(rec)
    done = p.complete([USER], tools=[WEATHER], tool_choice="required", stop="END")
    body = rec.bodies[0]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["stop_sequences"] == ["END"]
    assert done.text == "Let me check."
    assert done.tool_calls == (
        ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}'),
    )
    assert done.finish_reason == "tool_calls"
    # The follow-up: tool_use in the assistant turn, tool_result in a user turn.
    p.complete(
        [USER, done.to_message(), Message(role="tool", content="18C", tool_call_id="toolu_1")]
    )
    turns = rec.bodies[1]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}
    ]


def test_consecutive_user_messages_merge_into_one_turn() -> None:
    rec = Recorder([json_response(200, ANTHROPIC_REPLY)])
    anthropic(rec).complete([USER, Message(role="user", content="Answer briefly.")])
    assert rec.bodies[0]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Capital of France?"},
                {"type": "text", "text": "Answer briefly."},
            ],
        }
    ]


def test_response_format_becomes_a_system_instruction() -> None:
    rec = Recorder([json_response(200, ANTHROPIC_REPLY)])
    anthropic(rec).complete([SYSTEM, USER], response_format={"type": "json_object"})
    system = rec.bodies[0]["system"]
    assert system.startswith("You are terse.\n\n") and "JSON object" in system


def _events(*, cut_before_stop: bool = False) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_s",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [],
                    "stop_reason": None,
                    "usage": {
                        "input_tokens": 25,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 2048,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Checking"},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": " now."},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {},
                },
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 40},
            },
        ),
        ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 57}}),
    ]
    if not cut_before_stop:
        events.append(("message_stop", {"type": "message_stop"}))
    return events


def test_full_event_sequence_with_ping_tool_use_and_cumulative_usage() -> None:
    rec = Recorder([sse_response(sse(_events()))])
    events = list(anthropic(rec).stream([USER], tools=[WEATHER]))
    assert rec.bodies[0]["stream"] is True
    assert events[:-1] == [TextDelta(text="Checking"), TextDelta(text=" now.")]
    done = events[-1]
    assert isinstance(done, Completion)
    assert done.text == "Checking now."
    assert done.tool_calls == (
        ToolCall(id="toolu_2", name="get_weather", arguments='{"city": "Oslo"}'),
    )
    assert done.finish_reason == "tool_calls"
    # message_delta usage is cumulative: 57 replaces 40 (and the initial 1), never 98.
    assert done.usage.output_tokens == 57
    assert (done.usage.input_tokens, done.usage.cached_input_tokens) == (25, 2048)


def test_error_event_inside_a_200_stream_after_text_is_raised_not_retried() -> None:
    error = (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    body = sse([*_events(cut_before_stop=True)[:4], error])
    rec = Recorder([sse_response(body)] * 3)
    seen: list[object] = []
    with pytest.raises(ProviderHTTPError) as info:
        for event in anthropic(rec).stream([USER]):
            seen.append(event)
    assert info.value.status == 529 and "Overloaded" in str(info.value)
    assert seen == [TextDelta(text="Checking")]
    assert len(rec.requests) == 1


def test_stream_that_stops_before_message_stop_is_an_error() -> None:
    rec = Recorder([sse_response(sse(_events(cut_before_stop=True)))])
    with pytest.raises(ProviderResponseError, match="before message_stop"):
        list(anthropic(rec).stream([USER]))


def test_async_stream_and_get_provider_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    rec = Recorder([sse_response(sse(_events()))])

    async def run() -> list[object]:
        p = get_provider("anthropic:claude-sonnet-4-5", async_client=rec.async_client())
        return [e async for e in p.astream([USER])]

    events = asyncio.run(run())
    assert rec.requests[0].headers["x-api-key"] == ANTHROPIC_KEY
    assert isinstance(events[-1], Completion) and events[-1].usage.output_tokens == 57
