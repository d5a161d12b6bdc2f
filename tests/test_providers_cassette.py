"""Cassettes record through a MockTransport and replay with no transport and no key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from providers_support import (
    ANTHROPIC_KEY,
    ANTHROPIC_REPLY,
    OPENAI_KEY,
    OPENAI_REPLY,
    Recorder,
    json_response,
    sse,
    sse_response,
)

from ctxlab.errors import CassetteMissError, DataFormatError, UsageError
from ctxlab.formats import load
from ctxlab.messages import Message
from ctxlab.providers import Cassette, Completion, TextDelta, get_provider

USER = Message(role="user", content="Capital of France?")
STREAM = sse(
    [
        (None, {"choices": [{"index": 0, "delta": {"content": "Pa"}, "finish_reason": None}]}),
        (None, {"choices": [{"index": 0, "delta": {"content": "ris"}, "finish_reason": "stop"}]}),
        (None, {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2}}),
        (None, "[DONE]"),
    ]
)


def test_record_then_replay_offline_without_key(tmp_path: Path, data_dir: Path) -> None:
    conv = load(data_dir / "mtbench101" / "mtbench101.jsonl")[0]
    prompt = list(conv.messages[:1])
    path = tmp_path / "run.jsonl"
    rec = Recorder([json_response(200, OPENAI_REPLY), sse_response(STREAM)])
    live = get_provider(
        "openai:gpt-4o-mini",
        api_key=OPENAI_KEY,
        cassette=Cassette(path, mode="record", transport=rec.transport()),
    )
    first = live.complete(prompt, max_tokens=20)
    streamed = list(live.stream(prompt))
    assert len(rec.requests) == 2

    text = path.read_text()
    assert OPENAI_KEY not in text and "Bearer" not in text
    assert len(text.splitlines()) == 2

    replay = get_provider("openai:gpt-4o-mini", cassette=Cassette(path, mode="replay"))
    again = replay.complete(prompt, max_tokens=20)
    assert again.text == first.text and again.usage == first.usage
    events = list(replay.stream(prompt))
    assert [e for e in events if isinstance(e, TextDelta)] == [
        e for e in streamed if isinstance(e, TextDelta)
    ]
    assert isinstance(events[-1], Completion) and events[-1].usage.input_tokens == 12


def test_replay_miss_names_the_request(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    rec = Recorder([json_response(200, OPENAI_REPLY)])
    live = get_provider(
        "openai:gpt-4o-mini",
        api_key=OPENAI_KEY,
        cassette=Cassette(path, mode="record", transport=rec.transport()),
    )
    live.complete([USER])
    replay = get_provider("openai:gpt-4o-mini", cassette=str(path))  # auto mode, recorded hit
    assert replay.complete([USER]).text == "Paris."
    strict = get_provider("openai:gpt-4o-mini", cassette=Cassette(path, mode="replay"))
    with pytest.raises(CassetteMissError) as info:
        strict.complete([Message(role="user", content="Capital of Spain?")])
    message = str(info.value)
    assert "POST /v1/chat/completions" in message and "Capital of Spain?" in message
    assert "gpt-4o-mini" in message and str(path) in message


def test_key_like_values_in_bodies_are_redacted(tmp_path: Path) -> None:
    path = tmp_path / "secret.jsonl"
    leaky = {**ANTHROPIC_REPLY, "echo": f"your key {ANTHROPIC_KEY}", "api_key": "plain-secret"}
    rec = Recorder([json_response(200, leaky)])
    p = get_provider(
        "anthropic:claude-sonnet-4-5",
        api_key=ANTHROPIC_KEY,
        cassette=Cassette(path, mode="record", transport=rec.transport()),
    )
    p.complete([USER], metadata={"user_id": "u1"}, api_key_hint="sk-proj-abcdefghijklmnop")
    assert rec.requests[0].headers["x-api-key"] == ANTHROPIC_KEY  # the live call had the key
    text = path.read_text()
    assert ANTHROPIC_KEY not in text and "sk-proj-abcdefghijklmnop" not in text
    entry = json.loads(text)
    assert entry["request"]["body"]["api_key_hint"] == "[REDACTED]"
    assert entry["request"]["body"]["max_tokens"] == 4096  # token counts are not secrets
    assert "x-api-key" not in text.lower()


def test_identical_requests_replay_in_order(tmp_path: Path) -> None:
    path = tmp_path / "seq.jsonl"
    second = json.loads(json.dumps(OPENAI_REPLY))
    second["choices"][0]["message"]["content"] = "Still Paris."
    rec = Recorder([json_response(200, OPENAI_REPLY), json_response(200, second)])
    live = get_provider(
        "openai:gpt-4o-mini",
        api_key=OPENAI_KEY,
        cassette=Cassette(path, mode="record", transport=rec.transport()),
    )
    live.complete([USER])
    live.complete([USER])
    replay = get_provider("openai:gpt-4o-mini", cassette=Cassette(path, mode="replay"))
    assert [replay.complete([USER]).text for _ in range(3)] == [
        "Paris.",
        "Still Paris.",
        "Still Paris.",
    ]


def test_async_record_and_replay(tmp_path: Path) -> None:
    path = tmp_path / "async.jsonl"
    rec = Recorder([json_response(200, OPENAI_REPLY)])

    async def run() -> tuple[str, str]:
        live = get_provider(
            "openai:gpt-4o-mini",
            api_key=OPENAI_KEY,
            cassette=Cassette(path, mode="record", transport=rec.transport()),
        )
        a = (await live.acomplete([USER])).text
        replay = get_provider("openai:gpt-4o-mini", cassette=Cassette(path, mode="replay"))
        b = (await replay.acomplete([USER])).text
        return a, b

    assert asyncio.run(run()) == ("Paris.", "Paris.")


def test_cassette_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        Cassette(tmp_path / "missing.jsonl", mode="replay")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "x"}\n')
    with pytest.raises(DataFormatError, match="line 1"):
        Cassette(bad)
    with pytest.raises(UsageError, match="client or a cassette"):
        get_provider("openai:gpt-4o-mini", cassette=tmp_path / "x.jsonl", client=httpx.Client())
