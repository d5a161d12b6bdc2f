"""A stub OpenAI-compatible upstream for tests and benchmarks: ``python -m ctxlab.live.proxy.stub``.

It answers ``POST /v1/chat/completions`` with ``echo: <last user text>`` and a deterministic
usage (prompt tokens = characters / 4 + 3 per message; completion tokens = ``max_tokens``
when given, else one per word), whole or streamed as server-sent events with the final usage
chunk. The requested model name chooses faults, ``+``-separated, e.g. ``echo+delay50``:

- ``delay<ms>``: wait that long before answering;
- ``fail<status>``: answer every attempt with that status and an OpenAI error body
  (``fail500``, ``fail400``, ``fail429``...);
- ``flaky<n>``: fail the first n attempts per model name with 503, then answer;
- ``stall``: never answer (30 s), so the caller times out;
- ``cut``: stream two chunks, then drop the connection;
- ``drip``: send the reply one byte per second (whole or streamed);
- ``huge<MB>``: reply with that many megabytes of text without spaces;
- ``badusage`` / ``negusage``: report ``usage`` as a string / with negative counts.

``GET /_stub/requests`` lists the bodies received (newest last); ``POST /_stub/reset``
forgets them. It is a plain ASGI app without a framework, so it adds little to benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["StubUpstream", "main"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_FLAG = re.compile(r"(delay|fail|flaky|huge)(\d+)|(stall|cut|drip|badusage|negusage)")


class StubUpstream:
    """The ASGI application (see the module docstring)."""

    def __init__(self, keep: int = 10000) -> None:
        self.requests: deque[dict[str, Any]] = deque(maxlen=keep)
        self.attempts: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        body = await _read(receive)
        if path == "/v1/chat/completions" and method == "POST":
            await self._chat(json.loads(body), send)
        elif path == "/_stub/requests":
            await _send_json(send, 200, list(self.requests))
        elif path == "/_stub/reset":
            self.requests.clear()
            self.attempts.clear()
            await _send_json(send, 200, {"ok": True})
        elif path == "/_stub/health":
            await _send_json(send, 200, {"ok": True})
        else:
            await _send_json(send, 404, _error("not found", "not_found"))

    async def _chat(self, data: dict[str, Any], send: Send) -> None:
        model = str(data.get("model", ""))
        self.attempts[model] += 1
        self.requests.append(data)
        flags = _flags(model)
        await asyncio.sleep(flags.get("delay", 0) / 1000)
        if "stall" in flags:
            await asyncio.sleep(30)
        status = flags.get("fail") or (503 if self.attempts[model] <= flags.get("flaky", 0) else 0)
        if status:
            error = _error(f"stub failure {status} for {model}", f"stub_{status}")
            await _send_json(send, status, error, {"retry-after": "0"})
            return
        text = "echo: " + _last_user(data.get("messages", []))
        if "huge" in flags:
            text = "x" * (flags["huge"] * 1024 * 1024)
        usage: Any = _usage(data, text)
        if "badusage" in flags:
            usage = "lots"
        if "negusage" in flags:
            usage = {"prompt_tokens": -5000000, "completion_tokens": -1, "total_tokens": -5000001}
        if "drip" in flags:
            await _drip(send, data, model, text)
            return
        if data.get("stream"):
            await self._stream(data, model, text, usage, send, cut="cut" in flags)
            return
        reply = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        await _send_json(send, 200, reply)

    async def _stream(
        self, data: dict[str, Any], model: str, text: str, usage: Any, send: Send, *, cut: bool
    ) -> None:
        head = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0}
        head["model"] = model
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        words = text.split(" ")
        pieces = [{"role": "assistant", "content": ""}] + [
            {"content": w if i == 0 else " " + w} for i, w in enumerate(words)
        ]
        for i, delta in enumerate(pieces):
            if cut and i == 2:
                raise ConnectionResetError("stub: stream cut on purpose")
            chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await _send_event(send, chunk)
        await _send_event(
            send, {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        )
        if (data.get("stream_options") or {}).get("include_usage"):
            await _send_event(send, {**head, "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _drip(send: Send, data: dict[str, Any], model: str, text: str) -> None:
    """A reply sent one byte per second (a stream as one SSE chunk, dripped the same way)."""
    head = {"id": "chatcmpl-stub", "created": 0, "model": model}
    if data.get("stream"):
        delta = {"role": "assistant", "content": text}
        chunk = {**head, "object": "chat.completion.chunk"}
        chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": "stop"}]
        body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
        kind = b"text/event-stream"
    else:
        message = {"role": "assistant", "content": text}
        reply = {**head, "object": "chat.completion"}
        reply["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
        body, kind = json.dumps(reply).encode(), b"application/json"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
    for i in range(len(body)):
        await send({"type": "http.response.body", "body": body[i : i + 1], "more_body": True})
        await asyncio.sleep(1)
    await send({"type": "http.response.body", "body": b""})


def _flags(model: str) -> dict[str, int]:
    out = {}
    for part in model.split("+")[1:]:
        m = _FLAG.fullmatch(part)
        if m:
            out[m[1] or m[3]] = int(m[2]) if m[2] else 1
    return out


def _last_user(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


def _usage(data: dict[str, Any], text: str) -> dict[str, int]:
    messages = data.get("messages", [])
    prompt = sum(len(json.dumps(m.get("content"))) // 4 + 3 for m in messages)
    completion = data.get("max_tokens") or data.get("max_completion_tokens") or len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "stub_error", "param": None, "code": code}}


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        event = await receive()
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            return b"".join(chunks)


async def _send_json(
    send: Send, status: int, data: Any, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


async def _send_event(send: Send, data: Any) -> None:
    body = b"data: " + json.dumps(data).encode() + b"\n\n"
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: list[str] | None = None) -> None:
    """Run the stub with uvicorn on 127.0.0.1."""
    import uvicorn

    parser = argparse.ArgumentParser(description="stub OpenAI-compatible upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    uvicorn.run(StubUpstream(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
