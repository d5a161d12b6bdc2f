"""The summary peers' LLM calls: a ctxlab provider behind the library's own model interface.

A library's summary buffer asks its model (a LlamaIndex ``LLM``, a Semantic Kernel chat
service) for a summary; the adapters give it one that sends the request through a ctxlab
provider, as `ctxlab.summarizers.llm.LLMSummarizer` does: a `Provider` object or a
`get_provider` spec, ctxlab's response cache on request. `SummaryCalls` counts the tokens of
every call, which the walk reports in ``Pruned.extra_usage`` at the probe where the call was
made, so the report bills the summarizer (``extra_input_tokens``, ``cost_usd``), and records
which messages each call was given, so the decisions can say which originals the summary
replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ctxlab.errors import UsageError
from ctxlab.messages import Message
from ctxlab.summarizers._llm_calls import ProviderLike, complete, provider_label, resolve
from ctxlab.usage import Usage

__all__ = ["SummaryCalls", "check_provider"]


def check_provider(strategy: str, provider: ProviderLike | None) -> None:
    """Raise `UsageError` when a summary peer has no provider to summarize with."""
    if provider is None:
        raise UsageError(
            f"{strategy} summarizes with an LLM: pass provider=, a provider or a spec such as "
            "'openai:gpt-4o-mini' or 'openai-compatible:smollm2@http://127.0.0.1:8765/v1' "
            "(`ctxlab local-llm` serves one offline)"
        )


@dataclass(kw_only=True)
class SummaryCalls:
    """The calls of one reduction: sent through the provider; tokens, inputs, count recorded.

    Attributes:
        provider: the provider (object or spec).
        model: the model to ask (default: the provider's).
        temperature: sampling temperature, None for the provider's default.
        max_tokens: longest reply, None for the provider's default.
        cache: reuse replies from ctxlab's response cache.
    """

    provider: ProviderLike
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    cache: bool = False
    usage: Usage = field(default_factory=Usage)
    given: list[str] = field(default_factory=list)
    made: int = 0

    def start(self) -> None:
        """Forget the calls so far: a reduction begins."""
        self.usage, self.given, self.made = Usage(), [], 0

    def finish(self) -> tuple[tuple[str, ...], Usage]:
        """The keys of the messages given to the calls since `start`, and their tokens."""
        return tuple(dict.fromkeys(self.given)), self.usage

    def complete(
        self,
        messages: Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """The reply's text; the tokens are added to `usage`."""
        done = complete(
            resolve(self.provider),
            messages,
            cache=self.cache,
            model=self.model,
            temperature=self.temperature if temperature is None else temperature,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
        )
        self.usage, self.made = self.usage + done.usage, self.made + 1
        return done.text

    @property
    def label(self) -> str:
        """``kind:model`` of the summarizing model."""
        return provider_label(self.provider, self.model)


def summary_label(label: str, provider: ProviderLike | None, model: str | None) -> str:
    """A strategy's label with its summarizer, e.g. ``x(summarizer='openai:gpt-4o-mini')``."""
    if provider is None:
        return label
    tag = f"summarizer={provider_label(provider, model)!r}"
    return f"{label[:-1]}, {tag})" if label.endswith(")") else f"{label}({tag})"
