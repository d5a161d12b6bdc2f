"""What every peer adapter shares: its library's version, and rules measured, never enforced."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ctxlab.budget import Budget
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Pruned
from ctxlab.strategies.base import BaseStrategy
from ctxlab.strategies.peers import library_version
from ctxlab.strategies.peers._decisions import decisions
from ctxlab.tokens import TokenCounter

__all__ = ["PeerStrategy"]


class PeerStrategy(BaseStrategy):
    """Base of the peers: ``package`` names the library; its output is never checked.

    A peer may break `ctxlab.invariants`; the violations metric counts what it breaks.
    """

    package: ClassVar[str]

    @classmethod
    def library(cls) -> str:
        """The library and version this adapter calls."""
        return library_version(cls.package)

    def sent(
        self,
        conversation: Conversation,
        sent: Sequence[Message],
        budget: Budget,
        counter: TokenCounter,
        changed: str,
    ) -> Pruned:
        """The request made of what the library sent back, decisions read off it.

        Args:
            conversation: the conversation the library was given.
            sent: the library's output mapped back to ctxlab messages (originals by identity).
            budget: the budget of the request.
            counter: the run's counter; the tokens are counted exactly on what was sent.
            changed: how the library changes a message it keeps ("cut", "shortened").
        """
        sent = tuple(sent)
        return Pruned(
            conversation=conversation,
            messages=sent,
            tokens=counter.count_messages(sent),
            budget=budget,
            strategy=self.label,
            given_decisions=decisions(conversation.messages, sent, self.label, changed),
        )

    def _check(
        self, original: Conversation, pruned: Pruned, budget: Budget, counter: TokenCounter
    ) -> None:
        pass  # measured by the violations metric, never enforced
