"""ShareGPT JSON: ``{"conversations": [{"from": "human", "value": "..."}, ...]}`` per record.

Speakers map to roles: ``human``/``user`` -> user, ``gpt``/``chatgpt``/``assistant``/
``model``/``bing``/``bard`` -> assistant, ``system`` -> system. The tool-use variant
(LLaMA-Factory) is read too: ``function_call`` (a JSON ``{"name", "arguments"}`` object, or a
list of them) becomes an assistant tool call with id ``call_<message id>_<k>``, and ``observation``/
``tool``/``function`` becomes the tool result of the oldest call not answered yet. A top-level
``system`` string becomes a leading system message. ``meta["from"]`` keeps the speaker label.

``id`` is the record's ``id`` when present, else ``"<file stem>-<record index>"``;
``source.dataset`` is the file stem.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import PurePath
from typing import Any

from ctxlab.errors import DataFormatError
from ctxlab.formats._common import field, optional, pair_tool_calls
from ctxlab.messages import Conversation, Message, Role, Source, ToolCall

__all__ = ["NAME", "ROLES", "matches", "parse"]

NAME = "sharegpt"

ROLES: dict[str, Role] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}


def matches(record: Any) -> bool:
    """True when a record looks like a ShareGPT conversation."""
    return isinstance(record, dict) and isinstance(record.get("conversations"), list)


def parse(record: Any, source: Source) -> Conversation:
    """One ShareGPT record as a `Conversation` (see the module docstring)."""
    turns = field(record, "conversations", list, "record")
    messages: list[Message] = []
    system = optional(record, "system", str, "record")
    if system:
        messages.append(Message(role="system", content=system, id="m0", meta={"from": "system"}))
    pending: deque[str] = deque()
    for i, turn in enumerate(turns):
        messages.append(_message(turn, f"conversations[{i}]", f"m{len(messages)}", pending))
    messages, _ = pair_tool_calls(messages, "conversations")
    stem = PurePath(source.path).stem if source.path else "sharegpt"
    raw_id = optional(record, "id", (str, int), "record")
    conv_id = str(raw_id) if raw_id is not None else f"{stem}-{source.record or 0}"
    source = Source(dataset=stem, path=source.path, record=source.record)
    return Conversation(id=conv_id, messages=tuple(messages), source=source)


def _message(turn: Any, where: str, message_id: str, pending: deque[str]) -> Message:
    speaker = field(turn, "from", str, where)
    role = ROLES.get(speaker)
    if role is None:
        raise DataFormatError(
            f"{where}: unknown speaker {speaker!r}; expected one of {', '.join(ROLES)}"
        )
    value = field(turn, "value", str, where)
    meta = {"from": speaker}
    if speaker == "function_call":
        calls = _calls(value, where, message_id)
        pending.extend(c.id for c in calls)
        return Message(role=role, tool_calls=calls, id=message_id, meta=meta)
    if role == "tool":
        if not pending:
            raise DataFormatError(f"{where}: tool result without a matching function_call")
        return Message(
            role=role, content=value, tool_call_id=pending.popleft(), id=message_id, meta=meta
        )
    return Message(role=role, content=value, id=message_id, meta=meta)


def _calls(value: str, where: str, message_id: str) -> tuple[ToolCall, ...]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise DataFormatError(f"{where}.value: a function_call must be JSON") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for k, item in enumerate(items):
        args = item.get("arguments", {}) if isinstance(item, dict) else None
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        name = field(item, "name", str, f"{where}.value")
        calls.append(ToolCall(id=f"call_{message_id}_{k}", name=name, arguments=text))
    return tuple(calls)
