"""Reading and writing recorded conversations: `load`, `save`, `detect`.

One module per upstream format; each exposes ``NAME``, ``matches(record)`` (used for detection)
and ``parse(record, source) -> Conversation``. `load` reads a whole file into memory, parses
every record, and returns the conversations in file order, or raises `DataFormatError` naming
the file, the 1-based line (JSONL) or 0-based record index (JSON), and what is wrong; nothing
is half-loaded. Message ids are stable: loading the same file twice gives the same ids.

Conversions between `Message` and provider wire formats live in `openai_chat` and `anthropic`.

May import only the core values (`messages`, `errors`); everything else builds on it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from ctxlab.errors import DataFormatError, UsageError
from ctxlab.formats import locomo, mtbench101, openai_jsonl, sharegpt, sweagent, taubench
from ctxlab.formats._common import MAX_FILE_BYTES, Record, read_records
from ctxlab.messages import Conversation, Source

__all__ = ["FORMATS", "detect", "load", "save"]

# Detection order matters: the first format whose `matches` accepts the first record wins.
_MODULES: tuple[ModuleType, ...] = (locomo, taubench, sweagent, mtbench101, openai_jsonl, sharegpt)
_BY_NAME: dict[str, ModuleType] = {m.NAME: m for m in _MODULES}

#: Names accepted by ``load(path, format=...)``.
FORMATS: tuple[str, ...] = tuple(_BY_NAME)


def detect(path: str | os.PathLike[str]) -> str:
    """The format name of a file (one of `FORMATS`).

    Raises:
        DataFormatError: the file is unreadable or matches no known format.
    """
    p = Path(path)
    return _detect(p, read_records(p))


def _detect(path: Path, records: list[Record]) -> str:
    if path.suffix.lower() == ".traj":
        return sweagent.NAME
    if not records:
        raise DataFormatError("the file holds an empty list; no conversation to read", path=path)
    for module in _MODULES:
        if module.matches(records[0].value):
            return str(module.NAME)
    keys = sorted(records[0].value) if isinstance(records[0].value, dict) else []
    raise records[0].error(
        path,
        DataFormatError(
            f"unknown format (top-level keys: {', '.join(keys) or 'none'}); known formats: "
            f"{', '.join(FORMATS)}. Pass format= to choose one."
        ),
    )


def load(
    path: str | os.PathLike[str], format: str | None = None, *, max_bytes: int = MAX_FILE_BYTES
) -> list[Conversation]:
    """Read every conversation in a file, in file order.

    Args:
        path: a JSON, JSONL or ``.traj`` file (a regular file: FIFOs and devices are refused).
        format: one of `FORMATS`; detected from the content when None.
        max_bytes: refuse files larger than this (default 1 GiB) before reading them.

    Raises:
        UsageError: `format` is not a known format name.
        DataFormatError: the file cannot be read as that format (names file and line/record).
    """
    p = Path(path)
    if format is not None and format not in _BY_NAME:
        raise UsageError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    records = read_records(p, max_bytes)
    if format is None and not records:
        return []
    module = _BY_NAME[format or _detect(p, records)]
    parse: Callable[[Any, Source], Conversation] = module.parse
    dataset = str(module.NAME)
    out = []
    for rec in records:
        source = Source(dataset=dataset, path=str(p), record=rec.index)
        try:
            out.append(parse(rec.value, source))
        except DataFormatError as exc:
            raise rec.error(p, exc) from None
        except UsageError as exc:  # e.g. a Conversation refusing duplicate message ids
            raise rec.error(p, DataFormatError(str(exc))) from None
        except RecursionError:
            too_deep = DataFormatError("a value nested too deep to read (RecursionError)")
            raise rec.error(p, too_deep) from None
    return out


def save(conversations: Iterable[Conversation], path: str | os.PathLike[str]) -> Path:
    """Write conversations as OpenAI chat JSONL with ctxlab's extra keys (see `openai_jsonl`).

    The file is written to a temporary name beside `path` and renamed into place, so a reader
    never sees half a file. `load` reads it back equal. Returns the path written.
    """
    p = Path(path)
    lines = [openai_jsonl.json_line(openai_jsonl.to_record(c)) for c in conversations]
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
