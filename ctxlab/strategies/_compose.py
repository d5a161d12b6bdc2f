"""Chaining strategies: run one on another's output, described in terms of the original.

A later step sees the earlier step's messages as its conversation; `compose` maps its decisions
back to the original messages (a message kept by the first step and masked by the second is
masked; a summary dropped later makes the messages folded into it dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

from ctxlab.messages import Conversation
from ctxlab.strategies.base import Action, Decision, Pruned

__all__ = ["chain", "compose", "decision"]

_Key = tuple[int, str, str, str, "str | None"]
_INTERNED: dict[_Key, Decision] = {}
_INTERNED_MAX = 200_000


def decision(
    index: int,
    message_id: str,
    action: Action,
    reason: str,
    score: float | None = None,
    into: str | None = None,
) -> Decision:
    """``Decision(...)``, the same object for equal arguments (decisions are frozen).

    A replay describes every message again at every probe, mostly as it did at the last one:
    looking a decision up costs a fraction of building it. The table is emptied when full.
    Decisions with a score are built afresh (a float key would merge 0.0 and -0.0).
    """
    if score is not None:
        return Decision(
            index=index, message_id=message_id, action=action, reason=reason, score=score, into=into
        )
    key = (index, message_id, action, reason, into)
    found = _INTERNED.get(key)
    if found is None:
        if len(_INTERNED) >= _INTERNED_MAX:
            _INTERNED.clear()
        found = _INTERNED[key] = Decision(
            index=index, message_id=message_id, action=action, reason=reason, score=score, into=into
        )
    return found


def compose(first: Sequence[Decision], second: Sequence[Decision]) -> list[Decision]:
    """Decisions about original messages, given a first step's and a second step's decisions.

    Args:
        first: one decision per original message.
        second: one decision per message the first step produced.
    """
    later = {d.message_id: d for d in second}
    return [_follow(d, later) for d in first]


def _follow(d: Decision, later: dict[str, Decision]) -> Decision:
    if d.action == "dropped":
        return d
    carrier = d.into if d.action == "summarized" else d.message_id
    e = later.get(carrier or "")
    if e is None:  # the carrier vanished without a decision: treat it as dropped
        return _with(d, "dropped", "dropped by a later step", d.score, None)
    score = d.score if e.score is None else e.score
    if e.action == "kept":
        return d if d.action != "kept" else _with(d, d.action, e.reason, score, d.into)
    if d.action == "summarized":
        if e.action == "dropped":
            return _with(d, "dropped", f"its summary was dropped ({e.reason})", d.score, None)
        return _with(d, d.action, d.reason, d.score, e.into if e.action == "summarized" else d.into)
    if d.action == "kept" or e.action in ("dropped", "summarized"):
        return _with(d, e.action, e.reason, score, e.into)
    # masked or truncated twice: what is sent is the later change of the same message
    return _with(d, e.action, f"{d.reason}; {e.reason}", score, e.into)


def _with(
    d: Decision, action: Action, reason: str, score: float | None, into: str | None
) -> Decision:
    # Not `dataclasses.replace`, which costs several times more: a long replay composes one
    # decision per message and probe.
    return decision(d.index, d.message_id, action, reason, score, into)


def chain(conversation: Conversation, first: Pruned, second: Pruned, label: str) -> Pruned:
    """The result of running `second` on `first.messages`, told about `conversation`."""
    return Pruned(
        conversation=conversation,
        messages=second.messages,
        tokens=second.tokens,
        budget=second.budget,
        strategy=label,
        extra_usage=first.extra_usage + second.extra_usage,
        decide=lambda: compose(first.decisions, second.decisions),
    )
