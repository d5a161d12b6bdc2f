"""What the two Semantic Kernel adapters share: the import, message conversions, the walk.

ctxlab messages become Semantic Kernel ``ChatMessageContent`` objects: the text as a
``TextContent`` item, each tool call as a ``FunctionCallContent`` (id, name, the arguments'
JSON text as written), a tool result as role ``tool`` holding one ``FunctionResultContent``
(the call id, the function name, the result text), the name in ``name`` and the original id
in ``metadata["ctxlab_id"]``. Back, a message carrying an original's id is that original;
one without (a summary the reducer wrote) becomes a new message.

`SemanticKernelMemory` is the `ctxlab.strategies.peers._walk.Memory` over a reducer: each
reduction copies the history into a fresh reducer (a reducer's only state is its messages)
and runs its ``reduce()`` to completion (`ctxlab.strategies.peers._aio.run_sync`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctxlab.errors import MissingDependencyError
from ctxlab.messages import Message, ToolCall
from ctxlab.strategies.peers._aio import run_sync
from ctxlab.strategies.peers._walk import Reduction

__all__ = ["ID_KEY", "SemanticKernelMemory", "from_sk", "semantic_kernel", "to_sk"]

PACKAGE = "semantic-kernel"
#: Where the original message's id travels in ``ChatMessageContent.metadata``.
ID_KEY = "ctxlab_id"


def semantic_kernel(strategy: str) -> Any:
    """``semantic_kernel.contents`` (the reducers live there), or an error naming the extra."""
    try:
        from semantic_kernel import contents
    except ImportError as exc:
        raise MissingDependencyError(PACKAGE, "peers", f"the {strategy} strategy") from exc
    return contents


def to_sk(message: Message) -> Any:
    """A Semantic Kernel ``ChatMessageContent`` for a ctxlab message (see the module)."""
    from semantic_kernel.contents import (
        AuthorRole,
        ChatMessageContent,
        FunctionCallContent,
        FunctionResultContent,
        TextContent,
    )

    m = message
    items: list[Any]
    if m.role == "tool":
        items = [FunctionResultContent(id=m.tool_call_id, name=m.name, result=m.text)]
    else:
        items = [TextContent(text=m.text)]
        items += [FunctionCallContent(id=c.id, name=c.name, arguments=c.arguments)
                  for c in m.tool_calls]  # fmt: skip
    return ChatMessageContent(
        role=AuthorRole(m.role), items=items, name=m.name, metadata={ID_KEY: m.id}
    )


def from_sk(sm: Any, original: Message | None, key: str) -> Message:
    """The ctxlab message for a Semantic Kernel one (an original, or a new one with id `key`)."""
    from semantic_kernel.contents import FunctionCallContent, FunctionResultContent, TextContent

    text = "".join(i.text for i in sm.items if isinstance(i, TextContent))
    results = [i for i in sm.items if isinstance(i, FunctionResultContent)]
    if results:
        text = "".join(str(r.result) for r in results)
    calls = tuple(
        ToolCall(id=i.id or "", name=i.name or "", arguments=_arguments(i.arguments))
        for i in sm.items
        if isinstance(i, FunctionCallContent)
    )
    if original is not None:
        if text == original.text and calls == original.tool_calls:
            return original
        return original.replace(content=text, tool_calls=calls)
    return Message(
        role=str(sm.role.value),  # type: ignore[arg-type]
        content=text,
        tool_calls=calls,
        tool_call_id=results[0].id if results else None,
        name=sm.name,
        id=key,
    )


def _arguments(arguments: Any) -> str:
    import json

    if arguments is None:
        return "{}"
    return arguments if isinstance(arguments, str) else json.dumps(dict(arguments))


class SemanticKernelMemory:
    """A reducer walked through a conversation (`ctxlab.strategies.peers._walk.Memory`).

    Args:
        build: a fresh reducer holding the given messages.
        calls: the summarizer's calls and usage when the reducer summarizes, else None.
    """

    def __init__(self, build: Callable[[list[Any]], Any], calls: Any = None) -> None:
        self.build, self.calls = build, calls

    def convert(self, message: Message) -> Any:
        """The library's message for a ctxlab one."""
        return to_sk(message)

    def reduce(self, messages: list[Any]) -> Reduction:
        """What the reducer's ``reduce()`` leaves of `messages`."""
        reducer = self.build(messages)
        if self.calls is not None:
            self.calls.start()
        run_sync(reducer.reduce)
        if self.calls is None:
            return Reduction(messages=list(reducer.messages))
        summarized, usage = self.calls.finish()
        return Reduction(messages=list(reducer.messages), summarized=summarized, usage=usage)

    def key(self, message: Any) -> str | None:
        """The id a message carries (None: the reducer wrote it)."""
        key = message.metadata.get(ID_KEY)
        return str(key) if key is not None else None

    def set_key(self, message: Any, key: str) -> None:
        """Name a message the reducer wrote."""
        message.metadata[ID_KEY] = key

    def back(self, message: Any, original: Message | None, key: str) -> Message:
        """The ctxlab message for a Semantic Kernel one."""
        return from_sk(message, original, key)
