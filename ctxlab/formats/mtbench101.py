"""MT-Bench-101 (Bai et al., ACL 2024): multi-turn dialogues in 13 task categories.

A JSONL file, one dialogue per line: ``{"task": "GR", "id": 1, "history": [{"user": ...,
"bot": ...}, ...]}``. Each line becomes one `Conversation` with ``id`` ``"<task>-<id>"`` and
``source.dataset`` ``"mtbench101"``; every ``user``/``bot`` pair becomes a user and an assistant
message (ids ``m0``, ``m1``...). Annotations: ``task`` (the task code), ``source_id`` (the
upstream ``id``) and ``reference_answer``: the final bot turn, which is also the last message.
"""

from __future__ import annotations

from typing import Any

from ctxlab.errors import DataFormatError
from ctxlab.formats._common import field
from ctxlab.messages import Conversation, Message, Source

__all__ = ["NAME", "matches", "parse"]

NAME = "mtbench101"


def matches(record: Any) -> bool:
    """True when a record looks like an MT-Bench-101 dialogue."""
    if not isinstance(record, dict) or not isinstance(record.get("history"), list):
        return False
    first = record["history"][0] if record["history"] else {}
    return isinstance(first, dict) and "user" in first and "bot" in first


def parse(record: Any, source: Source) -> Conversation:
    """One MT-Bench-101 dialogue as a `Conversation` (see the module docstring)."""
    task = field(record, "task", str, "dialogue")
    source_id = field(record, "id", (int, str), "dialogue")
    history = field(record, "history", list, "dialogue")
    if not history:
        raise DataFormatError("dialogue.history: empty; expected at least one user/bot pair")
    messages: list[Message] = []
    for i, pair in enumerate(history):
        where = f"history[{i}]"
        for key, role in (("user", "user"), ("bot", "assistant")):
            text = field(pair, key, str, where)
            messages.append(Message(role=role, content=text, id=f"m{len(messages)}"))  # type: ignore[arg-type]
    annotations = {"task": task, "source_id": source_id, "reference_answer": messages[-1].text}
    return Conversation(
        id=f"{task}-{source_id}", messages=tuple(messages), source=source, annotations=annotations
    )
