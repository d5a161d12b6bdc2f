"""What the peer adapters share: decisions read off what a library sent back."""

from __future__ import annotations

from collections.abc import Sequence

from ctxlab.messages import Message
from ctxlab.pruned import Decision

__all__ = ["decisions"]


def decisions(
    originals: Sequence[Message], sent: Sequence[Message], label: str, changed: str
) -> list[Decision]:
    """One decision per original: dropped, kept (the same object back) or truncated.

    Args:
        originals: the messages handed to the library.
        sent: what the adapter mapped the library's output back to (originals keep their id).
        label: the strategy's label, for the reasons.
        changed: how the library changes a message it keeps ("cut", "shortened").
    """
    by_id = {m.id: m for m in sent}
    out = []
    for i, m in enumerate(originals):
        other = by_id.get(m.id)
        if other is None:
            d = Decision(index=i, message_id=m.id, action="dropped", reason=f"trimmed by {label}")
        elif other is m:
            d = Decision(index=i, message_id=m.id, action="kept", reason=f"kept by {label}")
        else:
            why = f"{changed} by {label}"
            d = Decision(index=i, message_id=m.id, action="truncated", reason=why, into=m.id)
        out.append(d)
    return out
