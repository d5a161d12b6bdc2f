"""What every summarizer returns and the protocol it follows.

A summarizer is incremental: it gets the summary written so far and the messages dropped
since, and returns the extended summary, at most `max_tokens` tokens long::

    result = summarizer.summarize(previous, new_messages, max_tokens=800, counter=counter)
    result.text, result.usage
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ctxlab.messages import Message
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

__all__ = ["Summarizer", "SummaryResult"]


@dataclass(frozen=True, kw_only=True)
class SummaryResult:
    """What a summarizer call returns.

    Attributes:
        text: the whole summary (previous content included), without any header.
        usage: tokens of the LLM calls made (all zero for offline summarizers).
        note: a short remark the strategy shows in its decisions (e.g. a fallback was used).
    """

    text: str
    usage: Usage = field(default_factory=Usage)
    note: str = ""


@runtime_checkable
class Summarizer(Protocol):
    """Extends a running summary with newly dropped messages."""

    def summarize(
        self,
        previous_summary: str | None,
        new_messages: Sequence[Message],
        max_tokens: int,
        counter: TokenCounter,
    ) -> SummaryResult:
        """The previous summary extended with `new_messages`, at most `max_tokens` tokens.

        With no new messages, it re-compacts the previous summary to `max_tokens`.
        """
        ...
