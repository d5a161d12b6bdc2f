"""A Semantic Kernel chat service that answers through a ctxlab provider.

Imported only once semantic-kernel is known to be installed (`_semantic_kernel.semantic_kernel`
checks): it subclasses the library's ``ChatCompletionClientBase``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict
from semantic_kernel.connectors.ai.chat_completion_client_base import ChatCompletionClientBase
from semantic_kernel.connectors.ai.prompt_execution_settings import PromptExecutionSettings
from semantic_kernel.contents import AuthorRole, ChatHistory, ChatMessageContent

from ctxlab.messages import new_id
from ctxlab.strategies.peers._semantic_kernel import ID_KEY, from_sk
from ctxlab.strategies.peers._summary_calls import SummaryCalls

__all__ = ["ProviderChatService"]


class ProviderChatService(ChatCompletionClientBase):
    """``ChatCompletionClientBase`` over `SummaryCalls` (a ctxlab provider).

    The chat history is sent as ctxlab messages; ``temperature`` and ``max_tokens`` in the
    execution settings' extension data override the calls' own. The keys of the messages
    sent are recorded in the calls (the reducer's summary replaces them).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    calls: SummaryCalls

    @classmethod
    def over(cls, calls: SummaryCalls) -> ProviderChatService:
        """A service for these calls, named after their model."""
        return cls(ai_model_id=calls.label, service_id="ctxlab", calls=calls)

    async def _inner_get_chat_message_contents(
        self, chat_history: ChatHistory, settings: PromptExecutionSettings
    ) -> list[ChatMessageContent]:
        messages = []
        for sm in chat_history.messages:
            key = sm.metadata.get(ID_KEY)
            if key is not None:
                self.calls.given.append(str(key))
            messages.append(from_sk(sm, None, str(key) if key is not None else new_id()))
        options: dict[str, Any] = settings.extension_data
        text = self.calls.complete(
            messages,
            temperature=options.get("temperature"),
            max_tokens=options.get("max_tokens"),
        )
        return [
            ChatMessageContent(
                role=AuthorRole.ASSISTANT, content=text, ai_model_id=self.ai_model_id
            )
        ]
