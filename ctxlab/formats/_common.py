"""Helpers every format module shares: reading JSON/JSONL records, field access, tool pairing.

Format parsers raise `DataFormatError` with only a reason (``"traj[7]: missing field 'role'"``);
the reader that drove them adds the file and the 1-based line (JSONL) or 0-based record index
(JSON), so every error a user sees says where to look.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from ctxlab.errors import DataFormatError
from ctxlab.messages import Message, ToolCall

__all__ = [
    "MAX_FILE_BYTES",
    "Record",
    "field",
    "optional",
    "pair_tool_calls",
    "read_records",
]

T = TypeVar("T")

#: The default size limit of a file `read_records` reads (1 GiB): whole files are read into
#: memory, so a bigger one is refused before a byte is read.
MAX_FILE_BYTES = 1 << 30

_TOO_DEEP = (
    "JSON nested deeper than Python can parse (RecursionError); no conversation format nests "
    "this deep: check what wrote the file"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """One top-level JSON value of a file and where it sits.

    Attributes:
        value: the parsed JSON value.
        index: 0-based position among the file's records.
        line: 1-based line for JSONL files, None for JSON files.
    """

    value: Any
    index: int
    line: int | None = None

    def error(self, path: Path, exc: DataFormatError) -> DataFormatError:
        """`exc` re-raised with this record's location in `path`."""
        if self.line is not None:
            return DataFormatError(exc.reason, path=path, line=self.line)
        return DataFormatError(exc.reason, path=path, record=self.index)


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-encode the file as UTF-8",
            path=path,
            line=line,
        ) from None


def read_records(path: Path, max_bytes: int = MAX_FILE_BYTES) -> list[Record]:
    """Parse a JSON file (one value or a list of values) or a JSONL file into records.

    ``.jsonl`` files are read line by line. Other files are read as one JSON document, and
    as JSONL when that fails only because a second value follows the first.

    Args:
        path: a regular file (FIFOs, devices and directories are refused unread).
        max_bytes: files larger than this are refused unread.

    Raises:
        DataFormatError: unreadable, not a regular file, too large, empty, not UTF-8, not
            JSON or nested too deep (with the line).
    """
    text = _decode(path, _read_bytes(path, max_bytes))
    if not text.strip():
        raise DataFormatError(
            "the file is empty; expected JSON or JSONL conversations", path=path, line=1
        )
    if path.suffix.lower() == ".jsonl":
        return _jsonl(path, text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.lineno > 1:
            return _jsonl(path, text)
        raise DataFormatError(f"malformed JSON: {exc.msg}", path=path, line=exc.lineno) from None
    except RecursionError:
        raise DataFormatError(_TOO_DEEP, path=path) from None
    values = value if isinstance(value, list) else [value]
    return [Record(value=v, index=i) for i, v in enumerate(values)]


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, after checking (without opening it) that it is a regular file."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise DataFormatError(
                "not a regular file (a FIFO, device or directory); copy the data to a file "
                "and load that",
                path=path,
            )
        if info.st_size > max_bytes:
            raise DataFormatError(
                f"the file has {info.st_size} bytes, more than the limit of {max_bytes}; "
                "split it, or pass a larger max_bytes= to load()",
                path=path,
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise DataFormatError(f"cannot read the file: {exc.strerror}", path=path) from None
    if len(data) > max_bytes:  # it grew since stat()
        raise DataFormatError(f"the file is larger than the limit of {max_bytes} bytes", path=path)
    return data


def _jsonl(path: Path, text: str) -> list[Record]:
    records: list[Record] = []
    # Lines end at "\n" only: str.splitlines() would also split inside JSON strings holding
    # U+2028, U+2029 or U+0085, which JSON allows unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"malformed JSON line: {exc.msg} (column {exc.colno})", path=path, line=number
            ) from None
        except RecursionError:
            raise DataFormatError(_TOO_DEEP, path=path, line=number) from None
        records.append(Record(value=value, index=len(records), line=number))
    return records


@overload
def field(obj: Any, key: str, kind: type[T], where: str) -> T: ...
@overload
def field(obj: Any, key: str, kind: tuple[type, ...], where: str) -> Any: ...
def field(obj: Any, key: str, kind: type[T] | tuple[type, ...], where: str) -> T | Any:
    """``obj[key]``, checked to be a `kind`; the error names `where` and the key."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {_kind(obj)}")
    if key not in obj:
        raise DataFormatError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DataFormatError(f"{where}.{key}: expected {_names(kind)}, got {_kind(value)}")
    return value


@overload
def optional(obj: dict[str, Any], key: str, kind: type[T], where: str) -> T | None: ...
@overload
def optional(obj: dict[str, Any], key: str, kind: tuple[type, ...], where: str) -> Any: ...
def optional(
    obj: dict[str, Any], key: str, kind: type[T] | tuple[type, ...], where: str
) -> T | Any:
    """Like `field`, but a missing key or JSON null gives None."""
    if obj.get(key) is None:
        return None
    return field(obj, key, kind, where)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_kind(k()) if k in (dict, list, str) else k.__name__ for k in kinds)


def pair_tool_calls(messages: Sequence[Message], where: str) -> tuple[list[Message], int]:
    """Check that every tool result answers an earlier call; make call ids unique.

    Some recordings reuse a call id for a later, different call (tau-bench does). A result
    answers the newest call with its id, and repeated ids are renamed ``<id>_dup<n>`` so that
    pairing by id is unambiguous downstream. Returns the messages and how many ids were renamed.

    Raises:
        DataFormatError: a tool result without a call id, or answering no earlier call.
    """
    # id as written -> ids of the newest message's calls carrying it not yet answered
    current: dict[str, list[str]] = {}
    used: set[str] = set()
    out: list[Message] = []
    renamed = 0
    for i, m in enumerate(messages):
        if m.tool_calls:
            calls: list[ToolCall] = []
            fresh: dict[str, list[str]] = {}
            for call in m.tool_calls:
                new = _unique(call.id, used)
                renamed += new != call.id
                used.add(new)
                fresh.setdefault(call.id, []).append(new)
                calls.append(
                    call
                    if new == call.id
                    else ToolCall(id=new, name=call.name, arguments=call.arguments)
                )
            current.update(fresh)
            m = m.replace(tool_calls=tuple(calls)) if calls != list(m.tool_calls) else m
        if m.role == "tool":
            m = _answer(m, current, f"{where}[{i}]")
        out.append(m)
    return out, renamed


def _unique(call_id: str, used: set[str]) -> str:
    if call_id not in used:
        return call_id
    n = 2
    while f"{call_id}_dup{n}" in used:
        n += 1
    return f"{call_id}_dup{n}"


def _answer(m: Message, current: dict[str, list[str]], where: str) -> Message:
    if not m.tool_call_id:
        raise DataFormatError(f"{where}: tool result without a tool_call_id")
    pending = current.get(m.tool_call_id)
    if not pending:
        raise DataFormatError(
            f"{where}: tool result for call {m.tool_call_id!r}, but no earlier assistant "
            "message made that call"
        )
    target = pending.pop(0) if len(pending) > 1 else pending[0]
    return m if target == m.tool_call_id else m.replace(tool_call_id=target)


def iter_text_parts(content: Any, where: str) -> Iterator[str]:
    """Texts of a string or an OpenAI-style list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        yield content
        return
    if not isinstance(content, list):
        raise DataFormatError(f"{where}: content must be a string or a list of parts")
    for j, part in enumerate(content):
        yield field(part, "text", str, f"{where}[{j}]")
