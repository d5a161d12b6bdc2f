"""Default budgets of ``ctxlab compare``: budgets that bind on each dataset.

One list of budgets for every dataset would not bind on most of them: 16,000 tokens is more
than any tau-bench run, and 1,000 more than any MT-Bench-101 dialogue, so every strategy
would send everything and the table would show the same row many times. Instead each
dataset gets budgets between what must always be sent and its median conversation:

    budget = pinned + f x (median - pinned),  f in 25%, 50%, 75%

where ``median`` is the median size of its conversations (every message, one request) and
``pinned`` the median size of what no strategy may drop (the first system message and the
newest user message). Budgets are rounded to two significant digits. A dataset whose median
conversation is under `MIN_TOKENS` is left out, with the reason said.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ctxlab.invariants import required_tokens
from ctxlab.messages import Conversation
from ctxlab.tokens import TokenCounter

__all__ = ["FRACTIONS", "MIN_TOKENS", "DatasetBudgets", "default_budgets"]

#: Shares of the room between the pinned part and the median conversation.
FRACTIONS = (0.25, 0.5, 0.75)
#: Datasets whose median conversation is smaller are left out of the default run.
MIN_TOKENS = 1000


@dataclass(frozen=True, kw_only=True)
class DatasetBudgets:
    """The budgets chosen for one dataset and why.

    Attributes:
        dataset: the dataset name.
        budgets: the budgets, ascending; empty when the dataset is left out.
        median_tokens: the median conversation's size in tokens.
        pinned_tokens: the median size of what must always be sent.
        conversations: how many conversations the dataset has.
    """

    dataset: str
    budgets: tuple[int, ...]
    median_tokens: int
    pinned_tokens: int
    conversations: int

    @property
    def note(self) -> str:
        """One line saying which budgets were chosen and how, or why there are none."""
        sizes = (
            f"median conversation {self.median_tokens:,} tokens, of which "
            f"{self.pinned_tokens:,} must always be sent"
        )
        if not self.budgets:
            return (
                f"{self.dataset}: left out: its {sizes}; no budget of {MIN_TOKENS:,} tokens or "
                f"more would bind (name it with --data {self.dataset} --budget N to include it)"
            )
        shares = "/".join(f"{f:.0%}" for f in FRACTIONS)
        chosen = ", ".join(f"{b:,}" for b in self.budgets)
        return f"{self.dataset}: budgets {chosen} = pinned + {shares} of the rest ({sizes})"


def default_budgets(
    conversations: Sequence[Conversation], counter: TokenCounter
) -> list[DatasetBudgets]:
    """Budgets per dataset, in order of first appearance (see the module docstring)."""
    by_dataset: dict[str, list[Conversation]] = {}
    for conv in conversations:
        by_dataset.setdefault(conv.dataset or "custom", []).append(conv)
    return [_for_dataset(name, convs, counter) for name, convs in by_dataset.items()]


def _for_dataset(name: str, convs: Sequence[Conversation], counter: TokenCounter) -> DatasetBudgets:
    counter.count_many([m for c in convs for m in c.messages])  # one pass fills the cache
    median = int(statistics.median(counter.count_messages(c.messages) for c in convs))
    pinned = int(statistics.median(required_tokens(c.messages, counter) for c in convs))
    budgets: tuple[int, ...] = ()
    if median >= MIN_TOKENS:
        raw = (pinned + f * (median - pinned) for f in FRACTIONS)
        budgets = tuple(sorted({_round(b) for b in raw}))
    return DatasetBudgets(
        dataset=name, budgets=budgets, median_tokens=median, pinned_tokens=pinned,
        conversations=len(convs),
    )  # fmt: skip


def _round(value: float) -> int:
    """`value` rounded to two significant digits."""
    digits = max(0, int(math.log10(max(value, 1))) - 1)
    return int(round(value, -digits))
