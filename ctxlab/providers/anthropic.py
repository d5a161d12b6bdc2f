"""Anthropic Messages (``POST {base_url}/v1/messages``).

Request: headers ``x-api-key`` and ``anthropic-version: 2023-06-01``; body ``model``,
``max_tokens`` (required by the API: `default_max_tokens` when the call gives none),
``messages`` and a top-level ``system`` (`ctxlab.formats.anthropic.to_anthropic` hoists system
messages, merges consecutive same-role turns and writes ``tool_use``/``tool_result`` blocks).
OpenAI-shaped ``tools`` become ``{"name", "description", "input_schema"}``, an OpenAI-shaped
``tool_choice`` is translated, ``stop`` becomes ``stop_sequences``. The Messages API has no JSON
mode, so ``response_format`` becomes a system instruction (with the schema when one is given).

Stream: ``message_start``, then per content block ``content_block_start``,
``content_block_delta``... ``content_block_stop``, then ``message_delta`` (stop reason and
*cumulative* usage: its counts replace the earlier ones, never add to them) and
``message_stop``; ``ping`` events may come anywhere, and an ``error`` event may arrive inside a
200 response (e.g. ``overloaded_error``): it raises `ProviderHTTPError` with the matching status.

Usage: Anthropic's ``input_tokens`` *excludes* cache reads and writes, so it maps straight to
``input_tokens``; ``cache_read_input_tokens`` to ``cached_input_tokens``;
``cache_creation_input_tokens`` to ``cache_write_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ctxlab.errors import DataFormatError, ProviderHTTPError, ProviderResponseError
from ctxlab.formats.anthropic import from_anthropic, to_anthropic
from ctxlab.messages import FrozenDict, Message, thaw
from ctxlab.providers._http import SSEEvent
from ctxlab.providers._remote import Options, RemoteProvider, StreamAccumulator
from ctxlab.providers.base import Completion, Tool
from ctxlab.usage import Usage

__all__ = ["AnthropicProvider", "anthropic_usage"]

API_VERSION = "2023-06-01"

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Error types an ``error`` event can carry, and the HTTP status they stand for.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_BLOCKS = ("text", "tool_use")


def anthropic_usage(raw: Mapping[str, Any] | None) -> Usage:
    """Normalise an Anthropic ``usage`` object (empty `Usage` when there is none)."""
    if not raw:
        return Usage()
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        cached_input_tokens=int(raw.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(raw.get("cache_creation_input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        requests=1,
        raw=FrozenDict(raw),
    )


class AnthropicProvider(RemoteProvider):
    """Anthropic's Messages API; key from ``ANTHROPIC_API_KEY`` or ``api_key=``.

    Attributes:
        default_max_tokens: ``max_tokens`` sent when a call gives none (the API requires it).
    """

    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    api_key_env = "ANTHROPIC_API_KEY"
    path = "/v1/messages"
    default_max_tokens: int = 4096

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def _body(self, messages: Sequence[Message], options: Options, *, stream: bool) -> Any:
        system, turns = to_anthropic(messages)
        instruction = _format_instruction(options.response_format)
        if instruction:
            system = f"{system}\n\n{instruction}" if system else instruction
        body: dict[str, Any] = {
            "model": options.model,
            "max_tokens": options.max_tokens or self.default_max_tokens,
            "messages": turns,
        }
        if system:
            body["system"] = system
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.tools:
            body["tools"] = [_tool(t) for t in options.tools]
        if stream:
            body["stream"] = True
        extra = dict(thaw(options.extra))
        if "stop" in extra:
            stop = extra.pop("stop")
            body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if "tool_choice" in extra:
            body["tool_choice"] = _tool_choice(extra.pop("tool_choice"))
        body.update(extra)
        return body

    def _parse(self, data: Any) -> Completion:
        try:
            blocks = [b for b in data["content"] if b.get("type") in _BLOCKS]
            replies = from_anthropic(None, [{"role": "assistant", "content": blocks}])
        except (KeyError, TypeError, AttributeError, DataFormatError) as exc:
            raise ProviderResponseError(
                f"anthropic reply has no readable content ({exc}): {json.dumps(data)[:300]}"
            ) from exc
        stop = data.get("stop_reason")
        return Completion(
            text="".join(m.text for m in replies),
            tool_calls=tuple(c for m in replies for c in m.tool_calls),
            usage=anthropic_usage(data.get("usage")),
            model=str(data.get("model") or ""),
            finish_reason=_FINISH.get(stop, stop),
            raw=data,
        )

    def _accumulator(self) -> StreamAccumulator:
        return _EventAccumulator(self)


def _tool(tool: Tool) -> dict[str, Any]:
    if "function" not in tool:
        return dict(thaw(tool))  # already in Anthropic's shape
    fn = tool["function"]
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = thaw(fn.get("parameters") or {"type": "object", "properties": {}})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        return {"type": "tool", "name": choice["function"]["name"]}
    return choice


def _format_instruction(response_format: Mapping[str, Any] | None) -> str | None:
    if not response_format or response_format.get("type") == "text":
        return None
    instruction = "Respond with one JSON object and nothing else: no prose, no code fences."
    spec = response_format.get("json_schema")
    if isinstance(spec, Mapping) and spec.get("schema") is not None:
        schema = json.dumps(thaw(spec["schema"]), sort_keys=True)
        instruction += f" The object must match this JSON schema: {schema}"
    return instruction


class _EventAccumulator:
    """Assembles Messages stream events into the shape of a whole reply."""

    def __init__(self, provider: AnthropicProvider) -> None:
        self.provider = provider
        self.done = False
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> str | None:
        data = _json(event.data)
        kind = data.get("type") or event.event
        if kind == "message_start":
            self.message = dict(data.get("message") or {})
            self.usage = dict(self.message.get("usage") or {})
        elif kind == "content_block_start":
            self.blocks[int(data["index"])] = dict(data["content_block"])
        elif kind == "content_block_delta":
            return self._delta(self.blocks.setdefault(int(data["index"]), {}), data["delta"])
        elif kind == "content_block_stop":
            self._close(self.blocks.get(int(data["index"]), {}))
        elif kind == "message_delta":
            self.message.update(data.get("delta") or {})
            # Cumulative counts: assign, never add.
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise _stream_error(data)
        return None  # ping and event types added later carry no text

    @staticmethod
    def _delta(block: dict[str, Any], delta: Mapping[str, Any]) -> str | None:
        if delta.get("type") == "text_delta":
            block["text"] = block.get("text", "") + delta["text"]
            return str(delta["text"]) or None
        if delta.get("type") == "input_json_delta":
            block["partial_json"] = block.get("partial_json", "") + delta["partial_json"]
        return None

    @staticmethod
    def _close(block: dict[str, Any]) -> None:
        if block.get("type") == "tool_use" and "partial_json" in block:
            text = block.pop("partial_json")
            try:
                block["input"] = json.loads(text) if text else {}
            except ValueError as exc:
                raise ProviderResponseError(
                    f"anthropic streamed tool input that is not JSON: {text[:200]!r}"
                ) from exc

    def result(self) -> Completion:
        if not self.done:
            raise ProviderResponseError(
                "anthropic stream ended before message_stop; the reply is incomplete: "
                "send the request again"
            )
        whole = dict(self.message)
        whole["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        whole["usage"] = self.usage
        return self.provider._parse(whole)


def _json(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ProviderResponseError(
            f"anthropic stream sent an event that is not JSON: {data[:200]!r}"
        ) from exc
    if not isinstance(value, dict):
        raise ProviderResponseError(f"anthropic stream sent a non-object event: {data[:200]!r}")
    return value


def _stream_error(data: Mapping[str, Any]) -> ProviderHTTPError:
    error = data.get("error") or {}
    kind = error.get("type", "api_error") if isinstance(error, Mapping) else "api_error"
    message = error.get("message") if isinstance(error, Mapping) else str(error)
    status = _ERROR_STATUS.get(kind, 500)
    return ProviderHTTPError("anthropic", status, json.dumps(data), f"{kind}: {message}")
