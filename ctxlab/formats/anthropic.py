"""`Message` <-> Anthropic Messages API turns.

`to_anthropic` returns ``(system, turns)``: every system message is hoisted into the top-level
``system`` text (joined by blank lines), assistant tool calls become ``tool_use`` blocks (the
JSON arguments parsed into ``input``), tool results become ``tool_result`` blocks in a user turn,
and consecutive messages of the same API role are merged into one turn, as the API requires;
each message keeps its own blocks inside the merged turn.

`from_anthropic` reverses this: each ``text`` block starts a message, ``image`` blocks join the
current message, ``tool_use`` blocks join the current assistant message, each ``tool_result``
block becomes a ``tool`` message. What the Anthropic format cannot carry is therefore lost on a
round trip: message ids, timestamps, ``meta``, ``name``, the position of system messages, empty
text messages, part boundaries inside one message, and the exact spelling of argument JSON
(its value is kept).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ctxlab.errors import DataFormatError, UsageError
from ctxlab.formats._common import field
from ctxlab.messages import Content, ContentPart, ImagePart, Message, TextPart, ToolCall

__all__ = ["from_anthropic", "to_anthropic"]


def to_anthropic(messages: Iterable[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """The ``system`` parameter and the ``messages`` list of an Anthropic request.

    Raises:
        UsageError: a tool call's arguments are not a JSON object (Anthropic requires one).
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.text)
            continue
        blocks = _blocks(m)
        if not blocks:
            continue  # the API rejects empty text blocks; an empty message carries nothing
        role = "assistant" if m.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return ("\n\n".join(system) if system else None), turns


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
        content = _content_blocks(m.content)
        if content:
            block["content"] = m.content if isinstance(m.content, str) else content
        if m.meta.get("is_error"):
            block["is_error"] = True
        return [block]
    blocks = _content_blocks(m.content)
    for call in m.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)})
    return blocks


def _content_blocks(content: Content) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for p in content:
        if isinstance(p, TextPart):
            if p.text:
                out.append({"type": "text", "text": p.text})
        else:
            out.append({"type": "image", "source": _image_source(p.url)})
    return out


def _image_source(url: str) -> dict[str, str]:
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return {"type": "base64", "media_type": head, "data": data}
    return {"type": "url", "url": url}


def _input(call: ToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UsageError(
            f"tool call {call.id!r} ({call.name}) has arguments that are not a JSON object; "
            "Anthropic's tool_use input must be one"
        )
    return value


def from_anthropic(
    system: str | Sequence[Mapping[str, Any]] | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    id_prefix: str = "m",
) -> list[Message]:
    """Messages from an Anthropic request's ``system`` and ``messages``.

    Args:
        system: the top-level system text (or list of text blocks), or None.
        messages: the turns, each ``{"role": "user"|"assistant", "content": str | blocks}``.
        id_prefix: messages get ids ``f"{id_prefix}{index}"``.

    Raises:
        DataFormatError: a turn or block is malformed or of an unknown type.
    """
    drafts: list[dict[str, Any]] = []
    if system:
        text = system if isinstance(system, str) else "\n\n".join(_texts(system, "system"))
        drafts.append({"role": "system", "parts": [TextPart(text=text)]})
    for i, turn in enumerate(messages):
        _read_turn(turn, f"messages[{i}]", drafts)
    return [_build(d, f"{id_prefix}{i}") for i, d in enumerate(drafts)]


def _read_turn(turn: Mapping[str, Any], where: str, drafts: list[dict[str, Any]]) -> None:
    role = field(dict(turn), "role", str, where)
    if role not in ("user", "assistant"):
        raise DataFormatError(f"{where}: unknown role {role!r}; expected user or assistant")
    content = turn.get("content")
    if isinstance(content, str):
        drafts.append({"role": role, "parts": [TextPart(text=content)]})
        return
    if not isinstance(content, list):
        raise DataFormatError(f"{where}.content: expected a string or a list of blocks")
    current: dict[str, Any] | None = None
    for j, block in enumerate(content):
        current = _read_block(role, block, f"{where}.content[{j}]", current, drafts)


def _read_block(
    role: str, block: Any, where: str, current: dict[str, Any] | None, drafts: list[dict[str, Any]]
) -> dict[str, Any] | None:
    kind = field(block, "type", str, where)
    if kind == "text":
        current = {"role": role, "parts": [TextPart(text=field(block, "text", str, where))]}
        drafts.append(current)
    elif kind == "image":
        if current is None:
            current = {"role": role, "parts": []}
            drafts.append(current)
        current["parts"].append(_image_part(field(block, "source", dict, where), where))
    elif kind == "tool_use" and role == "assistant":
        if current is None:
            current = {"role": role, "parts": []}
            drafts.append(current)
        args = json.dumps(field(block, "input", dict, where), ensure_ascii=False)
        name = field(block, "name", str, where)
        current.setdefault("calls", []).append(
            ToolCall(id=field(block, "id", str, where), name=name, arguments=args)
        )
    elif kind == "tool_result" and role == "user":
        drafts.append(_tool_result(block, where))
        current = None
    elif kind not in ("thinking", "redacted_thinking"):  # reasoning is not conversation text
        raise DataFormatError(f"{where}: unsupported {role} block type {kind!r}")
    return current


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content", "")
    parts: list[ContentPart]
    if isinstance(content, str):
        parts = [TextPart(text=content)]
    elif isinstance(content, list):
        parts = [
            _image_part(field(b, "source", dict, where), where)
            if isinstance(b, dict) and b.get("type") == "image"
            else TextPart(text=field(b, "text", str, f"{where}.content[{k}]"))
            for k, b in enumerate(content)
        ]
    else:
        raise DataFormatError(f"{where}.content: expected a string or a list of blocks")
    draft: dict[str, Any] = {"role": "tool", "parts": parts}
    draft["tool_call_id"] = field(block, "tool_use_id", str, where)
    if block.get("is_error"):
        draft["meta"] = {"is_error": True}
    return draft


def _image_part(source: dict[str, Any], where: str) -> ImagePart:
    if source.get("type") == "base64":
        media = field(source, "media_type", str, f"{where}.source")
        return ImagePart(url=f"data:{media};base64,{field(source, 'data', str, where)}")
    return ImagePart(url=field(source, "url", str, f"{where}.source"))


def _texts(blocks: Sequence[Mapping[str, Any]], where: str) -> list[str]:
    return [field(dict(b), "text", str, f"{where}[{k}]") for k, b in enumerate(blocks)]


def _build(draft: dict[str, Any], message_id: str) -> Message:
    parts: list[ContentPart] = draft["parts"]
    content: Content
    if all(isinstance(p, TextPart) for p in parts) and len(parts) <= 1:
        content = parts[0].text if parts else ""  # type: ignore[union-attr]
    else:
        content = tuple(parts)
    return Message(
        role=draft["role"],
        content=content,
        tool_calls=tuple(draft.get("calls", ())),
        tool_call_id=draft.get("tool_call_id"),
        meta=draft.get("meta", {}),
        id=message_id,
    )
