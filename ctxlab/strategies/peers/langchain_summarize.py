"""``langchain_summarize``: LangChain v1's ``SummarizationMiddleware``, called as it is.

The conversation becomes LangChain messages (`to_langchain`, ids kept) in an agent state, and
the middleware's ``before_model`` runs on it once, as it does before a model call. When it
summarizes, it returns the state's replacement: one summary message (a ``HumanMessage``
starting "Here is a summary of the conversation to date:") and the messages it preserved.
Those are mapped back by id: preserved originals are kept, every other original is
``summarized`` into the summary, which gets a fresh id and ``meta["synthetic"]``. LangChain
puts everything before its cutoff into the summary, the system message included: a
conversation whose system message is in the state loses it (in ``create_agent`` the system
prompt lives outside the state). The output is not repaired (see `ctxlab.strategies.peers`).

Who writes the summary:

- with a ``provider``, LangChain prompts it (a `ProviderChatModel` over any ctxlab provider)
  with its own ``DEFAULT_SUMMARY_PROMPT``; the calls' tokens are reported in
  ``Pruned.extra_usage``, outside the budget, like `summarize`'s summarizer;
- without one (the offline default), LangChain's ``summarizer=`` hook gets ctxlab's
  `ExtractiveSummarizer`: LangChain still decides when and what to summarize.

The budget is the model's ``max_input_tokens``, so ``("fraction", x)`` in ``trigger`` or
``keep`` means a share of the budget. Each probe of a replay is one ``before_model`` call on
the conversation so far, as when the whole history is sent with every request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

from ctxlab.budget import Budget
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Decision
from ctxlab.strategies.base import Pruned
from ctxlab.strategies.peers._base import PeerStrategy
from ctxlab.strategies.peers.langchain_trim import from_langchain, to_langchain
from ctxlab.summarizers import ExtractiveSummarizer
from ctxlab.summarizers._llm_calls import ProviderLike
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

__all__ = ["ContextSize", "LangchainSummarize"]

PACKAGE = "langchain"
#: LangChain's ``ContextSize``: ``("messages", 20)``, ``("tokens", 3000)``, ``("fraction", 0.8)``.
ContextSize: TypeAlias = tuple[str, float]


def _middleware_class() -> Any:
    try:
        from langchain.agents.middleware.summarization import SummarizationMiddleware
    except ImportError as exc:
        raise MissingDependencyError(PACKAGE, "peers", "the langchain_summarize strategy") from exc
    return SummarizationMiddleware


@dataclass(frozen=True, kw_only=True)
class LangchainSummarize(PeerStrategy):
    """LangChain's ``SummarizationMiddleware`` with the budget as the model's window.

    Attributes:
        provider: the model that writes summaries (a `Provider` or a `get_provider` spec),
            prompted by LangChain; None: ctxlab's extractive summarizer through LangChain's
            ``summarizer=`` hook (offline).
        model: the model to ask the provider for (default: the provider's).
        trigger: when to summarize, as LangChain takes it: a ``ContextSize``, a list of them
            (any), or None (LangChain's default: never). Default: the budget is reached.
        keep: what to keep verbatim after summarizing (LangChain's default: 20 messages).
        counter: ``"approximate"`` (LangChain's default counter) or ``"exact"`` (the run's).
        trim_tokens_to_summarize: LangChain shows the summarizer at most this many tokens of
            what it summarizes (None: everything).
        max_summary_tokens: longest reply asked of the provider; the extractive summary's
            length.
        cache: reuse the provider's replies from ctxlab's response cache.
    """

    name: ClassVar[str] = "langchain_summarize"
    package: ClassVar[str] = PACKAGE
    provider: ProviderLike | None = None
    model: str | None = None
    trigger: ContextSize | tuple[ContextSize, ...] | None = ("fraction", 1.0)
    keep: ContextSize = ("messages", 20)
    counter: Literal["approximate", "exact"] = "approximate"
    trim_tokens_to_summarize: int | None = 4000
    max_summary_tokens: int = 400
    cache: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "trigger", _sizes(self.trigger))  # a spec string gives lists
        object.__setattr__(self, "keep", _sizes(self.keep))
        if self.max_summary_tokens < 8:
            raise UsageError(
                f"max_summary_tokens must be at least 8, got {self.max_summary_tokens}"
            )
        self.middleware(Budget(max_tokens=1000))  # the extra, and LangChain's own checks

    def middleware(
        self,
        budget: Budget,
        counter: TokenCounter | None = None,
        originals: Sequence[Message] = (),
    ) -> Any:
        """The ``SummarizationMiddleware`` for one call (its model records its usage).

        Args:
            budget: its ``available`` tokens are the model's ``max_input_tokens``.
            counter: the run's counter (for ``counter="exact"`` and the extractive summary).
            originals: the messages the call gets, so counts and summaries read them as
                they are (LangChain's copies hold tool arguments re-parsed).

        Raises:
            UsageError: LangChain rejects ``trigger`` or ``keep``.
        """
        cls = _middleware_class()
        from ctxlab.strategies.peers._langchain_model import ProviderChatModel

        model = ProviderChatModel(
            provider=self.provider,
            model_name=self.model,
            max_tokens=self.max_summary_tokens,
            cache=self.cache,
            profile={"max_input_tokens": budget.available},
        )
        kwargs: dict[str, Any] = {
            "trigger": _trigger(self.trigger),
            "keep": self.keep,
            "trim_tokens_to_summarize": self.trim_tokens_to_summarize,
        }
        by_id = {m.id: m for m in originals}
        if self.counter == "exact" and counter is not None:
            kwargs["token_counter"] = _exact(counter, by_id)
        if self.provider is None and counter is not None:
            kwargs["summarizer"] = _extractive(counter, by_id, self.max_summary_tokens)
        try:
            return cls(model, **kwargs)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"bad parameter for strategy {self.name!r}: {exc}") from exc

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        originals = conversation.messages
        middleware = self.middleware(budget, counter, originals)
        update = middleware.before_model({"messages": to_langchain(originals)}, None)
        sent, given = _mapped(update, originals, self.label)
        used = sum(middleware.model.usage, Usage())
        return Pruned(
            conversation=conversation,
            messages=sent,
            tokens=counter.count_messages(sent),
            budget=budget,
            strategy=self.label,
            extra_usage=used,
            given_decisions=given,
        )


def _sizes(value: Any) -> Any:
    """Lists (from a spec string) as tuples: ``["tokens", 500]`` -> ``("tokens", 500)``."""
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], str):
            return tuple(value)
        return tuple(_sizes(v) for v in value)
    return dict(value) if isinstance(value, dict) else value


def _trigger(value: Any) -> Any:
    """LangChain's form: several conditions (any of them) as a list."""
    if isinstance(value, tuple) and value and not isinstance(value[0], str):
        return list(value)
    return value


def _as_ctxlab(messages: Sequence[Any], by_id: dict[str, Message]) -> list[Message]:
    """The originals behind LangChain messages (as LangChain left them); others converted."""
    from ctxlab.strategies.peers._langchain_model import to_ctxlab

    out = []
    for lm in messages:
        m = by_id.get(lm.id) if lm.id is not None else None
        out.append(to_ctxlab(lm) if m is None else from_langchain([lm], by_id)[0])
    return out


def _exact(counter: TokenCounter, by_id: dict[str, Message]) -> Any:
    def count(messages: Sequence[Any]) -> int:
        return counter.count_messages(_as_ctxlab(messages, by_id))

    return count


def _extractive(counter: TokenCounter, by_id: dict[str, Message], max_tokens: int) -> Any:
    summarizer = ExtractiveSummarizer()

    def summarize(messages: Sequence[Any]) -> str:
        folded = _as_ctxlab(messages, by_id)
        return summarizer.summarize(None, folded, max_tokens, counter).text

    return summarize


def _mapped(
    update: dict[str, Any] | None, originals: Sequence[Message], label: str
) -> tuple[tuple[Message, ...], list[Decision]]:
    """What was sent and one decision per original, from ``before_model``'s return value."""
    if update is None:
        kept = [Decision(index=i, message_id=m.id, action="kept", reason=f"kept by {label}")
                for i, m in enumerate(originals)]  # fmt: skip
        return tuple(originals), kept
    _, head, *preserved = update["messages"]  # RemoveMessage(all), the summary, the rest
    folded = {m.id for m in originals} - {p.id for p in preserved}
    covered = [m.id for m in originals if m.id in folded]
    # Deterministic, so that two prunes of the same input name the summary the same.
    seed = "\x00".join([*covered, head.text])
    summary = Message(
        role="user",
        content=head.text,
        id=f"summary_{hashlib.sha1(seed.encode()).hexdigest()[:16]}",
        meta={"synthetic": True, "summary_of": covered},
    )
    sent = (summary, *from_langchain(preserved, {m.id: m for m in originals}))
    out = []
    for i, m in enumerate(originals):
        if m.id in folded:
            why = f"summarized by {label}"
            out.append(Decision(index=i, message_id=m.id, action="summarized", reason=why,
                                into=summary.id))  # fmt: skip
        else:
            out.append(Decision(index=i, message_id=m.id, action="kept", reason=f"kept by {label}"))
    return sent, out
