"""A ctxlab provider as a LangChain chat model, for the peers that need a model.

`ProviderChatModel` is a ``BaseChatModel`` whose calls go to a ctxlab `Provider` (through
ctxlab's response cache when asked) and which keeps the `Usage` of every call, so an adapter
can report its summarizer's tokens in ``Pruned.extra_usage``. Its ``profile`` carries
``max_input_tokens`` (the budget), so LangChain's fractional limits (``("fraction", 0.8)``) are
shares of the budget. Built only inside the adapters that call LangChain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from ctxlab.messages import Message, ToolCall
from ctxlab.summarizers._llm_calls import ProviderLike, complete, resolve
from ctxlab.usage import Usage

__all__ = ["ProviderChatModel", "to_ctxlab"]

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


class ProviderChatModel(BaseChatModel):
    """LangChain chat model backed by a ctxlab provider; ``usage`` lists each call's tokens."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    provider: Any
    model_name: str | None = None
    max_tokens: int | None = None
    temperature: float | None = 0.0
    cache: bool = False
    usage: list[Usage] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "ctxlab-provider"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        provider: ProviderLike = self.provider
        done = complete(
            resolve(provider),
            [to_ctxlab(m) for m in messages],
            cache=self.cache,
            model=self.model_name,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        self.usage.append(done.usage)
        u = done.usage
        meta = {
            "input_tokens": u.total_input_tokens,
            "output_tokens": u.output_tokens,
            "total_tokens": u.total_input_tokens + u.output_tokens,
        }
        reply = AIMessage(content=done.text, usage_metadata=meta)
        return ChatResult(generations=[ChatGeneration(message=reply)])


def to_ctxlab(lm: BaseMessage) -> Message:
    """A ctxlab message for any LangChain message (text, tool calls, tool call id)."""
    role = _ROLES.get(lm.type, "user")
    calls: Sequence[Any] = getattr(lm, "tool_calls", None) or ()
    return Message(
        role=role,  # type: ignore[arg-type]
        content=lm.text,
        tool_calls=tuple(
            ToolCall(id=str(c.get("id")), name=c["name"], arguments=json.dumps(c["args"]))
            for c in calls
        ),
        tool_call_id=lm.tool_call_id if isinstance(lm, ToolMessage) else None,
    )
