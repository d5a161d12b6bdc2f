"""OpenAI chat JSONL: one conversation per line, ``{"messages": [...]}``; ctxlab's own format.

Each line holds ``messages`` in the OpenAI chat format (tool calls included), optionally an
``id`` and ``metadata`` (kept as the conversation's annotations). Fine-tuning files and other
tools' exports read as is; other top-level keys (``tools``, ``parallel_tool_calls``...) are
ignored. `ctxlab.save` writes this format with extra keys other readers ignore: per message
``id``, ``timestamp`` and ``meta``, per line ``source`` (``dataset``, ``path``, ``record``), so a
saved conversation loads back equal.

Without an ``id`` a conversation is named ``"<file stem>-<record index>"`` (0-based); without
a ``source`` its dataset is the file stem.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from ctxlab.formats._common import field, optional, pair_tool_calls
from ctxlab.formats.openai_chat import from_openai, to_openai
from ctxlab.messages import Conversation, Source, thaw

__all__ = ["NAME", "json_line", "matches", "parse", "to_record"]

NAME = "openai_jsonl"


def matches(record: Any) -> bool:
    """True when a record holds OpenAI chat ``messages``."""
    return isinstance(record, dict) and isinstance(record.get("messages"), list)


def parse(record: Any, source: Source) -> Conversation:
    """One line as a `Conversation` (see the module docstring)."""
    messages, _ = pair_tool_calls(
        from_openai(field(record, "messages", list, "conversation"), where="messages"), "messages"
    )
    annotations = optional(record, "metadata", dict, "conversation") or {}
    saved = optional(record, "source", dict, "conversation")
    stem = PurePath(source.path).stem if source.path else "conversation"
    default_id = f"{stem}-{source.record if source.record is not None else 0}"
    if saved is not None:
        source = Source(
            dataset=optional(saved, "dataset", str, "source"),
            path=optional(saved, "path", str, "source"),
            record=optional(saved, "record", int, "source"),
        )
    else:
        source = Source(dataset=stem, path=source.path, record=source.record)
    conv_id = optional(record, "id", (str, int), "conversation")
    conv_id = str(conv_id) if conv_id is not None else default_id
    return Conversation(
        id=conv_id, messages=tuple(messages), source=source, annotations=annotations
    )


def to_record(conv: Conversation) -> dict[str, Any]:
    """The JSON object `ctxlab.save` writes for one conversation."""
    src = conv.source
    return {
        "id": conv.id,
        "source": {"dataset": src.dataset, "path": src.path, "record": src.record},
        "metadata": thaw(conv.annotations),
        "messages": to_openai(conv.messages, extras=True),
    }


# Characters JSON leaves unescaped that some line readers (Python's str.splitlines among them)
# take for line ends: escaped, so a line written here is one line to every reader.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def json_line(record: Any) -> str:
    """One JSONL line (with its newline), non-ASCII kept except line-separator characters."""
    return json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"
