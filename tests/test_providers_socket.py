"""The OpenAI-compatible adapter against a real HTTP server on 127.0.0.1 (real sockets,
real sleeps): 429 + retry-after, 400, two 500s then 200, streaming."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ctxlab.errors import ProviderHTTPError
from ctxlab.messages import Message
from ctxlab.providers import Completion, TextDelta, get_provider

KEY = "sk-local-0123456789abcdefSECRET"
USER = Message(role="user", content="Say hi")
REPLY = {
    "id": "x",
    "object": "chat.completion",
    "model": "local-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
}
STREAM = (
    'data: {"choices":[{"index":0,"delta":{"content":"h"},"finish_reason":null}]}\n\n'
    'data: {"choices":[{"index":0,"delta":{"content":"i"},"finish_reason":"stop"}]}\n\n'
    'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1}}\n\n'
    "data: [DONE]\n\n"
)


class Script:
    """What the server answers, in order, and when each request arrived."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, str], str]] = []
        self.arrivals: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            script.arrivals.append(time.monotonic())
            length = int(self.headers.get("content-length", 0))
            script.bodies.append(json.loads(self.rfile.read(length)))
            script.auth.append(self.headers.get("authorization"))
            status, headers, body = (
                script.replies.pop(0) if script.replies else (200, {}, json.dumps(REPLY))
            )
            data = body.encode()
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _error(status: int, message: str, **headers: str) -> tuple[int, dict[str, str], str]:
    return (
        status,
        headers,
        json.dumps({"error": {"message": message, "type": "invalid_request_error"}}),
    )


def test_429_with_retry_after_one_second_is_retried_after_about_a_second(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.replies.append(_error(429, "slow down", **{"retry-after": "1"}))
    p = get_provider(f"openai-compatible:local-model@{url}", api_key=KEY)
    done = p.complete([USER])
    p.close()
    assert done.text == "hi" and done.usage.input_tokens == 9 and not done.usage.estimated
    assert len(script.arrivals) == 2
    gap = script.arrivals[1] - script.arrivals[0]
    assert 0.95 <= gap < 2.5, gap
    assert script.auth == [f"Bearer {KEY}"] * 2


def test_400_is_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies.append(_error(400, "'messages' must not be empty"))
    p = get_provider("openai-compatible", model="local-model", base_url=url, api_key=KEY)
    with pytest.raises(ProviderHTTPError) as info:
        p.complete([USER])
    assert info.value.status == 400 and info.value.message == "'messages' must not be empty"
    assert len(script.arrivals) == 1
    assert KEY not in str(info.value) and KEY not in info.value.body


def test_two_500s_then_200_succeed(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies += [_error(500, "oops"), _error(500, "oops again")]
    p = get_provider(f"openai-compatible:local-model@{url}")
    start = time.monotonic()
    done = p.complete([USER], max_tokens=5)
    elapsed = time.monotonic() - start
    assert done.text == "hi" and len(script.arrivals) == 3
    # Backoff 0.5 s then 1 s, each shortened by at most 25% jitter: at least 1.125 s.
    assert 1.1 <= elapsed < 4.0, elapsed
    assert script.bodies[0] == {
        "model": "local-model",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 5,
    }
    assert script.auth == [None, None, None]


def test_stream_over_a_socket(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies.append((200, {"content-type": "text/event-stream"}, STREAM))
    p = get_provider(f"openai-compatible:local-model@{url}")
    events = list(p.stream([USER]))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["h", "i"]
    assert isinstance(events[-1], Completion) and events[-1].usage.input_tokens == 9
