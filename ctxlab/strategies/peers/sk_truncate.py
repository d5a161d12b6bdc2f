"""``sk_truncate``: Semantic Kernel's ``ChatHistoryTruncationReducer``, called as it is.

A Semantic Kernel application keeps its history in the reducer and awaits ``reduce()`` before
each request. The adapter does the same over the conversation (`ctxlab.strategies.peers._walk`:
reduced before each assistant message, and once more at the prefix asked about), with
`target_count` and `threshold_count` as given, and maps what the reducer holds back to the
originals by id: held messages are kept, the rest dropped. The reducer counts messages, not
tokens: the budget plays no part in what it keeps, and ``violations`` shows where that goes
over. The output is not repaired (see `ctxlab.strategies.peers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.strategies.peers._semantic_kernel import (
    PACKAGE,
    SemanticKernelMemory,
    semantic_kernel,
)
from ctxlab.strategies.peers._walk import WalkedPeer

__all__ = ["SkTruncate"]


@dataclass(frozen=True, kw_only=True)
class SkTruncate(WalkedPeer):
    """Semantic Kernel's ``ChatHistoryTruncationReducer`` (needs the peers extra).

    Attributes:
        target_count: messages the reducer cuts the history down to.
        threshold_count: messages beyond `target_count` tolerated before it cuts.
    """

    name: ClassVar[str] = "sk_truncate"
    package: ClassVar[str] = PACKAGE
    target_count: int = 10
    threshold_count: int = 10

    def __post_init__(self) -> None:
        semantic_kernel(self.name)  # naming the strategy without the extra says which to install
        if self.target_count < 1 or self.threshold_count < 0:
            raise UsageError(
                f"sk_truncate needs target_count >= 1 and threshold_count >= 0, got "
                f"{self.target_count} and {self.threshold_count}"
            )

    def reducer(self, messages: list[Any]) -> Any:
        """A ``ChatHistoryTruncationReducer`` with these counts, holding `messages`."""
        reducers = semantic_kernel(self.name)
        return reducers.ChatHistoryTruncationReducer(
            target_count=self.target_count,
            threshold_count=self.threshold_count,
            messages=messages,
        )

    def memory(self, budget: Budget) -> SemanticKernelMemory:
        """The reducer, walked through a conversation (the budget plays no part)."""
        return SemanticKernelMemory(self.reducer)
