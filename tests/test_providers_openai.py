"""OpenAI Chat Completions and OpenAI-compatible adapters: requests as the API reference
describes them, replies and streams parsed, usage normalised."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from providers_support import (
    OPENAI_KEY,
    OPENAI_REPLY,
    Recorder,
    json_response,
    sse,
    sse_response,
)

from ctxlab.formats import load
from ctxlab.formats.openai_chat import to_openai
from ctxlab.messages import Message, ToolCall
from ctxlab.providers import Completion, TextDelta, get_provider
from ctxlab.providers.openai import OpenAIProvider, openai_usage
from ctxlab.tokens import get_counter

SYSTEM = Message(role="system", content="You are terse.")
USER = Message(role="user", content="Capital of France?")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def openai(rec: Recorder, **kwargs: object) -> OpenAIProvider:
    return OpenAIProvider("gpt-4o-mini", api_key=OPENAI_KEY, client=rec.client(), **kwargs)  # type: ignore[arg-type]


def test_request_is_a_chat_completions_post() -> None:
    rec = Recorder([json_response(200, OPENAI_REPLY)])
    openai(rec).complete([SYSTEM, USER], max_tokens=50, temperature=0)
    (req,) = rec.requests
    assert req.method == "POST"
    assert str(req.url) == "https://api.openai.com/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == "ctxlab/0.1.0"
    assert rec.bodies[0] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "max_completion_tokens": 50,
        "temperature": 0,
    }


def test_reply_parsed_and_prompt_tokens_split_into_cached_and_not() -> None:
    done = openai(Recorder([json_response(200, OPENAI_REPLY)])).complete([USER])
    assert done.text == "Paris."
    assert done.finish_reason == "stop"
    assert done.model == "gpt-4o-mini-2024-07-18"
    # prompt_tokens (1200) includes the 1024 cached tokens.
    assert (done.usage.input_tokens, done.usage.cached_input_tokens) == (176, 1024)
    assert done.usage.total_input_tokens == 1200
    assert (done.usage.output_tokens, done.usage.requests, done.usage.estimated) == (3, 1, False)
    assert done.usage.raw["prompt_tokens"] == 1200
    assert done.raw["id"] == "chatcmpl-abc"
    assert done.latency_s > 0


def test_usage_without_details_has_no_cached_tokens() -> None:
    usage = openai_usage({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (10, 0, 2)


def test_tools_sent_and_tool_calls_read() -> None:
    reply = {
        **OPENAI_REPLY,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    rec = Recorder([json_response(200, reply)])
    done = openai(rec).complete([USER], tools=[WEATHER], tool_choice="auto")
    assert rec.bodies[0]["tools"] == [WEATHER]
    assert rec.bodies[0]["tool_choice"] == "auto"
    assert done.text == ""
    assert done.tool_calls == (
        ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
    )
    assert done.finish_reason == "tool_calls"
    follow_up = [
        USER,
        done.to_message(),
        Message(role="tool", content="18C", tool_call_id="call_1"),
    ]
    rec2 = Recorder([json_response(200, OPENAI_REPLY)])
    openai(rec2).complete(follow_up, tools=[WEATHER])
    sent = rec2.bodies[0]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert sent[2] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}


def test_response_format_passed_unchanged() -> None:
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {"type": "object", "properties": {"response": {"type": "string"}}},
        },
    }
    rec = Recorder([json_response(200, OPENAI_REPLY)] * 2)
    p = openai(rec)
    p.complete([USER], response_format={"type": "json_object"})
    p.complete([USER], response_format=schema)
    assert rec.bodies[0]["response_format"] == {"type": "json_object"}
    assert rec.bodies[1]["response_format"] == schema


def test_real_recorded_conversation_goes_on_the_wire_as_to_openai(data_dir) -> None:  # type: ignore[no-untyped-def]
    conv = load(data_dir / "taubench" / "gpt-4o-airline-dev.json")[0]
    assert any(m.tool_calls for m in conv)
    rec = Recorder([json_response(200, OPENAI_REPLY)])
    openai(rec).complete(conv.messages)
    assert rec.bodies[0]["messages"] == to_openai(conv.messages)
    assert "id" not in rec.bodies[0]["messages"][0]  # no ctxlab extras on the wire


def _chunk(delta: dict, finish: str | None = None, **extra: object) -> dict:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": None,
        **extra,
    }


STREAM = sse(
    [
        (None, _chunk({"role": "assistant", "content": ""})),
        (None, _chunk({"content": "Par"})),
        (None, _chunk({"content": "is."})),
        (None, _chunk({}, "stop")),
        (
            None,
            {
                "id": "chatcmpl-s",
                "object": "chat.completion.chunk",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [],
                "usage": {
                    "prompt_tokens": 2000,
                    "completion_tokens": 2,
                    "total_tokens": 2002,
                    "prompt_tokens_details": {"cached_tokens": 1920},
                },
            },
        ),
        (None, "[DONE]"),
    ]
)


def test_stream_asks_for_usage_and_reads_the_last_chunk() -> None:
    rec = Recorder([sse_response(STREAM)])
    events = list(openai(rec).stream([USER], max_tokens=10))
    body = rec.bodies[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert events[:-1] == [TextDelta(text="Par"), TextDelta(text="is.")]
    done = events[-1]
    assert isinstance(done, Completion)
    assert done.text == "Paris." and done.finish_reason == "stop"
    assert (done.usage.input_tokens, done.usage.cached_input_tokens) == (80, 1920)
    assert done.usage.output_tokens == 2 and not done.usage.estimated


def test_stream_assembles_tool_call_arguments() -> None:
    call = {"index": 0, "id": "call_9", "type": "function"}
    body = sse(
        [
            (
                None,
                _chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {**call, "function": {"name": "get_weather", "arguments": ""}}
                        ],
                    }
                ),
            ),
            (None, _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]})),
            (
                None,
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]}),
            ),
            (None, _chunk({}, "tool_calls")),
            (None, "[DONE]"),
        ]
    )
    events = list(openai(Recorder([sse_response(body)])).stream([USER], tools=[WEATHER]))
    (done,) = events  # no text, so no TextDelta
    assert isinstance(done, Completion)
    assert done.tool_calls == (
        ToolCall(id="call_9", name="get_weather", arguments='{"city":"Oslo"}'),
    )
    assert done.finish_reason == "tool_calls"
    assert done.usage.estimated  # no usage chunk came: counted locally


def test_async_complete_and_stream() -> None:
    rec = Recorder([json_response(200, OPENAI_REPLY), sse_response(STREAM)])

    async def run() -> tuple[Completion, list[object]]:
        p = OpenAIProvider("gpt-4o-mini", api_key=OPENAI_KEY, async_client=rec.async_client())
        done = await p.acomplete([USER])
        events = [e async for e in p.astream([USER])]
        await p.aclose()
        return done, events

    done, events = asyncio.run(run())
    assert done.text == "Paris." and done.usage.cached_input_tokens == 1024
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Par", "is."]
    assert isinstance(events[-1], Completion) and events[-1].usage.input_tokens == 80


def test_compatible_server_without_usage_is_counted_locally() -> None:
    reply = {
        "choices": [
            {"message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
        ]
    }
    rec = Recorder([json_response(200, reply)])
    p = get_provider("openai-compatible:smollm2@http://127.0.0.1:8765/v1", client=rec.client())
    done = p.complete([SYSTEM, USER], max_tokens=16)
    (req,) = rec.requests
    assert str(req.url) == "http://127.0.0.1:8765/v1/chat/completions"
    assert "authorization" not in req.headers
    assert rec.bodies[0]["max_tokens"] == 16 and "max_completion_tokens" not in rec.bodies[0]
    counter = get_counter()
    assert done.usage.estimated
    assert done.usage.input_tokens == counter.count_messages([SYSTEM, USER])
    assert done.usage.output_tokens == counter.count_text("Paris.")
    assert done.model == "smollm2"


def test_compatible_keyword_form_key_and_stream_without_usage_option() -> None:
    rec = Recorder(
        [sse_response(sse([(None, _chunk({"content": "hi"}, "stop")), (None, "[DONE]")]))]
    )
    p = get_provider(
        "openai-compatible",
        model="m",
        base_url="https://openrouter.example/api/v1",
        api_key="sk-or-0123456789abcdef",
        client=rec.client(),
        stream_usage=False,
    )
    events = list(p.stream([USER]))
    assert rec.requests[0].headers["authorization"] == "Bearer sk-or-0123456789abcdef"
    assert "stream_options" not in rec.bodies[0]
    assert isinstance(events[-1], Completion) and events[-1].usage.estimated


def test_refusal_is_the_text() -> None:
    reply = json.loads(json.dumps(OPENAI_REPLY))
    reply["choices"][0]["message"] = {"role": "assistant", "content": None, "refusal": "No."}
    done = openai(Recorder([json_response(200, reply)])).complete([USER])
    assert done.text == "No."


def test_streamed_error_chunk_raises_with_message() -> None:
    from ctxlab.errors import ProviderHTTPError

    body = sse([(None, {"error": {"message": "context too long", "code": 400}})])
    with pytest.raises(ProviderHTTPError) as info:
        list(openai(Recorder([sse_response(body)])).stream([USER]))
    assert info.value.status == 400 and info.value.message == "context too long"


def test_extra_keywords_go_into_the_body() -> None:
    rec = Recorder([json_response(200, OPENAI_REPLY)])
    openai(rec).complete([USER], seed=7, stop=["\n"], model="gpt-4o")
    assert rec.bodies[0]["seed"] == 7 and rec.bodies[0]["stop"] == ["\n"]
    assert rec.bodies[0]["model"] == "gpt-4o"


def test_mock_transport_sees_httpx_request() -> None:
    # Guard against silently using the network: an injected client is the one used.
    rec = Recorder([json_response(200, OPENAI_REPLY)])
    client = rec.client()
    p = OpenAIProvider("gpt-4o-mini", api_key=OPENAI_KEY, client=client)
    p.complete([USER])
    p.close()
    assert not client.is_closed  # injected clients are left open
    assert isinstance(rec.requests[0], httpx.Request)
