"""The provider registry, the scripted provider and the response cache."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from providers_support import OPENAI_KEY, OPENAI_REPLY, Recorder, json_response

from ctxlab.errors import ConfigurationError, UsageError
from ctxlab.formats import load
from ctxlab.messages import Message, ToolCall
from ctxlab.providers import (
    Completion,
    OpenAICompatibleProvider,
    ResponseCache,
    ScriptedProvider,
    TextDelta,
    get_provider,
    names,
)
from ctxlab.tokens import get_counter

USER = Message(role="user", content="Capital of France?")


def test_names_and_specs() -> None:
    assert names() == ["anthropic", "openai", "openai-compatible", "scripted"]
    p = get_provider("openai-compatible:llama3:8b@http://127.0.0.1:11434/v1")
    assert isinstance(p, OpenAICompatibleProvider)
    assert (p.model, p.base_url) == ("llama3:8b", "http://127.0.0.1:11434/v1")
    assert p.spec == "openai-compatible:llama3:8b"
    assert get_provider("openai:gpt-4o-mini").spec == "openai:gpt-4o-mini"
    assert get_provider("anthropic:claude-sonnet-4-5").model == "claude-sonnet-4-5"


def test_bad_specs_say_what_to_write() -> None:
    with pytest.raises(UsageError, match="known providers: anthropic, openai"):
        get_provider("gemini:pro")
    with pytest.raises(UsageError, match="openai:MODEL"):
        get_provider("openai")
    with pytest.raises(UsageError, match="base URL"):
        get_provider("openai-compatible:m")
    with pytest.raises(UsageError, match="give it once"):
        get_provider("openai-compatible:m@http://a/v1", base_url="http://b/v1")
    with pytest.raises(UsageError, match="bad arguments"):
        get_provider("scripted", nonsense=1)


def test_missing_key_is_a_configuration_error_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    p = get_provider("openai:gpt-4o-mini")  # building needs no key
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        p.complete([USER])


def test_scripted_replies_in_order_with_counted_usage(data_dir: Path) -> None:
    conv = load(data_dir / "locomo" / "locomo7.json")[0]
    prompt = list(conv.messages[:12])
    p = get_provider(
        "scripted",
        replies=[
            "first",
            Message(
                role="assistant",
                content="",
                tool_calls=(ToolCall(id="c1", name="f", arguments="{}"),),
            ),
        ],
    )
    done = p.complete(prompt, max_tokens=5)
    counter = get_counter()
    assert done.text == "first" and done.finish_reason == "stop"
    assert done.usage.input_tokens == counter.count_messages(prompt)
    assert done.usage.output_tokens == counter.count_text("first") and done.usage.requests == 1
    second = p.complete(prompt)
    assert second.finish_reason == "tool_calls" and second.tool_calls[0].name == "f"
    assert isinstance(p, ScriptedProvider)
    assert [c.options["max_tokens"] for c in p.calls] == [5, None]
    with pytest.raises(UsageError, match="ran out of replies"):
        p.complete(prompt)


def test_scripted_function_echo_errors_and_streams() -> None:
    p = ScriptedProvider(lambda messages: f"{len(messages)} messages")
    assert p.complete([USER, USER]).text == "2 messages"
    echo = ScriptedProvider()
    events = list(echo.stream([USER]))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Capital", " of", " France?"]
    assert isinstance(events[-1], Completion) and events[-1].text == "Capital of France?"
    failing = ScriptedProvider([TimeoutError("scripted failure"), "ok"])
    with pytest.raises(TimeoutError):
        failing.complete([USER])
    assert asyncio.run(failing.acomplete([USER])).text == "ok"
    cyc = ScriptedProvider(["a", "b"], cycle=True)
    assert [cyc.complete([USER]).text for _ in range(3)] == ["a", "b", "a"]


def test_scripted_is_thread_safe() -> None:
    p = ScriptedProvider([str(i) for i in range(200)])
    got: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            text = p.complete([USER]).text
            with lock:
                got.append(text)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got, key=int) == [str(i) for i in range(200)]


def test_completion_freezes_raw_and_converts_to_a_message() -> None:
    c = Completion(text="hi", raw={"a": [1]})
    assert c.raw["a"] == (1,)
    m = c.to_message(id="reply-1")
    assert (m.role, m.text, m.id) == ("assistant", "hi", "reply-1")


def test_response_cache_serves_repeats_without_a_call(tmp_path: Path) -> None:
    rec = Recorder([json_response(200, OPENAI_REPLY)])
    cache = ResponseCache(tmp_path / "cache.sqlite3")
    p = get_provider("openai:gpt-4o-mini", api_key=OPENAI_KEY, client=rec.client(), cache=cache)
    first = p.complete([USER], temperature=0)
    again = p.complete([USER], temperature=0)
    assert len(rec.requests) == 1 and len(cache) == 1
    assert not first.cached and again.cached
    assert (again.text, again.usage, again.tool_calls) == (
        first.text,
        first.usage,
        first.tool_calls,
    )
    # A different parameter is a different request.
    rec2 = Recorder([json_response(200, OPENAI_REPLY)])
    p2 = get_provider("openai:gpt-4o-mini", api_key=OPENAI_KEY, client=rec2.client(), cache=cache)
    p2.complete([USER], temperature=1)
    assert len(rec2.requests) == 1 and len(cache) == 2
    # A cache hit needs no key at all.
    keyless = get_provider("openai:gpt-4o-mini", api_key="", cache=cache)
    assert keyless.complete([USER], temperature=0).cached


def test_default_cache_lives_under_ctxlab_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTXLAB_HOME", str(tmp_path))
    rec = Recorder([json_response(200, OPENAI_REPLY)])
    p = get_provider("openai:gpt-4o-mini", api_key=OPENAI_KEY, client=rec.client(), cache=True)
    p.complete([USER])
    assert (tmp_path / "cache" / "responses.sqlite3").exists()
    off = get_provider("openai:gpt-4o-mini", api_key=OPENAI_KEY, client=rec.client())
    assert off._cache is None  # live providers do not cache unless asked
