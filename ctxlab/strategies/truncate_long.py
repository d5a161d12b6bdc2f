"""`truncate_long`: cut the middle out of overlong messages, then fit the budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ctxlab.errors import UsageError
from ctxlab.invariants import must_keep
from ctxlab.messages import Message
from ctxlab.strategies._rewrite import Changes, RewriteStrategy
from ctxlab.strategies.base import Action, BaseStrategy
from ctxlab.strategies.token_window import TokenWindow
from ctxlab.tokens import TokenCounter

__all__ = ["TruncateLong", "marker_text"]

_ATTEMPTS = 8  # shrink steps when the character estimate of the cut overshoots


def marker_text(removed: int) -> str:
    """The text put where the middle of a message was cut out."""
    return f"\n[... {removed} tokens removed from the middle of this message ...]\n"


@dataclass(frozen=True, kw_only=True)
class TruncateLong(RewriteStrategy):
    """Cut messages longer than `max_tokens_per_message` in the middle, then fit the budget.

    - A message over the cap keeps its beginning and its end; the middle is replaced by a
      marker saying how many tokens were removed. It keeps its id, role and tool fields
      (decision ``truncated``). The cut is made on the text; a message whose fixed parts (tool
      call arguments, images) alone pass the cap ends as close to it as the text allows.
    - The first system message and the newest user message are never truncated.
    - Then `fallback` (default `token_window`) enforces the budget and the other invariants;
      with ``fallback=None`` nothing is dropped and the budget is not enforced (for pipelines).

    Attributes:
        max_tokens_per_message: the cap: a longer message is cut in the middle down to it.
        fallback: the strategy that then fits the budget (default `token_window`); None
            enforces no budget.
    """

    name: ClassVar[str] = "truncate_long"
    max_tokens_per_message: int = 1000
    fallback: BaseStrategy | None = field(default_factory=TokenWindow)

    def __post_init__(self) -> None:
        cap = self.max_tokens_per_message
        if isinstance(cap, bool) or cap < 1:
            raise UsageError(f"truncate_long max_tokens_per_message must be >= 1, got {cap!r}")

    def _rewrite(
        self, messages: Sequence[Message], counter: TokenCounter, cache: dict[str, Any]
    ) -> tuple[tuple[Message, ...], Changes]:
        protected = set(must_keep(messages).indices)
        counts = counter.count_many(messages)
        out = list(messages)
        changes: dict[int, tuple[Action, str]] = {}
        cuts: dict[str, tuple[Message, int] | None] = cache.setdefault("cuts", {})
        for i, m in enumerate(messages):
            if i in protected or counts[i] <= self.max_tokens_per_message:
                continue
            if m.id not in cuts:
                cuts[m.id] = _cut(m, self.max_tokens_per_message, counter)
            cut = cuts[m.id]
            if cut is not None:
                out[i] = cut[0]
                why = f"over {self.max_tokens_per_message} tokens: {cut[1]} cut from the middle"
                changes[i] = ("truncated", why)
        return tuple(out), changes


def _cut(m: Message, cap: int, counter: TokenCounter) -> tuple[Message, int] | None:
    """`m` with the middle of its text cut so it fits `cap`, and the tokens removed."""
    text = m.text
    if not isinstance(m.content, str) or not text:
        return None  # multi-part contents are left alone: their parts cannot be cut safely
    fixed = counter.count(m.replace(content=""))
    total = counter.count(m) - fixed
    keep = max(0, cap - fixed - counter.count_text(marker_text(total)))
    chars = int(len(text) * keep / max(total, 1))
    for _ in range(_ATTEMPTS):
        half = chars // 2
        head, tail = text[:half], text[len(text) - half :]
        removed = counter.count_text(text[len(head) : len(text) - len(tail)])
        cut = m.replace(content=head + marker_text(removed) + tail)
        if counter.count(cut) <= cap or chars == 0:
            break
        chars = int(chars * 0.8)
    return (cut, removed) if counter.count(cut) < counter.count(m) else None
