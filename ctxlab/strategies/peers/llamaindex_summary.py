"""``llamaindex_summary``: LlamaIndex's ``ChatSummaryMemoryBuffer``, called as it is.

The buffer's LLM is a ctxlab provider wrapped as a LlamaIndex ``CustomLLM``
(`ctxlab.strategies.peers._llamaindex_llm`), so any model ctxlab reaches writes the summaries
and the report bills its tokens. A LlamaIndex chat engine puts each message in the memory and
calls ``get()`` before each request; the adapter does the same over the conversation
(`ctxlab.strategies.peers._walk`), with ``token_limit`` = the budget and LlamaIndex's default
tokenizer. Each ``get()`` keeps the newest messages whose texts fit the limit and has the LLM
summarize everything older (the previous summary included) into one ``system`` message; the
adapter maps that back: held originals are kept, the summary (``meta["synthetic"]``) replaces
every original it was written from, directly or through an earlier summary (``summarized``,
into its id). The output is not repaired (see `ctxlab.strategies.peers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.messages import Message
from ctxlab.strategies.peers._llamaindex import (
    ID_KEY,
    PACKAGE,
    default_tokenizer,
    from_llamaindex,
    llamaindex,
    to_llamaindex,
)
from ctxlab.strategies.peers._summary_calls import SummaryCalls, check_provider, summary_label
from ctxlab.strategies.peers._walk import Reduction, WalkedPeer
from ctxlab.summarizers._llm_calls import ProviderLike

__all__ = ["LlamaindexSummary", "LlamaindexSummaryMemory"]


@dataclass(frozen=True, kw_only=True)
class LlamaindexSummary(WalkedPeer):
    """LlamaIndex's ``ChatSummaryMemoryBuffer`` over a ctxlab provider (peers extra).

    Attributes:
        provider: the model that summarizes: a `Provider` or a `get_provider` spec.
        model: the model to ask (default: the provider's).
        summarize_prompt: the buffer's instructions; None for LlamaIndex's default.
        temperature, max_tokens: the LLM's settings (None: the provider's defaults).
        cache: reuse replies from ctxlab's response cache.
    """

    name: ClassVar[str] = "llamaindex_summary"
    package: ClassVar[str] = PACKAGE
    provider: ProviderLike | None = field(default=None, repr=False)
    model: str | None = None
    summarize_prompt: str | None = field(default=None, repr=False)
    temperature: float | None = 0.0
    max_tokens: int | None = None
    cache: bool = False

    def __post_init__(self) -> None:
        llamaindex(self.name)  # naming the strategy without the extra says which to install
        check_provider(self.name, self.provider)

    @property
    def label(self) -> str:
        """Registry name, the parameters that differ from their defaults, the summarizer."""
        return summary_label(super().label, self.provider, self.model)

    def memory(self, budget: Budget) -> LlamaindexSummaryMemory:
        """The buffer, with ``token_limit`` = the budget, over fresh `SummaryCalls`."""
        assert self.provider is not None
        calls = SummaryCalls(
            provider=self.provider,
            model=self.model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            cache=self.cache,
        )
        return LlamaindexSummaryMemory(calls, budget.available, self.summarize_prompt)


class LlamaindexSummaryMemory:
    """A ``ChatSummaryMemoryBuffer`` walked through a conversation (`_walk.Memory`)."""

    def __init__(self, calls: SummaryCalls, token_limit: int, prompt: str | None) -> None:
        from ctxlab.strategies.peers._llamaindex_llm import ProviderLLM

        self.calls, self.token_limit, self.prompt = calls, token_limit, prompt
        self.llm = ProviderLLM(calls)
        self.tokenizer = default_tokenizer(LlamaindexSummary.name)

    def buffer(self, messages: list[Any]) -> Any:
        """A ``ChatSummaryMemoryBuffer`` holding `messages` (the buffer's only state)."""
        from llama_index.core.memory import ChatSummaryMemoryBuffer

        return ChatSummaryMemoryBuffer.from_defaults(
            chat_history=messages,
            llm=self.llm,
            token_limit=self.token_limit,
            tokenizer_fn=self.tokenizer,
            summarize_prompt=self.prompt,
        )

    def convert(self, message: Message) -> Any:
        """The library's message for a ctxlab one."""
        return to_llamaindex([message])[0]

    def reduce(self, messages: list[Any]) -> Reduction:
        """What ``get()`` returns; a summary was written from every message it left out."""
        keys = [self.key(m) for m in messages]
        self.calls.start()
        returned = self.buffer(messages).get()
        _, usage = self.calls.finish()
        if not self.calls.made:
            return Reduction(messages=returned)
        kept = {self.key(m) for m in returned}
        summarized = tuple(k for k in keys if k is not None and k not in kept)
        return Reduction(messages=returned, summarized=summarized, usage=usage)

    def key(self, message: Any) -> str | None:
        """The id a message carries (None: the buffer wrote it)."""
        key = message.additional_kwargs.get(ID_KEY)
        return str(key) if key is not None else None

    def set_key(self, message: Any, key: str) -> None:
        """Name a message the buffer wrote."""
        message.additional_kwargs[ID_KEY] = key

    def back(self, message: Any, original: Message | None, key: str) -> Message:
        """The ctxlab message for a LlamaIndex one."""
        if original is not None:
            return from_llamaindex([message], {key: original})[0]
        return from_llamaindex([message], {})[0]
