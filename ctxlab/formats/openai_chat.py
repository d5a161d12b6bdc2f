"""`Message` <-> OpenAI chat-completions message dicts.

`to_openai` writes what the Chat Completions API accepts: ``content`` as a string or a list
of ``text``/``image_url`` parts (``None`` for an assistant turn that only calls tools),
``tool_calls`` with ``type: "function"``, ``tool_call_id`` on tool results, ``name`` when set.
With ``extras=True`` the message's ``id``, ``timestamp`` (ISO 8601) and ``meta`` ride along
as extra keys, which other readers ignore and `from_openai` reads back, so
``from_openai(to_openai(ms, extras=True)) == ms``.

`from_openai` also accepts the ``developer`` role (read as ``system``, remembered in
``meta["openai_role"]``) and tool-call arguments written as objects instead of JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ctxlab.errors import DataFormatError
from ctxlab.formats._common import field, optional
from ctxlab.messages import (
    ROLES,
    Content,
    ContentPart,
    ImagePart,
    Message,
    Role,
    TextPart,
    ToolCall,
    thaw,
)

__all__ = ["from_openai", "message_from_openai", "to_openai"]


def to_openai(messages: Iterable[Message], *, extras: bool = False) -> list[dict[str, Any]]:
    """OpenAI chat message dicts for `messages`.

    Args:
        messages: the messages, in order.
        extras: also write ``id``, ``timestamp`` and ``meta`` (for lossless saving).
    """
    return [_to_dict(m, extras) for m in messages]


def _to_dict(m: Message, extras: bool) -> dict[str, Any]:
    developer = m.role == "system" and m.meta.get("openai_role") == "developer"
    role = "developer" if developer else m.role
    out: dict[str, Any] = {"role": role, "content": _content_out(m.content)}
    if m.role == "assistant" and m.tool_calls and out["content"] == "":
        out["content"] = None
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if extras:
        out["id"] = m.id
        if m.timestamp is not None:
            out["timestamp"] = m.timestamp.isoformat()
        if m.meta:
            out["meta"] = thaw(m.meta)
    return out


def _content_out(content: Content) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            parts.append({"type": "text", "text": p.text})
        else:
            image: dict[str, Any] = {"url": p.url}
            if p.detail is not None:
                image["detail"] = p.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


def from_openai(
    messages: Sequence[Mapping[str, Any]], *, id_prefix: str | None = "m", where: str = "messages"
) -> list[Message]:
    """Messages from OpenAI chat dicts (extra ``id``/``timestamp``/``meta`` keys are read).

    Args:
        messages: the dicts, in order.
        id_prefix: messages without an ``id`` key get ``f"{id_prefix}{index}"`` (stable across
            loads); None gives them fresh random ids instead.
        where: how errors name the list, e.g. ``"traj"``.

    Raises:
        DataFormatError: a dict lacks a field, has an unknown role or an unreadable part.
    """
    return [
        message_from_openai(d, where=f"{where}[{i}]", default_id=_id(id_prefix, i))
        for i, d in enumerate(messages)
    ]


def _id(prefix: str | None, index: int) -> str | None:
    return None if prefix is None else f"{prefix}{index}"


def message_from_openai(
    d: Mapping[str, Any], *, where: str = "message", default_id: str | None = None
) -> Message:
    """One `Message` from one OpenAI chat dict (see `from_openai`)."""
    obj = dict(d) if isinstance(d, Mapping) else d
    raw_role = field(obj, "role", str, where)
    meta = dict(optional(obj, "meta", dict, where) or {})
    role = _role(raw_role, where, meta)
    kwargs: dict[str, Any] = {
        "role": role,
        "content": _content_in(obj.get("content"), f"{where}.content"),
        "name": optional(obj, "name", str, where),
        "tool_calls": _calls_in(optional(obj, "tool_calls", list, where) or [], where),
        "tool_call_id": optional(obj, "tool_call_id", str, where),
        "timestamp": _timestamp(optional(obj, "timestamp", str, where), where),
        "meta": meta,
    }
    if role == "tool" and kwargs["tool_call_id"] is None:
        raise DataFormatError(f"{where}: tool message without a tool_call_id")
    message_id = optional(obj, "id", str, where) or default_id
    if message_id is not None:
        kwargs["id"] = message_id
    return Message(**kwargs)


def _role(raw: str, where: str, meta: dict[str, Any]) -> Role:
    if raw == "developer":
        meta.setdefault("openai_role", "developer")
        return "system"
    for role in ROLES:
        if raw == role:
            return role
    raise DataFormatError(
        f"{where}: unknown role {raw!r}; expected one of {', '.join(ROLES)} (or developer)"
    )


def _content_in(content: Any, where: str) -> Content:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise DataFormatError(f"{where}: expected a string, a list of parts or null")
    return tuple(_part_in(p, f"{where}[{j}]") for j, p in enumerate(content))


def _part_in(part: Any, where: str) -> ContentPart:
    kind = field(part, "type", str, where)
    if kind == "text":
        return TextPart(text=field(part, "text", str, where))
    if kind == "image_url":
        image = part["image_url"] if isinstance(part.get("image_url"), str) else None
        if image is not None:
            return ImagePart(url=image)
        spec = field(part, "image_url", dict, where)
        detail = optional(spec, "detail", str, f"{where}.image_url")
        if detail not in (None, "auto", "low", "high"):
            raise DataFormatError(f"{where}.image_url.detail: expected auto, low or high")
        url = field(spec, "url", str, f"{where}.image_url")
        return ImagePart(url=url, detail=detail)  # type: ignore[arg-type]
    raise DataFormatError(f"{where}: unsupported content part type {kind!r} (text, image_url)")


def _calls_in(calls: list[Any], where: str) -> tuple[ToolCall, ...]:
    out = []
    for j, call in enumerate(calls):
        here = f"{where}.tool_calls[{j}]"
        fn = field(call, "function", dict, here)
        args = fn.get("arguments", "{}")
        if isinstance(args, (dict, list)):
            args = json.dumps(args, ensure_ascii=False)
        if not isinstance(args, str):
            raise DataFormatError(f"{here}.function.arguments: expected JSON text")
        name = field(fn, "name", str, f"{here}.function")
        out.append(ToolCall(id=field(call, "id", str, here), name=name, arguments=args))
    return tuple(out)


def _timestamp(raw: str | None, where: str) -> datetime | None:
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError:
        raise DataFormatError(f"{where}.timestamp: not an ISO 8601 date-time: {raw!r}") from None
