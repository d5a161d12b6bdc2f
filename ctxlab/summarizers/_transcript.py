"""Messages rendered as a plain transcript, for prompts that show a conversation to a model.

One line (or paragraph) per message, the speaker first, tool calls and results spelled out,
and a ``DATE:`` line whenever the date changes::

    DATE: 1:56 pm on 8 May, 2023
    Caroline: I went to a LGBTQ support group yesterday and it was so powerful.
    assistant: (calls get_user_details {"user_id": "mia_li_3668"})
    tool result (get_user_details): {"name": {"first_name": "Mia", ...}}
    Summary of earlier messages: Caroline joined a support group on 7 May 2023.

Sending the conversation as text rather than as chat turns matters for recorded two-person
dialogues (LoCoMo maps its two people to user and assistant), and keeps tool calls readable
for models without tool support.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ctxlab.messages import Message
from ctxlab.tokens import TokenCounter

__all__ = ["Line", "clip_middle", "join", "lines", "render"]

_SUMMARY_HEADER = "Summary of the earlier conversation:\n"


@dataclass(frozen=True, kw_only=True, slots=True)
class Line:
    """One message as transcript text, and the date it was written (if known)."""

    date: str | None
    text: str


def render(
    messages: Sequence[Message],
    *,
    counter: TokenCounter | None = None,
    max_message_tokens: int | None = None,
) -> str:
    """The messages as a transcript; each message clipped to `max_message_tokens` if given."""
    return join(lines(messages, counter=counter, max_message_tokens=max_message_tokens))


def lines(
    messages: Sequence[Message],
    *,
    counter: TokenCounter | None = None,
    max_message_tokens: int | None = None,
) -> list[Line]:
    """One `Line` per message (see `render`)."""
    names = _call_names(messages)
    out = []
    for m in messages:
        text = m.text.strip()
        if counter is not None and max_message_tokens is not None:
            text = clip_middle(text, max_message_tokens, counter)
        out.append(Line(date=_date(m), text=_line(m, text, names)))
    return out


def join(items: Sequence[Line]) -> str:
    """Transcript text of `items`, with a ``DATE:`` line wherever the date changes."""
    out: list[str] = []
    date: str | None = None
    for item in items:
        if item.date is not None and item.date != date:
            out.append(f"DATE: {item.date}")
            date = item.date
        out.append(item.text)
    return "\n".join(out)


def _line(m: Message, text: str, names: dict[str, str]) -> str:
    if m.is_synthetic:
        body = text.removeprefix(_SUMMARY_HEADER.strip()).strip()
        return f"Summary of earlier messages: {body}"
    if m.is_tool_output:
        tool = m.name or names.get(m.tool_call_id or "", "")
        return f"tool result ({tool}): {text}" if tool else f"tool result: {text}"
    speaker = m.meta.get("speaker") or m.name or m.role
    calls = " ".join(f"(calls {c.name} {c.arguments})" for c in m.tool_calls)
    body = " ".join(part for part in (text, calls) if part)
    return f"{speaker}: {body}"


def _call_names(messages: Sequence[Message]) -> dict[str, str]:
    return {c.id: c.name for m in messages for c in m.tool_calls}


def _date(m: Message) -> str | None:
    written = m.meta.get("session_date")
    if isinstance(written, str) and written:
        return written
    return m.timestamp.date().isoformat() if m.timestamp is not None else None


def clip_middle(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """`text` within `max_tokens`: the middle replaced by a marker saying how much was cut."""
    if counter.count_text(text) <= max_tokens:
        return text
    units, sep = text.split(), " "
    if len(units) < 8:  # a few huge "words" (a blob of data): cut on characters instead
        units, sep = [text[i : i + 16] for i in range(0, len(text), 16)], ""
    keep = min(len(units) - 1, max(2, max_tokens * 2 // 3))
    while keep >= 2:
        head, tail = units[: keep * 2 // 3], units[len(units) - keep // 3 :]
        cut = len(units) - len(head) - len(tail)
        what = f"{cut} words" if sep else f"{cut * 16} characters"
        clipped = f"{sep.join(head)} [... {what} cut ...] {sep.join(tail)}"
        if counter.count_text(clipped) <= max_tokens:
            return clipped
        keep = keep * 3 // 4
    return f"[... {len(text)} characters cut ...]"
