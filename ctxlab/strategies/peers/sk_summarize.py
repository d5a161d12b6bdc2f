"""``sk_summarize``: Semantic Kernel's ``ChatHistorySummarizationReducer``, called as it is.

The reducer's chat service is a ctxlab provider (`ctxlab.strategies.peers._sk_service`), so
any model ctxlab reaches writes the summaries and the report bills its tokens. As with
``sk_truncate``, the reducer is awaited before each request
(`ctxlab.strategies.peers._walk`); what it holds is mapped back to the originals: held
originals are kept, its summary message (role ``assistant``, ``meta["synthetic"]``) replaces
the originals it was written from (``summarized``, into the summary's id; a later summary
that was given an earlier one replaces that one's originals too), and the messages it removed
without summarizing them (by default, tool calls and results) are dropped. The output is not
repaired (see `ctxlab.strategies.peers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.strategies.peers._semantic_kernel import (
    PACKAGE,
    SemanticKernelMemory,
    semantic_kernel,
)
from ctxlab.strategies.peers._summary_calls import SummaryCalls, check_provider, summary_label
from ctxlab.strategies.peers._walk import WalkedPeer
from ctxlab.summarizers._llm_calls import ProviderLike

__all__ = ["SkSummarize"]


@dataclass(frozen=True, kw_only=True)
class SkSummarize(WalkedPeer):
    """Semantic Kernel's ``ChatHistorySummarizationReducer`` over a ctxlab provider (peers extra).

    Attributes:
        provider: the model that summarizes: a `Provider` or a `get_provider` spec.
        model: the model to ask (default: the provider's).
        target_count: messages the reducer cuts the history down to (the reducer's own).
        threshold_count: messages beyond `target_count` tolerated before it summarizes.
        use_single_summary: keep one running summary rather than one per fold (the reducer's).
        fail_on_error: raise when the summary request fails, instead of leaving the history.
        include_function_content_in_summary: give tool calls and results to the summarizer
            (the reducer's default, False, drops them without summarizing them).
        summarization_instructions: the reducer's instructions; None for its default.
        temperature, max_tokens: the execution settings of the summary request (None: the
            provider's defaults).
        cache: reuse replies from ctxlab's response cache.
    """

    name: ClassVar[str] = "sk_summarize"
    package: ClassVar[str] = PACKAGE
    provider: ProviderLike | None = field(default=None, repr=False)
    model: str | None = None
    target_count: int = 10
    threshold_count: int = 10
    summarization_instructions: str | None = field(default=None, repr=False)
    use_single_summary: bool = True
    fail_on_error: bool = True
    include_function_content_in_summary: bool = False
    temperature: float | None = 0.0
    max_tokens: int | None = None
    cache: bool = False

    def __post_init__(self) -> None:
        semantic_kernel(self.name)  # naming the strategy without the extra says which to install
        check_provider(self.name, self.provider)
        if self.target_count < 1 or self.threshold_count < 0:
            raise UsageError(
                f"sk_summarize needs target_count >= 1 and threshold_count >= 0, got "
                f"{self.target_count} and {self.threshold_count}"
            )

    @property
    def label(self) -> str:
        """Registry name, the parameters that differ from their defaults, the summarizer."""
        return summary_label(super().label, self.provider, self.model)

    def memory(self, budget: Budget) -> SemanticKernelMemory:
        """The reducer over fresh `SummaryCalls` (the budget plays no part)."""
        assert self.provider is not None
        calls = SummaryCalls(provider=self.provider, model=self.model, cache=self.cache)
        return SemanticKernelMemory(lambda messages: self.reducer(messages, calls), calls)

    def reducer(self, messages: list[Any], calls: SummaryCalls) -> Any:
        """A ``ChatHistorySummarizationReducer`` holding `messages`, summarizing with `calls`."""
        from semantic_kernel.connectors.ai.prompt_execution_settings import (
            PromptExecutionSettings,
        )

        from ctxlab.strategies.peers._sk_service import ProviderChatService

        contents = semantic_kernel(self.name)
        options = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        options = {k: v for k, v in options.items() if v is not None}
        extra: dict[str, Any] = {}
        if self.summarization_instructions is not None:
            extra["summarization_instructions"] = self.summarization_instructions
        return contents.ChatHistorySummarizationReducer(
            service=ProviderChatService.over(calls),
            target_count=self.target_count,
            threshold_count=self.threshold_count,
            use_single_summary=self.use_single_summary,
            fail_on_error=self.fail_on_error,
            include_function_content_in_summary=self.include_function_content_in_summary,
            execution_settings=PromptExecutionSettings(extension_data=options) if options else None,
            messages=messages,
            **extra,
        )
