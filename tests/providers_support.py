"""Shared helpers for the provider tests: recorded waits, canned replies, SSE bodies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from ctxlab.providers.retry import RetryPolicy

OPENAI_KEY = "sk-test-OPENAIKEY0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-ANTHROPICKEY0123456789"


class Waits:
    """A sleep double: records every wait instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def policy(self, **kwargs: Any) -> RetryPolicy:
        """A retry policy that records its waits and has no jitter (random() == 0)."""
        return RetryPolicy(sleep=self.sleep, asleep=self.asleep, random=lambda: 0.0, **kwargs)


class Recorder:
    """A MockTransport handler answering from a list (or a function) and keeping the requests."""

    def __init__(self, replies: Iterable[Any] | Callable[[httpx.Request], Any]) -> None:
        self.requests: list[httpx.Request] = []
        self._fn = replies if callable(replies) else None
        self._replies = iter(()) if callable(replies) else iter(list(replies))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        reply = self._fn(request) if self._fn is not None else next(self._replies)
        if isinstance(reply, BaseException):
            raise reply
        return reply  # type: ignore[no-any-return]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport())

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport())


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def sse(events: Iterable[tuple[str | None, Any]]) -> bytes:
    """A text/event-stream body: (event name or None, data dict or raw str) pairs."""
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return "".join(out).encode()


def sse_response(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends some bytes and then fails like a dropped connection."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

    async def __aiter__(self) -> Any:
        yield self.head
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


OPENAI_REPLY = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 3,
        "total_tokens": 1203,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}

ANTHROPIC_REPLY = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Paris."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 4,
    },
}
