"""`summarize`: fold the oldest turns into one running summary once the context gets too big.

The strategy walks the conversation one message at a time, as a live session would. After
each message it looks at the context it would send (first system message, the summary, every
message not folded yet); when that passes `trigger` × the budget, it folds the oldest units
(a tool call always with its results) into the summary until the context would be at most
`target` × the budget, leaving the last `keep_last` messages verbatim. The summary is then
*extended* by the summarizer with the newly folded messages, never rewritten from scratch.

Because the fold points depend only on the messages seen so far, ``prune(conversation)`` is the
state reached at the end of the conversation, and ``replay`` yields, at each probe, exactly what
``prune`` gives for that prefix, in one pass. It also lets a `Resumer` (used by `pipeline`)
continue one walk over inputs that extend each other, and copy it where they part, and a live
`Session` store the walk with each turn and `resume` it at the next one
(`ctxlab.strategies._summary_state`): the summarizer is then called once per fold over the
whole session, never again for folds an earlier turn made.

Where the summary goes: one message, right after the first system message (at the start when
there is none), with role ``user`` by default. A user-role summary is accepted by every chat API
(OpenAI, Anthropic, Gemini and local chat templates alike, which may reject a system message
after the first one), and it keeps text that came from users and tools out of the system
instructions' authority. ``role="system"`` is available for models that prefer it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.messages import Conversation
from ctxlab.strategies._summary_state import StateRejected, dump, restore
from ctxlab.strategies._summary_walk import SUMMARY_HEADER, Resumer, Walk
from ctxlab.strategies.base import BaseStrategy, Pruned, Resumed, debug_enabled
from ctxlab.summarizers import ExtractiveSummarizer, Summarizer
from ctxlab.tokens import TokenCounter

__all__ = ["SUMMARY_HEADER", "Resumer", "Summarize", "SummaryWindow"]


@dataclass(frozen=True, kw_only=True)
class Summarize(BaseStrategy):
    """Older turns folded into one running summary; recent turns verbatim.

    Guarantees:
        - at most ``budget.available`` tokens, the summary included (its summarizer's own
          tokens are reported in ``extra_usage``, at the probe where the calls were made);
        - the first system message and the newest user message are sent verbatim; the last
          `keep_last` messages too unless the budget cannot hold them;
        - a tool call is folded or kept together with all its results;
        - ``replay`` equals ``prune`` on each prefix; folding happens at most once per message;
        - ``resume`` from the state of a shorter conversation it extends equals ``prune``
          (messages, decisions, tokens) and calls the summarizer only for the new folds; a
          state that does not fit is detected and the walk starts over;
        - folded messages are ``summarized`` into the summary message (fresh id,
          ``meta["synthetic"]``, ``meta["summary_of"]`` listing their ids); when no summary
          fits at all they are ``dropped``.

    Attributes:
        summarizer: extends the summary (default: `ExtractiveSummarizer`, offline).
        keep_last: messages at the end never folded while the budget allows it.
        trigger: fold once the context would pass this share of the budget.
        target: fold until the context would be at most this share of the budget.
        summary_share: share of the budget the summary may take.
        role: role of the summary message.
    """

    name: ClassVar[str] = "summarize"

    summarizer: Summarizer = field(default_factory=ExtractiveSummarizer)
    keep_last: int = 4
    trigger: float = 1.0
    target: float = 0.7
    summary_share: float = 0.2
    role: Literal["user", "system"] = "user"

    def __post_init__(self) -> None:
        if self.keep_last < 0:
            raise UsageError(f"keep_last must be >= 0, got {self.keep_last}")
        if not 0 < self.target <= self.trigger <= 1:
            raise UsageError(
                f"need 0 < target <= trigger <= 1, got target={self.target}, trigger={self.trigger}"
            )
        if not 0 <= self.summary_share < self.target:
            raise UsageError(
                f"summary_share must be in [0, target), got {self.summary_share} "
                f"(target {self.target})"
            )
        if self.role not in ("user", "system"):
            raise UsageError(f"role must be 'user' or 'system', got {self.role!r}")

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        run = Walk(self, conversation, budget, counter)
        run.advance(len(conversation.messages))
        return run.result()

    def resume(
        self, conversation: Conversation, budget: Budget, counter: TokenCounter, state: str | None
    ) -> Resumed:
        """``prune(conversation)`` walked on from `state` (see `ResumableStrategy`)."""
        run, rejected = None, None
        if state is not None:
            try:
                run = restore(self, conversation, budget, counter, state)
            except StateRejected as exc:
                rejected = str(exc)
        resumed_at = run.k if run is not None else 0
        if run is None:
            run = Walk(self, conversation, budget, counter)
        run.rebase(conversation)
        run.advance(len(conversation.messages))
        pruned = run.result()
        if debug_enabled():
            self._check(conversation, pruned, budget, counter)
        return Resumed(pruned=pruned, state=dump(run), resumed_at=resumed_at, rejected=rejected)

    def resumer(self, budget: Budget, counter: TokenCounter) -> Resumer:
        """A `Resumer`: prunes successive, mostly growing conversations (see `pipeline`)."""
        return Resumer(self, budget, counter)

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        run = Walk(self, conversation, budget, counter)
        for k in probes:
            run.advance(k)
            yield run.result()


@dataclass(frozen=True, kw_only=True)
class SummaryWindow(Summarize):
    """`summarize` tuned as a summary plus a token window, updated at every turn.

    Once the context passes 85% of the budget, the oldest turns are folded until it is back
    at 75%, so the verbatim part is always close to a token window of the newest messages and
    the summary covers everything older (the behaviour of a summary buffer memory). It calls
    the summarizer in small, frequent batches, where `summarize` folds 30% of the budget at a
    time.
    """

    name: ClassVar[str] = "summary_window"

    trigger: float = 0.85
    target: float = 0.75
