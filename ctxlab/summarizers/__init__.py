"""Summarizers: what the `summarize` and `summary_window` strategies fold dropped turns into.

Holds the `Summarizer` protocol and `SummaryResult` (`base`), the offline `ExtractiveSummarizer`
(`extractive`), the `LLMSummarizer` over any provider (`llm`), the transcript rendering and the
LLM-call helpers both it and the LLM-judged metrics use. May import the core values, `formats`,
`scoring` and `providers`; never `strategies`, `lab`, `live` or `widgets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxlab.summarizers.base import Summarizer, SummaryResult
from ctxlab.summarizers.extractive import ExtractiveSummarizer

if TYPE_CHECKING:
    from ctxlab.summarizers.llm import LLMSummarizer

__all__ = ["ExtractiveSummarizer", "LLMSummarizer", "Summarizer", "SummaryResult"]


def __getattr__(name: str) -> Any:
    # The LLM summarizer pulls in the providers (httpx): imported on first use.
    if name == "LLMSummarizer":
        from ctxlab.summarizers.llm import LLMSummarizer

        return LLMSummarizer
    raise AttributeError(f"module 'ctxlab.summarizers' has no attribute {name!r}")
