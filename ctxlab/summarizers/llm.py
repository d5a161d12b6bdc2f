"""`LLMSummarizer`: the `summarize` strategy's running summary, written by a model.

It implements the `ctxlab.summarizers.Summarizer` protocol through any provider::

    from ctxlab.providers import get_provider
    from ctxlab.strategies.summarize import Summarize

    llm = LLMSummarizer("openai-compatible:smollm2@http://127.0.0.1:8765/v1")
    strategy = Summarize(summarizer=llm)

Each call sends one request: the instructions (`prompt`) as the system message, then the
summary so far and the newly folded messages as a transcript (speakers, dates, tool calls with
their arguments, tool results; long messages clipped in the middle). The model returns the
extended summary, which replaces the old one. Folds larger than `max_input_tokens` are sent in
several calls, each extending the summary of the one before, so a small context window is
never overrun. A call with no new messages asks the model to shorten the summary.

Failures never become a summary: an error, or an empty reply, raises `ProviderError`; with a
``fallback`` summarizer (e.g. ``ExtractiveSummarizer()``) that one writes the summary instead
and the result's ``note`` says so, which the strategy shows in the reasons of its decisions.
The tokens of every call are returned as `Usage`, which the strategy reports in
``Pruned.extra_usage``.

Executors: given a spec string, the summarizer is picklable and each process builds its own
provider (process pools and Dask work). Given a provider object, it is for threads only
(``ThreadPoolExecutor``, or no executor): provider objects hold sockets and locks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ctxlab.errors import ProviderError, ProviderHTTPError, ProviderResponseError, UsageError
from ctxlab.messages import Message
from ctxlab.summarizers import _transcript
from ctxlab.summarizers._llm_calls import ProviderLike, complete, provider_label, resolve
from ctxlab.summarizers.base import Summarizer, SummaryResult
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

__all__ = ["DEFAULT_PROMPT", "LLMSummarizer"]

#: The default instructions; ``{max_words}`` is filled in at each call.
DEFAULT_PROMPT = (
    "You keep the running summary of a conversation for an assistant that can no longer see "
    "its older messages. Write the updated summary: what still matters from the summary so "
    "far, plus the new messages. Keep concrete facts: who said or did what, names, dates, "
    "places, numbers, file paths, identifiers, decisions, tool calls and what they returned. "
    "Use short plain sentences in the order things happened, at most {max_words} words. "
    "Reply with the summary only."
)
_WORDS_PER_TOKEN = 0.75  # English prose, for telling the model its length limit in words
_OUTPUT_SLACK = 1.25  # the model's tokenizer is not the counter's: let it finish, then fit
# Small models often start by echoing a heading of the request: it is not summary text.
_LABEL = re.compile(r"^\s*(?:updated |new )?summary(?: so far)?\s*:\s*", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, kw_only=True)
class LLMSummarizer:
    """Running summaries written by an LLM; incremental, never an error text.

    Guarantees:
        - the summary has at most ``min(max_tokens, max_summary_tokens)`` tokens by the
          strategy's counter (longer replies are cut at a sentence, else a word, boundary);
        - every call gets the previous summary plus only the newly folded messages;
        - a failed or empty call raises `ProviderError`, or, with `fallback`, the fallback
          writes the summary and ``note`` says so; an error text is never a summary;
        - ``usage`` holds the tokens of every call made, a failed call's excepted (unknown).

    Attributes:
        provider: a `Provider`, or a `get_provider` spec (picklable: see the module docstring).
        model: the model to ask (default: the provider's).
        max_summary_tokens: longest summary, in the strategy counter's tokens.
        prompt: system instructions; ``{max_words}`` is replaced by the length limit.
        fallback: summarizer used when a call fails, or None to raise.
        temperature: sampling temperature (0 for the most repeatable summaries).
        max_input_tokens: transcript tokens per call; bigger folds take several calls.
        max_message_tokens: each message is clipped in the middle to this many tokens.
        cache: reuse replies from ctxlab's response cache (a re-run makes no call).
    """

    provider: ProviderLike = field(kw_only=False)
    model: str | None = None
    max_summary_tokens: int = 400
    prompt: str = field(default=DEFAULT_PROMPT, repr=False)
    fallback: Summarizer | None = None
    temperature: float | None = 0.0
    max_input_tokens: int = 3000
    max_message_tokens: int = 500
    cache: bool = False

    def __post_init__(self) -> None:
        if self.max_summary_tokens < 8:
            raise UsageError(
                f"max_summary_tokens must be at least 8, got {self.max_summary_tokens}"
            )
        if self.max_message_tokens < 16 or self.max_input_tokens < self.max_message_tokens:
            raise UsageError(
                "need max_message_tokens >= 16 and max_input_tokens >= max_message_tokens, got "
                f"{self.max_message_tokens} and {self.max_input_tokens}"
            )
        try:
            self.prompt.format(max_words=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(
                f"prompt may only use the placeholder {{max_words}} (write other braces as "
                f"{{{{ and }}}}): {exc!r}"
            ) from exc

    def summarize(
        self,
        previous_summary: str | None,
        new_messages: Sequence[Message],
        max_tokens: int,
        counter: TokenCounter,
    ) -> SummaryResult:
        """The previous summary extended with `new_messages` (see the class docstring).

        Raises:
            ProviderError: a call failed or returned nothing, and there is no fallback.
        """
        limit = min(max_tokens, self.max_summary_tokens)
        if limit <= 0 or not (previous_summary or new_messages):
            return SummaryResult(text="")
        text, usage = previous_summary, Usage()
        try:
            for chunk in self._chunks(new_messages, counter):
                text, used = self._call(text, chunk, limit, counter)
                usage = usage + used
        except ProviderError as exc:
            if self.fallback is None:
                raise
            return self._fall_back(previous_summary, new_messages, limit, counter, usage, exc)
        return SummaryResult(text=text or "", usage=usage)

    def _chunks(self, messages: Sequence[Message], counter: TokenCounter) -> list[str]:
        """The new messages as transcripts of at most `max_input_tokens` each ([""]: none)."""
        items = _transcript.lines(
            messages, counter=counter, max_message_tokens=self.max_message_tokens
        )
        chunks: list[list[_transcript.Line]] = []
        used = self.max_input_tokens
        for item in items:
            cost = counter.count_text(item.text) + 1
            if used + cost > self.max_input_tokens:
                chunks.append([])
                used = 0
            chunks[-1].append(item)
            used += cost
        return [_transcript.join(c) for c in chunks] or [""]

    def _call(
        self, previous: str | None, transcript: str, limit: int, counter: TokenCounter
    ) -> tuple[str, Usage]:
        max_words = max(1, int(limit * _WORDS_PER_TOKEN))
        messages = [
            Message(role="system", content=self.prompt.format(max_words=max_words)),
            Message(role="user", content=_request(previous, transcript, max_words)),
        ]
        done = complete(
            resolve(self.provider),
            messages,
            cache=self.cache,
            model=self.model,
            max_tokens=math.ceil(limit * _OUTPUT_SLACK) + 8,
            temperature=self.temperature,
        )
        text = _LABEL.sub("", done.text.strip(), count=1).strip()
        if not text:
            raise ProviderResponseError(
                f"{self.label} returned an empty summary (finish_reason={done.finish_reason}); "
                "check the model and prompt, or pass fallback=ExtractiveSummarizer()"
            )
        return fit(text, limit, counter), done.usage

    def _fall_back(
        self,
        previous: str | None,
        new: Sequence[Message],
        limit: int,
        counter: TokenCounter,
        usage: Usage,
        exc: ProviderError,
    ) -> SummaryResult:
        assert self.fallback is not None
        result = self.fallback.summarize(previous, new, limit, counter)
        status = f" {exc.status}" if isinstance(exc, ProviderHTTPError) else ""
        note = (
            f"LLM summary failed ({type(exc).__name__}{status}); "
            f"{type(self.fallback).__name__} used instead"
        )
        return SummaryResult(text=result.text, usage=usage + result.usage, note=note)

    @property
    def label(self) -> str:
        """``kind:model`` of the summarizing model, e.g. ``openai-compatible:smollm2``."""
        return provider_label(self.provider, self.model)

    def __repr__(self) -> str:
        extra = f", max_summary_tokens={self.max_summary_tokens}"
        if self.fallback is not None:
            extra += f", fallback={type(self.fallback).__name__}"
        return f"LLMSummarizer({self.label!r}{extra})"


def _request(previous: str | None, transcript: str, max_words: int) -> str:
    summary = previous.strip() if previous and previous.strip() else "(nothing yet)"
    if not transcript:
        return (
            f"Summary so far:\n{summary}\n\nShorten this summary to at most {max_words} "
            "words, keeping the most important facts."
        )
    return (
        f"Summary so far:\n{summary}\n\nNew messages:\n{transcript}\n\n"
        f"Write the updated summary, at most {max_words} words."
    )


def fit(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """`text` cut to `max_tokens`: whole sentences if any fit, else whole words."""
    if counter.count_text(text) <= max_tokens:
        return text
    kept: list[str] = []
    for sentence in _SENTENCE.split(text):
        if counter.count_text(" ".join([*kept, sentence])) > max_tokens:
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept)
    words = text.split()
    lo, hi = 0, len(words)  # the longest word prefix that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if counter.count_text(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
