"""LoCoMo (Maharana et al., ACL 2024): very long two-person conversations with QA.

A file is a list of samples, or one sample. Each sample becomes one `Conversation`:

- ``id`` is the ``sample_id``; ``source.dataset`` is ``"locomo"``.
- Turns of the ``session_<k>`` lists (the ``session_<k>_date_time`` keys are only dates; some
  samples list more dates than sessions), in session order. ``speaker_a`` speaks as ``user``,
  ``speaker_b`` as ``assistant``; no ``name`` is set, so speaker names cost no tokens.
- Message id = the turn's ``dia_id`` normalised (``"D1:3"``); ``meta`` holds ``speaker``,
  ``dia_id`` (as written), ``session`` (int) and ``session_date`` (as written); ``timestamp``
  is the session's date when it parses (``"1:56 pm on 8 May, 2023"``).
- A turn that shares an image reads ``"<text> [shares an image: <blip_caption>]"``.

Annotations: ``questions``, one per QA item: ``question``, ``answer`` (a string; upstream ints
become strings; None for the adversarial items that have none), ``adversarial_answer`` (category
5 only, else None), ``category`` (int: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop,
5 adversarial), ``evidence`` (message ids) and ``unresolved_evidence`` (what did not resolve).
Evidence ids are normalised first: entries are split on ``;``, ``,`` and spaces, each piece is
read as ``D:?<session>:<turn>`` with leading zeros dropped (``"D8:6; D9:17"``, ``"D30:05"``,
``"D:11:26"`` all resolve). ``evidence_stats`` counts entries, ids, resolved, unresolved and
normalised ids, and questions without evidence, so nothing is dropped silently.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from ctxlab.errors import DataFormatError
from ctxlab.formats._common import field
from ctxlab.messages import Conversation, Message, Source

__all__ = ["NAME", "matches", "normalise_dia_id", "parse"]

NAME = "locomo"

_SESSION = re.compile(r"session_(\d+)")
_DIA = re.compile(r"D:?0*(\d+):0*(\d+)")
_SPLIT = re.compile(r"[;,\s]+")
_DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y")


def matches(record: Any) -> bool:
    """True when a record looks like a LoCoMo sample."""
    return isinstance(record, dict) and "conversation" in record and "sample_id" in record


def normalise_dia_id(raw: str) -> str | None:
    """``"D:11:026"`` -> ``"D11:26"``; None when `raw` is not a dialogue id."""
    m = _DIA.fullmatch(raw.strip())
    return f"D{m[1]}:{m[2]}" if m else None


def parse(record: Any, source: Source) -> Conversation:
    """One LoCoMo sample as a `Conversation` (see the module docstring)."""
    sample_id = str(field(record, "sample_id", (str, int), "sample"))
    conv = field(record, "conversation", dict, "sample")
    speakers = {
        field(conv, "speaker_a", str, "conversation"): "user",
        field(conv, "speaker_b", str, "conversation"): "assistant",
    }
    messages = _messages(conv, speakers)
    ids = {m.id for m in messages}
    questions, stats = _questions(field(record, "qa", list, "sample"), ids)
    annotations = {
        "questions": questions,
        "evidence_stats": stats,
        "speaker_a": conv["speaker_a"],
        "speaker_b": conv["speaker_b"],
    }
    return Conversation(
        id=sample_id, messages=tuple(messages), source=source, annotations=annotations
    )


def _messages(conv: dict[str, Any], speakers: dict[str, str]) -> list[Message]:
    sessions = sorted(int(k[len("session_") :]) for k in conv if _SESSION.fullmatch(k))
    out: list[Message] = []
    seen: set[str] = set()
    for k in sessions:
        where = f"conversation.session_{k}"
        date = conv.get(f"session_{k}_date_time")
        when = _parse_date(date) if isinstance(date, str) else None
        for j, turn in enumerate(field(conv, f"session_{k}", list, "conversation")):
            m = _message(turn, f"{where}[{j}]", k, date, when, speakers)
            if m.id in seen:
                raise DataFormatError(f"{where}[{j}]: duplicate dia_id {m.meta['dia_id']!r}")
            seen.add(m.id)
            out.append(m)
    return out


def _message(
    turn: Any,
    where: str,
    session: int,
    date: Any,
    when: datetime | None,
    speakers: dict[str, str],
) -> Message:
    speaker = field(turn, "speaker", str, where)
    role = speakers.get(speaker)
    if role is None:
        raise DataFormatError(
            f"{where}: speaker {speaker!r} is neither speaker_a nor speaker_b "
            f"({' / '.join(speakers)})"
        )
    raw_id = field(turn, "dia_id", str, where)
    message_id = normalise_dia_id(raw_id)
    if message_id is None:
        raise DataFormatError(f"{where}: dia_id {raw_id!r} is not of the form D<session>:<turn>")
    text = field(turn, "text", str, where)
    caption = turn.get("blip_caption")
    if isinstance(caption, str) and caption:
        text = f"{text} [shares an image: {caption}]".lstrip()
    meta = {"speaker": speaker, "dia_id": raw_id, "session": session, "session_date": date}
    return Message(role=role, content=text, id=message_id, timestamp=when, meta=meta)  # type: ignore[arg-type]


def _parse_date(raw: str) -> datetime | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(raw.strip(), fmt)
        except ValueError:
            continue
    return None


def _questions(qa: list[Any], ids: set[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    stats = dict.fromkeys(
        ("questions", "entries", "ids", "resolved", "unresolved", "normalised", "no_evidence"), 0
    )
    out = []
    for i, item in enumerate(qa):
        where = f"qa[{i}]"
        evidence, unresolved = _evidence(field(item, "evidence", list, where), ids, stats)
        out.append(
            {
                "question": field(item, "question", str, where),
                "answer": _answer(item.get("answer"), f"{where}.answer"),
                "adversarial_answer": _answer(item.get("adversarial_answer"), where),
                "category": field(item, "category", int, where),
                "evidence": evidence,
                "unresolved_evidence": unresolved,
            }
        )
        stats["questions"] += 1
        stats["no_evidence"] += not item["evidence"]
    return out, stats


def _answer(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN: how table exports write a missing answer; never the gold "nan"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise DataFormatError(f"{where}: expected a string or a number")


def _evidence(
    entries: list[Any], ids: set[str], stats: dict[str, int]
) -> tuple[list[str], list[str]]:
    resolved: list[str] = []
    unresolved: list[str] = []
    for entry in entries:
        stats["entries"] += 1
        for piece in _SPLIT.split(str(entry).strip()):
            if not piece:
                continue
            stats["ids"] += 1
            norm = normalise_dia_id(piece)
            if norm is not None and norm in ids:
                stats["resolved"] += 1
                stats["normalised"] += norm != entry
                if norm not in resolved:
                    resolved.append(norm)
            else:
                stats["unresolved"] += 1
                unresolved.append(piece)
    return resolved, unresolved
