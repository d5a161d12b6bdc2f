"""``llamaindex_buffer``: LlamaIndex's ``ChatMemoryBuffer``, called as it is.

ctxlab messages become LlamaIndex chat messages (`ctxlab.strategies.peers._llamaindex`), are
put in a ``ChatMemoryBuffer`` with ``token_limit`` = the budget and LlamaIndex's default
tokenizer, and what its ``get()`` returns is mapped back to the originals by id: returned
messages are kept, the rest dropped. The output is not repaired (see
`ctxlab.strategies.peers`).

What the library does, and the adapter leaves as it is: it counts the tokens of the messages'
texts joined by spaces (no role or per-message overhead, 0 for a tool call's name and
arguments), keeps the longest tail that fits, never pins the system message, and when even
that tail is a single message too long for the limit it returns the last message alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.messages import Conversation
from ctxlab.strategies.base import Pruned
from ctxlab.strategies.peers._base import PeerStrategy
from ctxlab.strategies.peers._llamaindex import (
    PACKAGE,
    default_tokenizer,
    from_llamaindex,
    llamaindex,
    to_llamaindex,
)
from ctxlab.tokens import TokenCounter

__all__ = ["LlamaindexBuffer", "memory_buffer"]


def memory_buffer(messages: list[Any], token_limit: int) -> Any:
    """A ``ChatMemoryBuffer`` holding `messages`, with LlamaIndex's default tokenizer."""
    from llama_index.core.memory import ChatMemoryBuffer

    return ChatMemoryBuffer.from_defaults(
        chat_history=messages,
        token_limit=token_limit,
        tokenizer_fn=default_tokenizer(LlamaindexBuffer.name),
    )


@dataclass(frozen=True, kw_only=True)
class LlamaindexBuffer(PeerStrategy):
    """LlamaIndex's ``ChatMemoryBuffer.get()`` with ``token_limit`` = the budget (peers extra)."""

    name: ClassVar[str] = "llamaindex_buffer"
    package: ClassVar[str] = PACKAGE

    def __post_init__(self) -> None:
        llamaindex(self.name)  # naming the strategy without the extra says which to install

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        originals = conversation.messages
        returned = memory_buffer(to_llamaindex(originals), budget.available).get()
        return self.sent(
            conversation,
            from_llamaindex(returned, {m.id: m for m in originals}),
            budget,
            counter,
            "changed",
        )
