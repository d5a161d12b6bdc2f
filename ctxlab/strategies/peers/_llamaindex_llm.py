"""A LlamaIndex LLM that answers through a ctxlab provider.

Imported only once llama-index-core is known to be installed (`_llamaindex.llamaindex`
checks): it subclasses the library's ``CustomLLM``. ``chat`` sends the LlamaIndex messages as
ctxlab messages (one request, the model's reply as the assistant message); ``complete`` sends
the prompt as one user message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import PrivateAttr

from ctxlab.messages import Message
from ctxlab.strategies.peers._llamaindex import from_llamaindex
from ctxlab.strategies.peers._summary_calls import SummaryCalls

__all__ = ["ProviderLLM"]

#: What the LLM tells LlamaIndex about its context window when the provider does not say.
CONTEXT_WINDOW = 8192


class ProviderLLM(CustomLLM):
    """``CustomLLM`` over `SummaryCalls` (a ctxlab provider); every call's tokens counted."""

    _calls: SummaryCalls = PrivateAttr()

    def __init__(self, calls: SummaryCalls, **data: Any) -> None:
        """An LLM sending its requests through `calls`."""
        super().__init__(**data)
        self._calls = calls

    @property
    def metadata(self) -> LLMMetadata:
        """The model's name; a chat model."""
        num_output = self._calls.max_tokens or -1
        return LLMMetadata(
            context_window=CONTEXT_WINDOW,
            num_output=num_output,
            is_chat_model=True,
            model_name=self._calls.label,
        )

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """One request with these messages; the reply as an assistant message."""
        text = self._calls.complete(from_llamaindex(messages, {}))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """One request with the prompt as the user message."""
        return CompletionResponse(text=self._calls.complete([Message(role="user", content=prompt)]))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """`complete`, as one chunk."""
        done = self.complete(prompt, formatted=formatted, **kwargs)

        def chunks() -> CompletionResponseGen:
            yield CompletionResponse(text=done.text, delta=done.text)

        return chunks()
