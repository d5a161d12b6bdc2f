"""The Chat Completions wire format: reading a request, writing a reply or stream chunks.

`ChatRequest.parse` checks a request body and splits it into what ctxlab handles itself
(model, messages, the reply limit, streaming) and the options passed through to the provider
unchanged (``tool_choice``, ``stop``, ``seed``...). Replies and chunks carry the model name the
client asked for and usage in OpenAI's convention (``prompt_tokens`` includes cached tokens).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ctxlab.errors import DataFormatError
from ctxlab.formats.openai_chat import from_openai, to_openai
from ctxlab.live.proxy.errors import ProxyHTTPError
from ctxlab.messages import Message
from ctxlab.providers.base import Completion
from ctxlab.usage import Usage

__all__ = ["MAX_MODEL_NAME", "OWN", "ChatRequest", "Reply", "messages_body", "usage_body"]

#: The longest model name a request may give (names are logged and looked up).
MAX_MODEL_NAME = 256

# Request keys ctxlab reads itself; everything else goes to the provider as is.
OWN = {"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n"}
_NAMED = ("temperature", "tools", "response_format")


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """A checked ``POST /v1/chat/completions`` body.

    Attributes:
        model: the model as the client named it (route prefix included).
        messages: the request's messages.
        stream: whether to answer with server-sent events.
        include_usage: send the final usage chunk when streaming.
        max_tokens: the reply limit (``max_tokens`` or ``max_completion_tokens``).
        params: the other provider options.
    """

    model: str
    messages: tuple[Message, ...]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any) -> ChatRequest:
        """Check a decoded JSON body.

        Raises:
            ProxyHTTPError: 400 naming the offending field.
        """
        if not isinstance(data, dict):
            raise _bad("the request body must be a JSON object", None)
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise _bad("'model' must be a non-empty string", "model")
        if len(model) > MAX_MODEL_NAME:
            raise _bad(f"'model' must be at most {MAX_MODEL_NAME} characters", "model")
        raw = data.get("messages")
        if not isinstance(raw, list) or not raw:
            raise _bad("'messages' must be a non-empty array of messages", "messages")
        try:
            messages = tuple(from_openai(raw, id_prefix=None))
        except DataFormatError as exc:
            raise _bad(f"invalid messages: {exc}", "messages") from exc
        if data.get("n", 1) not in (1, None):
            raise _bad("only n=1 is supported", "n")
        options = data.get("stream_options") or {}
        if not isinstance(options, dict):
            raise _bad("'stream_options' must be an object", "stream_options")
        return cls(
            model=model,
            messages=messages,
            stream=_flag(data, "stream"),
            include_usage=bool(options.get("include_usage")),
            max_tokens=_limit(data),
            params={k: v for k, v in data.items() if k not in OWN},
        )

    def call_options(self) -> dict[str, Any]:
        """Keyword arguments for `Provider.complete` (the model excluded)."""
        options = dict(self.params)
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        return options


def _bad(message: str, param: str | None) -> ProxyHTTPError:
    return ProxyHTTPError(400, message, param=param)


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"'{name}' must be true or false", name)
    return value


def _limit(data: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"'{name}' must be a positive integer", name)
        return value
    return None


def usage_body(usage: Usage) -> dict[str, Any]:
    """Usage in OpenAI's convention."""
    prompt = usage.total_input_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }


@dataclass(kw_only=True)
class Reply:
    """Shapes one reply (whole or streamed) for the client."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def completion(self, done: Completion) -> dict[str, Any]:
        """The ``chat.completion`` object."""
        message = to_openai([done.to_message()])[0]
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": done.finish_reason or "stop",
            "logprobs": None,
        }
        return {
            **self._head("chat.completion"),
            "choices": [choice],
            "usage": usage_body(done.usage),
        }

    def chunk(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        """One ``chat.completion.chunk`` with a single choice."""
        choice = {
            "index": 0,
            "delta": dict(delta),
            "finish_reason": finish_reason,
            "logprobs": None,
        }
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def final_chunks(self, done: Completion, include_usage: bool) -> list[dict[str, Any]]:
        """The chunks after the text: tool calls, the finish reason, then usage if asked."""
        out = []
        if done.tool_calls:
            calls = to_openai([done.to_message()])[0]["tool_calls"]
            out.append(self.chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}))
        out.append(self.chunk({}, done.finish_reason or "stop"))
        if include_usage:
            out.append(
                {
                    **self._head("chat.completion.chunk"),
                    "choices": [],
                    "usage": usage_body(done.usage),
                }
            )
        return out


def messages_body(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Stored messages as OpenAI dicts with ctxlab's id, timestamp and meta."""
    return to_openai(messages, extras=True)
