"""`pipeline`: strategies applied one after the other, described in terms of the original."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.invariants import check
from ctxlab.messages import Conversation, Message
from ctxlab.strategies._compose import chain
from ctxlab.strategies.base import BaseStrategy, Pruned
from ctxlab.strategies.summarize import Summarize
from ctxlab.tokens import TokenCounter

__all__ = ["Pipeline", "default_steps", "pipeline"]

#: Results of the first step read ahead in a replay, to see which messages stay unchanged.
LOOKAHEAD = 16


def default_steps() -> tuple[BaseStrategy, ...]:
    """Mask old tool outputs, fold old turns into a running summary, then fit the window."""
    from ctxlab.strategies import get_strategy

    return (
        get_strategy("mask_tool_outputs", fallback=None),
        get_strategy("summarize"),
        get_strategy("token_window"),
    )


@dataclass(frozen=True, kw_only=True)
class Pipeline(BaseStrategy):
    """Apply `steps` in order, each to the messages the previous one produced.

    The default is the offline hybrid: ``mask_tool_outputs(fallback=None)`` (old tool outputs
    become placeholders), ``summarize`` (old turns folded into a running summary), then
    ``token_window`` as the last guard on the budget.

    - Decisions are about the original messages: a message kept by one step and masked by a
      later one is masked; messages folded into a summary that a later step drops are dropped.
    - `extra_usage` is the sum over the steps; the budget is enforced when any step enforces
      it (every step but ``keep_all`` and rewrites with ``fallback=None``), and
      `BudgetUnreachableError` comes from the first enforcing step.
    - Steps may be given as strategies or registry names; a replay replays the first step and
      prunes each of its results with the later steps, with the same results as pruning each
      prefix.

    Replay cost: a `summarize` step right after the first one is not restarted at every probe.
    Its input at a probe is the first step's output, which is mostly the previous probe's input
    plus the new messages, except where the first step changed a message it had sent unchanged
    before: masking turns the newest tool outputs into placeholders a few probes later, and a
    tool call waiting for its results reappears once they arrive. The pipeline reads the first
    step's results a few probes ahead (`LOOKAHEAD`), advances one shared summary walk only over
    the leading messages that stay the same there, and walks the rest of each probe's input on
    a copy of it (`ctxlab.strategies.summarize.Resumer`). The results are exactly those of
    pruning each prefix, because a summary walk over a message list depends on nothing after
    the messages walked, and a guess proven wrong (an earlier message changed after all)
    restarts the walk. What stays per probe: the first step itself (masking rewrites the whole
    prefix), the steps after the summary (they see only the short summarized context), and the
    decisions, which are composed per probe when they are read.

    Attributes:
        steps: the strategies applied in order (strategies or registry names).
    """

    name: ClassVar[str] = "pipeline"
    steps: tuple[BaseStrategy, ...] = field(default_factory=default_steps)

    def __post_init__(self) -> None:
        raw: Any = self.steps
        if isinstance(raw, (str, BaseStrategy)) or not isinstance(raw, Sequence) or not raw:
            raise UsageError("pipeline steps must be a non-empty list of strategies or names")
        object.__setattr__(self, "steps", tuple(_resolve(step) for step in raw))

    @property
    def enforces_budget(self) -> bool:
        """True when some step enforces the budget."""
        return any(getattr(step, "enforces_budget", True) for step in self.steps)

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        first = self.steps[0]._prune(conversation, budget, counter)
        return self._finish(conversation, first, budget, counter)

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        firsts = self.steps[0]._replay(conversation, probes, budget, counter)
        second = self.steps[1] if len(self.steps) > 1 else None
        if not isinstance(second, Summarize):
            for first in firsts:
                yield self._finish(first.conversation, first, budget, counter)
            return
        resumer = second.resumer(budget, counter)
        for first, stable in _with_stable(firsts):
            conv = first.conversation
            later = resumer.prune(conv.with_messages(first.messages), stable)
            yield self._finish(conv, chain(conv, first, later, self.label), budget, counter, 2)

    def _finish(
        self,
        conversation: Conversation,
        result: Pruned,
        budget: Budget,
        counter: TokenCounter,
        start: int = 1,
    ) -> Pruned:
        label = self.label
        if len(self.steps) == 1:
            return replace(result, strategy=label)
        for step in self.steps[start:]:
            later = step._prune(conversation.with_messages(result.messages), budget, counter)
            result = chain(conversation, result, later, label)
        return result

    def _check(
        self, original: Conversation, pruned: Pruned, budget: Budget, counter: TokenCounter
    ) -> None:
        check(original, pruned, budget, counter, enforce_budget=self.enforces_budget)


def _with_stable(results: Iterator[Pruned]) -> Iterator[tuple[Pruned, int]]:
    """Each result with how many of its leading messages the next few results share.

    Reads up to `LOOKAHEAD` results ahead; an error raised by the underlying replay is raised
    again in its place in the sequence, after the results before it.
    """
    ahead: deque[Pruned] = deque()
    error: BaseException | None = None
    while True:
        while error is None and len(ahead) <= LOOKAHEAD:
            try:
                ahead.append(next(results))
            except StopIteration:
                break
            except Exception as exc:  # re-raised below, where the replay raised it
                error = exc
        if not ahead:
            if error is not None:
                raise error
            return
        current = ahead.popleft()
        msgs = current.messages
        stable = min((_common(msgs, later.messages) for later in ahead), default=len(msgs))
        yield current, stable


def _common(a: Sequence[Message], b: Sequence[Message]) -> int:
    """Length of the longest common prefix of two message sequences (binary search)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:  # the usual case: one extends the other
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _resolve(step: Any) -> BaseStrategy:
    from ctxlab.strategies import get_strategy

    if isinstance(step, str):
        return get_strategy(step)
    if isinstance(step, BaseStrategy):
        return step
    raise UsageError(f"a pipeline step must be a strategy or a registry name, got {step!r}")


def pipeline(steps: Sequence[BaseStrategy | str]) -> Pipeline:
    """A `Pipeline` of these steps, e.g. ``pipeline(["mask_tool_outputs", "token_window"])``."""
    return Pipeline(steps=tuple(_resolve(step) for step in steps))
