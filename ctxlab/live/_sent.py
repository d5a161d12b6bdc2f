"""How a reply records what its turn sent: runs of ids, not one id per message.

Each reply's ``meta["sent"]`` says which messages its request held. Written as one id per
message, every reply would store as many ids as its request held messages: with short turns
and a 4,000-token budget, 180 ids and 5 KB per reply, decoded again at every load, and while
the history still fits the budget that grows with every turn. So it lists runs: a request sends
stretches of consecutive session messages (the latest turns, a summary before them), and a
stretch of two or more is written ``[first_id, last_id]``; a message sent alone, one that is
not in the session (a summary, a placeholder with a new id) and the system message (it can be
replaced later) are written as their id. `sent_ids` writes the runs out again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ctxlab.errors import UsageError
from ctxlab.messages import Message

__all__ = ["pack", "sent_ids"]


def pack(sent: Sequence[str], session: Sequence[str]) -> list[Any]:
    """`sent` (ids) with each run of consecutive ids of `session` (no system message) as a pair."""
    positions = {mid: j for j, mid in enumerate(session)}
    out: list[Any] = []
    start = end = -1
    for mid in sent:
        at = positions.get(mid, -1)
        if at >= 0 and end >= 0 and at == end + 1:
            end = at
            continue
        _flush(out, session, start, end)
        start = end = at
        if at < 0:
            out.append(mid)
    _flush(out, session, start, end)
    return out


def _flush(out: list[Any], ids: Sequence[str], start: int, end: int) -> None:
    if start >= 0:
        out.append(ids[start] if start == end else [ids[start], ids[end]])


def sent_ids(history: Sequence[Message], reply: Message) -> list[str]:
    """The ids of the messages `reply`'s request held, in order, runs written out.

    Args:
        history: the session's messages (`Session.history`, or a `Session.export`'s).
        reply: one of its assistant messages that a turn stored.

    Raises:
        UsageError: `reply` records no ``sent`` field, or names runs `history` does not hold.
    """
    sent = reply.meta.get("sent")
    if sent is None:
        raise UsageError(f"message {reply.id!r} records no 'sent' field (not a session reply)")
    if isinstance(sent, str) or not isinstance(sent, Sequence):
        raise UsageError(f"message {reply.id!r}: 'sent' must be a list, got {sent!r:.80}")
    turns = history[1:] if history and history[0].role == "system" else history
    ids = [m.id for m in turns]
    positions = {mid: j for j, mid in enumerate(ids)}
    out: list[str] = []
    for item in sent:
        if isinstance(item, str):
            out.append(item)
            continue
        if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != 2:
            raise UsageError(
                f"message {reply.id!r}: each 'sent' entry must be an id or [first_id, last_id], "
                f"got {item!r:.80}"
            )
        first, last = item
        if first not in positions or last not in positions:
            raise UsageError(
                f"message {reply.id!r} sent the run {first!r}..{last!r}, which this history "
                "does not hold; pass the whole history of the session it belongs to"
            )
        out += ids[positions[first] : positions[last] + 1]
    return out
