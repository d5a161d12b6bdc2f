"""What the two LlamaIndex adapters share: the import, message conversions, the tokenizer.

ctxlab messages become LlamaIndex ``ChatMessage`` objects: the text as one ``TextBlock``, each
tool call as a ``ToolCallBlock`` (id, name, arguments as LlamaIndex keeps them: a dict when
the arguments are a JSON object, else the raw text), a tool result as role ``tool`` with
``additional_kwargs["tool_call_id"]`` (where LlamaIndex's own agents put it), the name in
``additional_kwargs["name"]`` and the original id in ``additional_kwargs["ctxlab_id"]``.

LlamaIndex's default tokenizer (``llama_index.core.utils.get_tokenizer``: tiktoken's encoding
for gpt-3.5-turbo, cl100k_base) reads the encoding file from LlamaIndex's own bundled cache
only while ``TIKTOKEN_CACHE_DIR`` is unset; when the variable is set (ctxlab's counter, LiteLLM
and users set it) and the file is not there, tiktoken downloads it. `default_tokenizer` builds
it with the variable unset for the call and put back after, so it works offline.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from ctxlab.errors import MissingDependencyError
from ctxlab.messages import Message, ToolCall

__all__ = ["ID_KEY", "default_tokenizer", "from_llamaindex", "llamaindex", "to_llamaindex"]

PACKAGE = "llama-index-core"
#: Where the original message's id travels in ``ChatMessage.additional_kwargs``.
ID_KEY = "ctxlab_id"


def llamaindex(strategy: str) -> Any:
    """The ``llama_index.core`` package, or a `MissingDependencyError` naming the extra."""
    try:
        import llama_index.core
        import llama_index.core.memory
    except ImportError as exc:
        raise MissingDependencyError(PACKAGE, "peers", f"the {strategy} strategy") from exc
    return llama_index.core


def default_tokenizer(strategy: str) -> Callable[[str], list[Any]]:
    """LlamaIndex's default tokenizer, built offline from the encoding LlamaIndex ships."""
    core = llamaindex(strategy)
    from llama_index.core.utils import get_tokenizer

    if core.global_tokenizer is not None:  # built already: leave the environment alone
        tokenizer: Callable[[str], list[Any]] = get_tokenizer()
        return tokenizer
    before = os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    try:
        tokenizer = get_tokenizer()
    finally:
        if before is not None:
            os.environ["TIKTOKEN_CACHE_DIR"] = before
    return tokenizer


def to_llamaindex(messages: Sequence[Message]) -> list[Any]:
    """LlamaIndex ``ChatMessage`` objects for ctxlab messages (see the module docstring)."""
    from llama_index.core.base.llms.types import ChatMessage, TextBlock, ToolCallBlock

    out = []
    for m in messages:
        blocks: list[Any] = [TextBlock(text=m.text)]
        blocks += [
            ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=_kwargs(c.arguments))
            for c in m.tool_calls
        ]
        extra: dict[str, Any] = {ID_KEY: m.id}
        if m.tool_call_id is not None:
            extra["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            extra["name"] = m.name
        out.append(ChatMessage(role=m.role, blocks=blocks, additional_kwargs=extra))
    return out


def _kwargs(arguments: str) -> dict[str, Any] | str:
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    # only an object that prints back to the same text: anything else stays raw, losslessly
    if isinstance(value, dict) and json.dumps(value) == arguments:
        return value
    return arguments


def from_llamaindex(messages: Sequence[Any], by_id: dict[str, Message]) -> list[Message]:
    """The ctxlab messages behind LlamaIndex ones.

    A message carrying an original's id is that original (the same object when LlamaIndex left
    its text and tool calls as they were); one without (a summary LlamaIndex wrote) becomes a
    new message with the role, text and tool calls LlamaIndex gave it.
    """
    out = []
    for lm in messages:
        original = by_id.get(lm.additional_kwargs.get(ID_KEY, ""))
        text, calls = _text(lm), _calls(lm)
        if original is None:
            extra = lm.additional_kwargs
            out.append(
                Message(
                    role=str(lm.role.value),  # type: ignore[arg-type]
                    content=text,
                    tool_calls=calls,
                    tool_call_id=extra.get("tool_call_id"),
                    name=extra.get("name"),
                )
            )
        elif text == original.text and calls == original.tool_calls:
            out.append(original)
        else:
            out.append(original.replace(content=text, tool_calls=calls))
    return out


def _text(lm: Any) -> str:
    from llama_index.core.base.llms.types import TextBlock

    return "\n".join(b.text for b in lm.blocks if isinstance(b, TextBlock))


def _calls(lm: Any) -> tuple[ToolCall, ...]:
    from llama_index.core.base.llms.types import ToolCallBlock

    return tuple(
        ToolCall(
            id=b.tool_call_id or "",
            name=b.tool_name,
            arguments=b.tool_kwargs
            if isinstance(b.tool_kwargs, str)
            else json.dumps(b.tool_kwargs),
        )
        for b in lm.blocks
        if isinstance(b, ToolCallBlock)
    )
