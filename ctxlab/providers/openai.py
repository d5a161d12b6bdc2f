"""OpenAI Chat Completions (``POST {base_url}/chat/completions``).

Request: ``model``, ``messages`` (`ctxlab.formats.openai_chat.to_openai`), optional
``max_completion_tokens``, ``temperature``, ``tools``, ``response_format`` and any extra keyword;
a stream adds ``"stream": true`` and ``"stream_options": {"include_usage": true}``, so the last
chunk before ``data: [DONE]`` carries the usage of the whole request (with ``choices: []``).

Usage: OpenAI's ``prompt_tokens`` *includes* the cached tokens reported in
``prompt_tokens_details.cached_tokens``, so ``input_tokens = prompt_tokens - cached_tokens`` and
``cached_input_tokens = cached_tokens``; ``output_tokens = completion_tokens`` (reasoning
tokens included, as billed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ctxlab.errors import DataFormatError, ProviderHTTPError, ProviderResponseError
from ctxlab.formats.openai_chat import message_from_openai, to_openai
from ctxlab.messages import FrozenDict, Message, thaw
from ctxlab.providers._http import SSEEvent
from ctxlab.providers._remote import Options, RemoteProvider, StreamAccumulator
from ctxlab.providers.base import Completion
from ctxlab.usage import Usage

__all__ = ["OpenAIProvider", "openai_usage"]


def openai_usage(raw: Any) -> Usage:
    """Normalise an OpenAI ``usage`` object (empty `Usage` when there is none).

    Raises:
        ProviderResponseError: ``usage`` is not an object, or a count is not a non-negative
            integer (a reply billed with such counts cannot be accounted for).
    """
    if not raw:
        return Usage()
    if not isinstance(raw, Mapping):
        raise ProviderResponseError(f"reply usage is not an object: {json.dumps(raw)[:200]}")
    details = raw.get("prompt_tokens_details") or {}
    if not isinstance(details, Mapping):
        raise ProviderResponseError("reply usage.prompt_tokens_details is not an object")
    prompt = _count(raw, "prompt_tokens")
    cached = _count(details, "cached_tokens")
    if cached > prompt:
        raise ProviderResponseError(
            f"reply usage has {cached} cached of only {prompt} prompt tokens"
        )
    return Usage(
        input_tokens=prompt - cached,
        cached_input_tokens=cached,
        output_tokens=_count(raw, "completion_tokens"),
        requests=1,
        raw=FrozenDict(raw),
    )


def _count(raw: Mapping[str, Any], name: str) -> int:
    value = raw.get(name) or 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProviderResponseError(
            f"reply usage.{name} must be a non-negative integer, got {json.dumps(value)[:100]}"
        )
    return value


class OpenAIProvider(RemoteProvider):
    """OpenAI's Chat Completions API; key from ``OPENAI_API_KEY`` or ``api_key=``."""

    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    api_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    path = "/chat/completions"
    #: The body field for the reply limit (``max_tokens`` is deprecated on OpenAI itself).
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    #: Whether streams ask for the final usage chunk.
    stream_usage: bool = True

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"} if api_key else {}

    def _body(self, messages: Sequence[Message], options: Options, *, stream: bool) -> Any:
        body: dict[str, Any] = {"model": options.model, "messages": to_openai(messages)}
        if options.max_tokens is not None:
            body[self.max_tokens_field] = options.max_tokens
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.tools:
            body["tools"] = [thaw(t) for t in options.tools]
        if options.response_format is not None:
            body["response_format"] = thaw(options.response_format)
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = {"include_usage": True}
        body.update(thaw(options.extra))
        return body

    def _parse(self, data: Any) -> Completion:
        try:
            choice = data["choices"][0]
            message = dict(choice["message"])
            message.setdefault("role", "assistant")
            if message.get("content") is None and message.get("refusal"):
                message["content"] = message["refusal"]
            reply = message_from_openai(message, where="choices[0].message")
        except (KeyError, IndexError, TypeError, DataFormatError) as exc:
            raise ProviderResponseError(
                f"{self.name} reply has no readable choices[0].message ({exc}): "
                f"{json.dumps(data)[:300]}"
            ) from exc
        return Completion(
            text=reply.text,
            tool_calls=reply.tool_calls,
            usage=openai_usage(data.get("usage")),
            model=str(data.get("model") or ""),
            finish_reason=choice.get("finish_reason"),
            raw=data,
        )

    def _accumulator(self) -> StreamAccumulator:
        return _ChunkAccumulator(self)


class _ChunkAccumulator:
    """Assembles ``chat.completion.chunk`` events into the shape of a whole reply."""

    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider
        self.done = False
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish: str | None = None
        self.head: dict[str, Any] = {}
        self.usage: Mapping[str, Any] | None = None

    def feed(self, event: SSEEvent) -> str | None:
        if event.data.strip() == "[DONE]":
            self.done = True
            return None
        chunk = _json(event.data, self.provider.name)
        if "error" in chunk:
            raise _stream_error(self.provider.name, chunk)
        self.head = self.head or {k: chunk[k] for k in ("id", "model", "created") if k in chunk}
        self.usage = chunk.get("usage") or self.usage
        choices = chunk.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        self.finish = choice.get("finish_reason") or self.finish
        delta = choice.get("delta") or {}
        for call in delta.get("tool_calls") or []:
            self._call(call)
        text = delta.get("content")
        if text:
            self.text.append(text)
        return text or None

    def _call(self, call: Mapping[str, Any]) -> None:
        entry = self.calls.setdefault(int(call.get("index", 0)), {"id": "", "name": ""})
        entry.setdefault("arguments", "")
        entry["id"] = call.get("id") or entry["id"]
        fn = call.get("function") or {}
        entry["name"] = entry["name"] or fn.get("name") or ""
        entry["arguments"] += fn.get("arguments") or ""

    def result(self) -> Completion:
        if not self.done and self.finish is None:
            raise ProviderResponseError(
                f"{self.provider.name} stream ended before its last chunk (no finish_reason, "
                "no [DONE]); the reply is incomplete: send the request again"
            )
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text)}
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for _, c in sorted(self.calls.items())
            ]
        choice = {"index": 0, "message": message, "finish_reason": self.finish}
        whole = {**self.head, "object": "chat.completion", "choices": [choice]}
        if self.usage:
            whole["usage"] = self.usage
        return self.provider._parse(whole)


def _json(data: str, provider: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ProviderResponseError(
            f"{provider} stream sent an event that is not JSON: {data[:200]!r}"
        ) from exc
    if not isinstance(value, dict):
        raise ProviderResponseError(f"{provider} stream sent a non-object event: {data[:200]!r}")
    return value


def _stream_error(provider: str, chunk: Mapping[str, Any]) -> ProviderHTTPError:
    error = chunk.get("error")
    message = error.get("message") if isinstance(error, Mapping) else str(error)
    code = error.get("code") if isinstance(error, Mapping) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return ProviderHTTPError(provider, status, json.dumps(chunk), message)
