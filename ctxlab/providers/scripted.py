"""`ScriptedProvider`: a deterministic, offline provider for tests and notebooks.

It answers from a list of replies (in order) or from a function of the messages, counts tokens
with a real counter, and remembers every call it received in `calls`::

    p = ScriptedProvider(["Hello!", "Goodbye."])
    p.complete([Message(role="user", content="hi")]).text   # "Hello!"

    p = ScriptedProvider(lambda messages: f"{len(messages)} messages")

A reply may be a string, a `Completion` (returned as given, its usage kept when non-empty), an
assistant `Message` (text and tool calls), or an exception instance, which is raised: handy to
test error paths. With no replies at all the provider echoes the newest user message.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from ctxlab.errors import UsageError
from ctxlab.messages import FrozenDict, Message, freeze
from ctxlab.providers.base import (
    Completion,
    Provider,
    ResponseFormat,
    StreamEvent,
    TextDelta,
    Tool,
)
from ctxlab.tokens import TokenCounter, get_counter
from ctxlab.usage import Usage

__all__ = ["Reply", "ScriptedCall", "ScriptedProvider"]

#: One scripted reply.
Reply: TypeAlias = str | Completion | Message | BaseException

_CHUNK = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True, kw_only=True, slots=True)
class ScriptedCall:
    """One call a `ScriptedProvider` received.

    Attributes:
        messages: the messages sent.
        model: the model asked for.
        options: every other keyword (max_tokens, tools, response_format, extras).
    """

    messages: tuple[Message, ...]
    model: str
    options: Mapping[str, Any] = field(default_factory=FrozenDict)


class ScriptedProvider(Provider):
    """Replies from a script; deterministic and offline.

    Guarantees:
        - replies come in list order (or from the function), the same on every run;
        - usage is counted with `counter` (exact for OpenAI encodings), never made up;
        - running out of replies raises `UsageError` unless ``cycle=True``;
        - thread-safe: concurrent calls take distinct replies.
    """

    name = "scripted"

    def __init__(
        self,
        replies: Sequence[Reply] | Callable[[tuple[Message, ...]], Reply] | None = None,
        *,
        model: str = "scripted",
        counter: TokenCounter | None = None,
        cycle: bool = False,
    ) -> None:
        """Build a scripted provider.

        Args:
            replies: a list of replies, a function from the messages to a reply, or None to
                echo the newest user message.
            model: the model name reported in completions.
            counter: token counter for usage; ``get_counter()`` by default.
            cycle: start the list again when it runs out instead of raising.
        """
        self.model = model
        self._script = replies if callable(replies) or replies is None else tuple(replies)
        self._counter = counter
        self._cycle = cycle
        self._next = 0
        self._lock = threading.Lock()
        self.calls: list[ScriptedCall] = []

    @property
    def counter(self) -> TokenCounter:
        """The counter usage is measured with."""
        if self._counter is None:
            self._counter = get_counter()
        return self._counter

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
        """Return the next scripted reply (see the class docstring)."""
        sent = tuple(messages)
        options = dict(extra, max_tokens=max_tokens, temperature=temperature, tools=tools)
        options["response_format"] = response_format
        reply = self._take(sent, model or self.model, options)
        if isinstance(reply, BaseException):
            raise reply
        return self._completion(sent, reply, model or self.model)

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
        """Asynchronous `complete` (answers at once)."""
        return self.complete(
            messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            response_format=response_format,
            **extra,
        )

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
        """Yield the reply word by word, then the `Completion`."""
        done = self.complete(
            messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            response_format=response_format,
            **extra,
        )
        for piece in _CHUNK.findall(done.text):
            yield TextDelta(text=piece)
        yield done

    async def astream(
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
        for event in self.stream(
            messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            response_format=response_format,
            **extra,
        ):
            yield event

    def _take(self, sent: tuple[Message, ...], model: str, options: dict[str, Any]) -> Reply:
        with self._lock:
            self.calls.append(ScriptedCall(messages=sent, model=model, options=freeze(options)))
            if self._script is None:
                return _echo(sent)
            if callable(self._script):
                return self._script(sent)
            if self._next >= len(self._script):
                if not self._cycle or not self._script:
                    raise UsageError(
                        f"ScriptedProvider ran out of replies after {len(self._script)} calls; "
                        "give it more replies or pass cycle=True"
                    )
                self._next = 0
            reply = self._script[self._next]
            self._next += 1
            return reply

    def _completion(self, sent: tuple[Message, ...], reply: Reply, model: str) -> Completion:
        if isinstance(reply, Completion):
            done = reply if reply.model else replace(reply, model=model)
            return done if done.usage else replace(done, usage=self._usage(sent, done))
        if isinstance(reply, Message):
            done = Completion(text=reply.text, tool_calls=reply.tool_calls, model=model)
        else:
            done = Completion(text=str(reply), model=model)
        finish = "tool_calls" if done.tool_calls else "stop"
        return replace(done, finish_reason=finish, usage=self._usage(sent, done))

    def _usage(self, sent: tuple[Message, ...], done: Completion) -> Usage:
        counter = self.counter
        output = counter.count_text(done.text)
        output += sum(counter.count_text(c.name + c.arguments) for c in done.tool_calls)
        return Usage(
            input_tokens=counter.count_messages(sent),
            output_tokens=output,
            requests=1,
            estimated=not counter.exact,
        )

    def __repr__(self) -> str:
        script = "function" if callable(self._script) else "echo"
        if isinstance(self._script, tuple):
            script = f"{len(self._script)} replies"
        return f"ScriptedProvider(model={self.model!r}, {script}, calls={len(self.calls)})"


def _echo(sent: tuple[Message, ...]) -> str:
    for m in reversed(sent):
        if m.is_user_turn:
            return m.text
    return ""
