"""The pure part of a `Session` turn: what to prune and send, and what to store afterwards.

Kept apart from `ctxlab.live.session` (which holds the locks and does the I/O) so the proxy and
tests can reason about one turn without a store or a provider.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeAlias

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.live._sent import pack
from ctxlab.messages import Conversation, Message, new_id
from ctxlab.providers.base import Completion
from ctxlab.strategies.base import Pruned, ResumableStrategy, Resumed, Strategy
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

__all__ = ["NewMessages", "Plan", "Turn", "plan_turn", "split_system"]

logger = logging.getLogger("ctxlab.live")

#: What a turn may add: the user's text, one message, or several (tool results, a system
#: message that replaces the session's).
NewMessages: TypeAlias = str | Message | Sequence[Message]


@dataclass(frozen=True, kw_only=True)
class Turn:
    """One completed turn of a session.

    Attributes:
        completion: the provider's reply, as returned.
        pruned: the strategy's result: what was sent (``pruned.messages``), one decision per
            message of the history, and the tokens sent.
        stored: what the turn added to the store: the new messages, then the reply.
    """

    completion: Completion
    pruned: Pruned
    stored: tuple[Message, ...]

    @property
    def reply(self) -> Message:
        """The stored assistant message (its ``meta`` records the turn: see `Session`)."""
        return self.stored[-1]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A turn ready to be sent: the pruned messages and what to store once the reply is in.

    Attributes:
        new: the new non-system messages (ids made unique, timestamps filled in).
        new_system: the system message to store with the turn when it changes, else None.
        pruned: the strategy's result over the history plus `new`.
        resumed: for a `ResumableStrategy`, its result with the state to store, else None.
        last_summary: id of the summary the session's previous reply sent, if any.
        session: ids of the session's messages up to `new` included, the system message not.
    """

    new: tuple[Message, ...]
    new_system: Message | None
    pruned: Pruned
    resumed: Resumed | None = None
    last_summary: str | None = None
    session: tuple[str, ...] = ()

    @property
    def state(self) -> str | None:
        """The strategy state to store with the turn (None: keep the stored one)."""
        return self.resumed.state if self.resumed is not None else None

    def finish(self, completion: Completion, counter: TokenCounter) -> Turn:
        """The `Turn` that `completion` completes, its reply carrying the turn's metadata."""
        bare = completion.to_message(timestamp=_now())
        meta: dict[str, Any] = {
            "model": completion.model,
            "finish_reason": completion.finish_reason,
            "latency_s": round(completion.latency_s, 6),
            "usage": usage_dict(completion.usage),
            "tokens": counter.count(bare),
            "sent": pack([m.id for m in self.pruned.messages], self.session),
            "sent_tokens": self.pruned.tokens,
            "strategy": self.pruned.strategy,
            "budget": self.pruned.budget.max_tokens,
        }
        if self.pruned.extra_usage:
            meta["extra_usage"] = usage_dict(self.pruned.extra_usage)
        if completion.cached:
            meta["cached"] = True
        if self.resumed is not None:
            meta.update(self._summary_meta(self.resumed))
        reply = bare.replace(meta=meta)
        return Turn(completion=completion, pruned=self.pruned, stored=(*self.new, reply))

    def _summary_meta(self, resumed: Resumed) -> dict[str, Any]:
        """Which summary the turn sent (its text on the first turn that sent it)."""
        meta: dict[str, Any] = {"resumed_at": resumed.resumed_at}
        if resumed.rejected is not None:
            meta["state_rejected"] = resumed.rejected
        summary = next((m for m in self.pruned.messages if m.meta.get("summary_of")), None)
        if summary is not None:
            meta["summary_id"] = summary.id
            if summary.id != self.last_summary or not resumed.resumed_at:
                meta["summary_text"] = summary.text
        return meta


def usage_dict(usage: Usage) -> dict[str, Any]:
    """The counts of a `Usage` as plain JSON (the provider's raw usage left out)."""
    return {
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "requests": usage.requests,
        "estimated": usage.estimated,
    }


def split_system(
    stored: Sequence[Message], wanted: Message | None
) -> tuple[Message | None, Message | None, tuple[Message, ...]]:
    """Split a stored session into (system in effect, system to store, turns).

    `wanted` replaces the stored system message unless it says the same thing (then the
    stored one, with its id, stays and nothing needs storing).
    """
    stored_system = stored[0] if stored and stored[0].role == "system" else None
    turns = tuple(stored[1:] if stored_system is not None else stored)
    if wanted is None or _same(wanted, stored_system):
        return stored_system, None, turns
    return wanted, wanted, turns


def plan_turn(
    new: NewMessages,
    stored: Sequence[Message],
    *,
    system: Message | None,
    strategy: Strategy,
    budget: Budget,
    counter: TokenCounter,
    session_id: str,
    state: str | None = None,
) -> Plan:
    """Prune the stored history plus `new` (see `Session` for the rules).

    A `ResumableStrategy` walks on from `state`, the one stored with the previous turn.
    """
    incoming = _as_messages(new)
    systems = [m for m in incoming if m.role == "system"]
    rest = [m for m in incoming if m.role != "system"]
    if not rest:
        raise UsageError("a turn needs a user (or tool) message, not only a system message")
    now, taken = _now(), {m.id for m in stored}
    wanted = _fresh(systems[-1], taken, now) if systems else system
    effective, new_system, turns = split_system(stored, wanted)
    _check_tool_results(rest, turns)
    fresh = tuple(_fresh(m, taken, now) for m in rest)
    head = (effective,) if effective is not None else ()
    conversation = Conversation(id=session_id, messages=(*head, *turns, *fresh))
    ids = tuple(m.id for m in (*turns, *fresh))
    if not isinstance(strategy, ResumableStrategy):
        pruned = strategy.prune(conversation, budget, counter)
        return Plan(new=fresh, new_system=new_system, pruned=pruned, session=ids)
    resumed = strategy.resume(conversation, budget, counter, state)
    if resumed.rejected is not None and state is not None:
        logger.warning(
            "session %s: stored summary state not used (%s); summarized the history again",
            session_id,
            resumed.rejected,
        )
    return Plan(
        new=fresh,
        new_system=new_system,
        pruned=resumed.pruned,
        resumed=resumed,
        last_summary=_last_summary(turns),
        session=ids,
    )


def _last_summary(turns: Sequence[Message]) -> str | None:
    for m in reversed(turns):
        if m.role == "assistant" and "sent" in m.meta:
            sid = m.meta.get("summary_id")
            return sid if isinstance(sid, str) else None
    return None


def _check_tool_results(new: Sequence[Message], turns: Sequence[Message]) -> None:
    """Every new tool result must answer a tool call of the session (stored or new)."""
    if not any(m.role == "tool" for m in new):
        return
    calls = {c.id for m in turns for c in m.tool_calls}
    for i, m in enumerate(new):
        calls.update(c.id for c in m.tool_calls)
        if m.role == "tool" and m.tool_call_id not in calls:
            raise UsageError(
                f"new message {i} is a tool result for call {m.tool_call_id!r}, but no "
                "assistant message of this session made that call; send results only for the "
                "calls of the session's latest reply"
            )


def _as_messages(new: NewMessages) -> list[Message]:
    if isinstance(new, str):
        return [Message(role="user", content=new)]
    if isinstance(new, Message):
        return [new]
    messages = list(new)
    bad = [m for m in messages if not isinstance(m, Message)]
    if bad:
        raise UsageError(f"a turn takes str, Message or a sequence of Message, got {bad[0]!r}")
    return messages


def _fresh(m: Message, taken: set[str], now: datetime) -> Message:
    """`m` with an id unused in the session and a timestamp."""
    changes: dict[str, Any] = {}
    if m.id in taken:
        changes["id"] = new_id()
    if m.timestamp is None:
        changes["timestamp"] = now
    taken.add(changes.get("id", m.id))
    return m.replace(**changes) if changes else m


def _same(a: Message, b: Message | None) -> bool:
    return b is not None and a.content == b.content and a.name == b.name


def _now() -> datetime:
    return datetime.now(timezone.utc)
