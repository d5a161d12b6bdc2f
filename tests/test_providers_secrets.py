"""No API key in logs, exception messages, reprs or cassettes."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import httpx
import pytest
from providers_support import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    OPENAI_REPLY,
    Recorder,
    Waits,
    json_response,
)

from ctxlab.errors import ProviderConnectionError, ProviderHTTPError
from ctxlab.messages import Message
from ctxlab.providers import Cassette, get_provider
from ctxlab.providers._http import redact

USER = Message(role="user", content="hi")


def _echoing_401(request: httpx.Request) -> httpx.Response:
    # Some servers echo the credential they rejected.
    sent = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    return json_response(401, {"error": {"message": f"Incorrect API key provided: {sent}"}})


@pytest.mark.parametrize(
    ("spec", "key"), [("openai:gpt-4o", OPENAI_KEY), ("anthropic:claude-sonnet-4-5", ANTHROPIC_KEY)]
)
def test_key_absent_from_errors_logs_and_reprs(
    spec: str, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    waits = Waits()
    # First a 500 (retried, logged), then a 401 that echoes the key.
    rec = Recorder(lambda r: _echoing_401(r) if len(rec.requests) > 1 else json_response(500, {}))
    p = get_provider(spec, api_key=key, client=rec.client(), retry=waits.policy())
    with pytest.raises(ProviderHTTPError) as info:
        p.complete([USER])
    assert info.value.status == 401 and len(rec.requests) == 2
    rendered = "".join(traceback.format_exception(info.value))
    for text in (
        str(info.value),
        info.value.body,
        info.value.message or "",
        rendered,
        caplog.text,
        repr(p),
        repr(p._http),
    ):
        assert key not in text
    assert "[REDACTED]" in (info.value.message or "")
    assert "retrying" in caplog.text  # the retry was logged, without the key


def test_key_absent_from_connection_errors() -> None:
    rec = Recorder(lambda r: httpx.ConnectError(f"refused {r.headers['authorization']}"))
    p = get_provider("openai:gpt-4o", api_key=OPENAI_KEY, client=rec.client(), max_retries=0)
    with pytest.raises(ProviderConnectionError) as info:
        p.complete([USER])
    assert OPENAI_KEY not in str(info.value)


def test_key_absent_from_a_recorded_cassette_even_when_echoed(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    echo = {**OPENAI_REPLY, "system_fingerprint": OPENAI_KEY}
    rec = Recorder([json_response(200, echo, headers={"x-api-key-echo": OPENAI_KEY})])
    p = get_provider(
        "openai:gpt-4o",
        api_key=OPENAI_KEY,
        cassette=Cassette(path, mode="record", transport=rec.transport()),
    )
    p.complete([USER])
    assert OPENAI_KEY not in path.read_text()


def test_redact_patterns() -> None:
    assert redact("key sk-abcdefgh12345678 here") == "key [REDACTED] here"
    assert redact("Authorization: Bearer abc.def-ghi_jkl") == "Authorization: [REDACTED]"
    assert redact("custom-secret-value", ["custom-secret-value"]) == "[REDACTED]"
    assert redact("max_tokens: 12") == "max_tokens: 12"
