"""A library's chat memory walked through a conversation, as an application would use it.

The stateful peers (summary buffers, Semantic Kernel's reducers) keep a history that the
application appends to and reduces before each request; what the memory holds later depends
on when it was reduced before. The walk puts every message in, in order, and reduces the
memory before each assistant message (the moment a request for that reply is sent); the
result at a prefix ``messages[:k]`` is the memory reduced once more at k, on a copy, so the
walk itself goes on as if that prefix had not been asked about. ``prune(conversation)`` is
therefore the result at the end of one walk, and ``replay`` yields, at each probe, exactly
what ``prune`` gives for that prefix, in one pass (as for ctxlab's own `summarize`).

A memory (`Memory`) says how to convert messages, how to reduce a list of its messages with
the library (returning the new list, the messages its summarizer was given and the tokens of
its calls) and how to read and set the key that names a message. Messages the library wrote
(summaries) get a key the first time they are seen, and stand for the originals behind the
messages they were written from; the decisions say which originals each summary replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ctxlab.budget import Budget
from ctxlab.messages import Conversation, Message
from ctxlab.pruned import Decision, Pruned
from ctxlab.strategies._layout import prefix_of
from ctxlab.strategies.peers._base import PeerStrategy
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

__all__ = ["Memory", "MemoryWalk", "Reduction", "WalkedPeer"]


@dataclass(frozen=True, kw_only=True)
class Reduction:
    """What one reduction by the library gave.

    Attributes:
        messages: the memory after it, in the library's types.
        summarized: keys of the messages its summarizer was given (empty: no summary call).
        usage: tokens of the summarizer calls made.
    """

    messages: list[Any]
    summarized: tuple[str, ...] = ()
    usage: Usage = field(default_factory=Usage)


class Memory(Protocol):
    """How the walk talks to one library."""

    def convert(self, message: Message) -> Any:
        """The library's message for a ctxlab one, keyed by the message's id."""
        ...

    def reduce(self, messages: list[Any]) -> Reduction:
        """The library's reduction of `messages` (a copy the library may change)."""
        ...

    def key(self, message: Any) -> str | None:
        """The key a library message carries, None for one the library wrote."""
        ...

    def set_key(self, message: Any, key: str) -> None:
        """Name a message the library wrote."""
        ...

    def back(self, message: Any, original: Message | None, key: str) -> Message:
        """The ctxlab message for a library one.

        The original (as the library left it), or for a message the library wrote a new
        message with id `key`.
        """
        ...


class MemoryWalk:
    """One walk of a memory through a conversation (see the module docstring)."""

    def __init__(
        self,
        memory: Memory,
        conversation: Conversation,
        budget: Budget,
        counter: TokenCounter,
        label: str,
    ) -> None:
        self.memory, self.conv, self.budget, self.counter = memory, conversation, budget, counter
        self.label = label
        self.k = 0
        self.state: list[Any] = []
        self.ready: list[Any] | None = None  # the state reduced at k, when already asked for
        self.covers: dict[str, tuple[str, ...]] = {}  # summary key -> original ids
        self.usage = Usage()  # calls since the last result
        self.total = Usage()  # calls since the start

    def advance(self, k: int) -> None:
        """Put messages up to `k`, reducing before each assistant message."""
        msgs = self.conv.messages
        while self.k < k:
            m = msgs[self.k]
            if m.role == "assistant" and self.state:
                self.state = self.ready if self.ready is not None else self._reduce(self.state)
            self.ready = None
            self.state.append(self.memory.convert(m))
            self.k += 1

    def _reduce(self, state: Sequence[Any]) -> list[Any]:
        done = self.memory.reduce(list(state))
        self.usage, self.total = self.usage + done.usage, self.total + done.usage
        for lm in done.messages:
            if self.memory.key(lm) is None:
                self._name(lm, done.summarized)
        return list(done.messages)

    def _name(self, lm: Any, summarized: Sequence[str]) -> None:
        covered: list[str] = []
        for key in summarized:
            covered.extend(self.covers.get(key, (key,)))
        covered = list(dict.fromkeys(covered))
        # named by what it replaced, so that a replay and a prune of a prefix name it alike
        seed = "\x00".join([self.conv.id, *covered])
        key = f"summary_{hashlib.sha1(seed.encode()).hexdigest()[:16]}"
        self.memory.set_key(lm, key)
        self.covers[key] = tuple(covered)

    def result(self, *, all_calls: bool = False) -> Pruned:
        """The memory at the prefix walked so far, reduced for a request there.

        Args:
            all_calls: report the calls since the start (what `prune` of this prefix reports)
                rather than those since the last result (a replay's probe).
        """
        if self.ready is None:
            self.ready = self._reduce(self.state) if self.state else []
        originals = self.conv.messages[: self.k]
        by_id = {m.id: m for m in originals}
        sent = []
        for lm in self.ready:
            key = self.memory.key(lm) or ""
            original = by_id.get(key)
            m = self.memory.back(lm, original, key)
            if original is None:  # the library wrote it: a summary of what it covers
                m = m.replace(id=key, meta={"synthetic": True, "summary_of": self.covers[key]})
            sent.append(m)
        usage, self.usage = (self.total if all_calls else self.usage), Usage()
        return Pruned(
            conversation=prefix_of(self.conv, self.k),
            messages=tuple(sent),
            tokens=self.counter.count_messages(sent),
            budget=self.budget,
            strategy=self.label,
            extra_usage=usage,
            given_decisions=self._decisions(originals, sent),
        )

    def _decisions(self, originals: Sequence[Message], sent: Sequence[Message]) -> list[Decision]:
        out_by_id = {m.id: m for m in sent}
        into = {oid: m.id for m in sent for oid in self.covers.get(m.id, ())}
        out = []
        for i, m in enumerate(originals):
            other, summary = out_by_id.get(m.id), into.get(m.id)
            if other is m:
                d = Decision(
                    index=i, message_id=m.id, action="kept", reason=f"kept by {self.label}"
                )
            elif other is not None:
                why = f"changed by {self.label}"
                d = Decision(index=i, message_id=m.id, action="truncated", reason=why, into=m.id)
            elif summary is not None:
                why = f"replaced by {self.label}'s summary"
                d = Decision(
                    index=i, message_id=m.id, action="summarized", reason=why, into=summary
                )
            else:
                why = f"removed by {self.label}"
                d = Decision(index=i, message_id=m.id, action="dropped", reason=why)
            out.append(d)
        return out


class WalkedPeer(PeerStrategy):
    """Mixin for the stateful peers: `prune` and `replay` are a `MemoryWalk` of `memory`.

    Nothing is enforced: the output is measured by the violations metric.
    """

    def memory(self, budget: Budget) -> Memory:
        """The library's memory for one walk at this budget."""
        raise NotImplementedError

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        walk = MemoryWalk(self.memory(budget), conversation, budget, counter, self.label)
        walk.advance(len(conversation.messages))
        return walk.result(all_calls=True)

    def _replay(
        self,
        conversation: Conversation,
        probes: Sequence[int],
        budget: Budget,
        counter: TokenCounter,
    ) -> Iterator[Pruned]:
        walk = MemoryWalk(self.memory(budget), conversation, budget, counter, self.label)
        for k in probes:
            walk.advance(k)
            yield walk.result()
