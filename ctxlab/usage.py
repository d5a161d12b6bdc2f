"""`Usage`: token counts of LLM calls, kept in separate, non-overlapping buckets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ctxlab.messages import FrozenDict

__all__ = ["Usage"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Tokens billed for one or more LLM calls.

    The input buckets never overlap: a request's whole prompt is
    ``input_tokens + cached_input_tokens + cache_write_tokens``. (OpenAI's ``prompt_tokens``
    includes cached tokens; Anthropic's ``input_tokens`` excludes them; adapters normalise.)

    Attributes:
        input_tokens: prompt tokens billed at the normal input price.
        cached_input_tokens: prompt tokens read from the provider's prompt cache.
        cache_write_tokens: prompt tokens written to the prompt cache (Anthropic).
        output_tokens: generated tokens.
        requests: number of calls these counts cover.
        estimated: True when some count was computed locally, not reported by the provider.
        raw: the provider's own usage object for a single call (empty after addition).
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    estimated: bool = False
    raw: Mapping[str, Any] = field(default_factory=FrozenDict, compare=False)

    @property
    def total_input_tokens(self) -> int:
        """All prompt tokens, whatever their price bucket."""
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        """Prompt plus output tokens."""
        return self.total_input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            requests=self.requests + other.requests,
            estimated=self.estimated or other.estimated,
        )

    def __bool__(self) -> bool:
        return self.requests > 0 or self.total_tokens > 0
