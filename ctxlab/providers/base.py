"""The provider interface: `Provider`, the `Completion` it returns, and stream events.

Every provider speaks ctxlab `Message` values in and out::

    provider.complete(messages, model=None, max_tokens=None, temperature=None,
                      tools=None, response_format=None, **extra) -> Completion
    await provider.acomplete(...)                     -> Completion
    for event in provider.stream(...): ...            TextDelta..., then one Completion
    async for event in provider.astream(...): ...     same, asynchronously

``tools`` use the OpenAI function-tool shape (``{"type": "function", "function": {"name",
"description", "parameters"}}``) whatever the provider; ``response_format`` uses OpenAI's
(``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {...}}``). ``extra``
keywords go into the request body unchanged (``tool_choice``, ``stop``, ``seed``...).

``finish_reason`` is normalised to OpenAI's vocabulary: ``stop``, ``length``, ``tool_calls``,
``content_filter``; the provider's own value stays in ``raw``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

from ctxlab.messages import FrozenDict, Message, ToolCall
from ctxlab.usage import Usage

__all__ = [
    "Completion",
    "Provider",
    "ResponseFormat",
    "StreamEvent",
    "TextDelta",
    "Tool",
]

#: A tool definition in the OpenAI function-tool shape.
Tool: TypeAlias = Mapping[str, Any]
#: A response format in the OpenAI shape (``{"type": "json_object"}``...).
ResponseFormat: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """One model reply.

    Attributes:
        text: the reply text ("" when the model only called tools).
        tool_calls: the tool calls the model requested, arguments as JSON text.
        usage: tokens billed for this call, normalised (see `ctxlab.usage.Usage`).
        model: the model that answered, as the provider reports it.
        finish_reason: ``stop``, ``length``, ``tool_calls``, ``content_filter`` or None.
        raw: the provider's response body (for a stream: the assembled final state).
        latency_s: wall time of the call in seconds, retries and waits included.
        cached: True when the reply came from ctxlab's response cache (no call was made).
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    raw: Mapping[str, Any] = field(default_factory=FrozenDict, compare=False, repr=False)
    latency_s: float = field(default=0.0, compare=False)
    cached: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, FrozenDict):
            object.__setattr__(self, "raw", FrozenDict(self.raw))

    def to_message(self, **fields: Any) -> Message:
        """The reply as an assistant `Message` (extra keywords become Message fields)."""
        return Message(role="assistant", content=self.text, tool_calls=self.tool_calls, **fields)


@dataclass(frozen=True, kw_only=True, slots=True)
class TextDelta:
    """A piece of reply text, as it arrives during a stream.

    Attributes:
        text: the new text (never the accumulated text).
    """

    text: str


#: What `Provider.stream` yields: text deltas, then exactly one final `Completion`.
StreamEvent: TypeAlias = TextDelta | Completion


class Provider(abc.ABC):
    """An LLM behind one interface, sync first with async alongside.

    Attributes:
        name: the provider kind (``openai``, ``anthropic``, ``openai-compatible``, ``scripted``).
        model: the model used when a call passes no ``model=``.
    """

    name: ClassVar[str] = "provider"
    model: str

    @property
    def spec(self) -> str:
        """The `get_provider` spec naming this provider and model, e.g. ``openai:gpt-4o``."""
        return f"{self.name}:{self.model}"

    @abc.abstractmethod
    def complete(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> Completion:
        """Send `messages` and return the whole reply.

        Raises:
            ProviderHTTPError: the provider refused the request (after retries when retryable).
            ProviderConnectionError: no answer after all retries.
            ProviderResponseError: the answer could not be parsed.
        """

    @abc.abstractmethod
    async def acomplete(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> Completion:
        """Asynchronous `complete`."""

    @abc.abstractmethod
    def stream(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> Iterator[StreamEvent]:
        """Yield `TextDelta` events as the reply arrives, then the final `Completion`.

        A stream is retried only before its first event; once text has been yielded a
        failure raises instead of starting the reply again.
        """

    @abc.abstractmethod
    def astream(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> AsyncIterator[StreamEvent]:
        """Asynchronous `stream`."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the HTTP clients this provider built (injected clients are left open)."""

    async def aclose(self) -> None:
        """Asynchronous `close`."""
        self.close()

    def __enter__(self) -> Provider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"
