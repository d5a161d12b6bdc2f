"""SWE-agent ``.traj`` files: an agent fixing a repository through shell-like commands.

One file is one `Conversation` (``id`` = the file name without ``.traj``; ``source.dataset`` =
``"sweagent"``), read from its ``history`` (the chat the model saw). Two styles exist:

- Function calling: assistant messages carry OpenAI ``tool_calls``; results are ``tool``
  messages whose ``tool_call_ids`` list (not ``tool_call_id``) holds the one call they answer.
- Plain: the model writes its command in the text and each observation comes back as a
  ``user`` message. Those observations get ``meta["tool_output"] = True`` so masking strategies
  can find them; only user messages that follow an assistant action are tagged, never the task
  statement (which SWE-agent may itself label ``observation``).

Demonstration messages (``is_demo: true``: a solved example from another task pasted before
the real one) are left out by default; ``annotations["demo_messages_skipped"]`` counts them.
Message ids are ``m0``, ``m1``... over the kept messages; ``meta`` keeps SWE-agent's ``agent``,
``message_type`` and ``action`` fields when present.

Annotations: ``patch`` (``info.submission``: a diff, or a CTF flag; None when absent),
``patch_paths`` (the files the diff touches, sorted), ``exit_status``.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from ctxlab.errors import DataFormatError
from ctxlab.formats._common import field, optional, pair_tool_calls
from ctxlab.formats.openai_chat import message_from_openai
from ctxlab.messages import Conversation, Message, Source

__all__ = ["NAME", "matches", "parse", "patch_paths"]

NAME = "sweagent"

_KEPT_META = ("agent", "message_type", "action")
_DIFF_PATH = re.compile(r"^(?:diff --git a/\S+ b/(\S+)|\+\+\+ b/(\S+))", re.MULTILINE)


def matches(record: Any) -> bool:
    """True when a record looks like a SWE-agent trajectory."""
    if not isinstance(record, dict) or not isinstance(record.get("history"), list):
        return False
    first = record["history"][0] if record["history"] else {}
    return isinstance(first, dict) and "role" in first


def patch_paths(patch: str | None) -> list[str]:
    """Sorted paths a unified diff touches (``b/`` side), empty for anything else."""
    if not patch:
        return []
    return sorted({a or b for a, b in _DIFF_PATH.findall(patch)})


def parse(record: Any, source: Source, *, include_demos: bool = False) -> Conversation:
    """One ``.traj`` file as a `Conversation` (see the module docstring).

    Args:
        record: the parsed file.
        source: where it came from; its path gives the conversation id.
        include_demos: keep demonstration messages (tagged ``meta["is_demo"]``).
    """
    history = field(record, "history", list, "trajectory")
    messages: list[Message] = []
    skipped = 0
    for i, raw in enumerate(history):
        if not isinstance(raw, dict):
            raise DataFormatError(f"history[{i}]: expected a JSON object")
        if raw.get("is_demo") and not include_demos:
            skipped += 1
            continue
        messages.append(_message(raw, f"history[{i}]", f"m{len(messages)}", messages))
    messages, _ = pair_tool_calls(messages, "history")
    info = optional(record, "info", dict, "trajectory") or {}
    patch = optional(info, "submission", str, "info")
    annotations = {
        "patch": patch,
        "patch_paths": patch_paths(patch),
        "exit_status": optional(info, "exit_status", str, "info"),
        "demo_messages_skipped": skipped,
    }
    conv_id = PurePath(source.path).stem if source.path else f"trajectory-{source.record}"
    return Conversation(
        id=conv_id, messages=tuple(messages), source=source, annotations=annotations
    )


def _message(raw: dict[str, Any], where: str, message_id: str, before: list[Message]) -> Message:
    d = {k: v for k, v in raw.items() if k in ("role", "content", "tool_calls", "name")}
    if isinstance(raw.get("content"), list):
        d["content"] = [_part(p) for p in raw["content"]]
    ids = raw.get("tool_call_ids")
    if raw.get("role") == "tool":
        if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], str):
            raise DataFormatError(f"{where}: a tool message needs tool_call_ids with one call id")
        d["tool_call_id"] = ids[0]
    meta = {k: raw[k] for k in _KEPT_META if raw.get(k) is not None}
    if raw.get("is_demo"):
        meta["is_demo"] = True
    if raw.get("role") == "user" and before and before[-1].role == "assistant":
        meta["tool_output"] = True
    d["meta"] = meta
    return message_from_openai(d, where=where, default_id=message_id)


def _part(part: Any) -> Any:
    # SWE-agent writes text parts as {"type": "text", "text": ...}, sometimes with cache hints.
    if isinstance(part, dict) and part.get("type") == "text":
        return {"type": "text", "text": part.get("text")}
    return part
