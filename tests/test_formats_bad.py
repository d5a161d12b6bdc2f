"""Every file of the bad-input corpus raises DataFormatError naming the file and the place."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxlab.errors import CtxlabError, DataFormatError
from ctxlab.formats import load

BAD = Path(__file__).resolve().parent / "data" / "bad"

# file -> (1-based line for JSONL, 0-based record index for JSON, words the message must hold)
CASES: dict[str, tuple[int | None, int | None, str]] = {
    "malformed_line.jsonl": (2, None, "malformed JSON line"),
    "unknown_role.jsonl": (3, None, "unknown role 'robot'"),
    "orphan_tool_result.json": (None, 1, "no earlier assistant message made that call"),
    "locomo_missing_text.json": (None, 0, "session_1[1]: missing field 'text'"),
    "locomo_unknown_speaker.json": (None, 1, "speaker 'C' is neither"),
    "non_utf8.jsonl": (2, None, "not UTF-8"),
    "empty.json": (1, None, "the file is empty"),
    "blank.jsonl": (1, None, "the file is empty"),
    "unknown_format.json": (None, 0, "unknown format"),
    "missing_messages.jsonl": (2, None, "missing field 'messages'"),
    "tool_without_call_id.jsonl": (1, None, "tool message without a tool_call_id"),
    "mtbench_missing_bot.jsonl": (2, None, "history[0]: missing field 'bot'"),
    "sweagent_tool_without_ids.traj": (None, 0, "history[3]: a tool message needs tool_call_ids"),
    "sharegpt_unknown_speaker.json": (None, 1, "unknown speaker 'narrator'"),
    "sharegpt_orphan_observation.json": (None, 0, "tool result without a matching"),
    "truncated.json": (4, None, "malformed JSON"),
    "taubench_traj_not_list.json": (None, 0, "traj: expected a list, got a string"),
    "bad_timestamp.jsonl": (1, None, "not an ISO 8601 date-time"),
    "unsupported_part.jsonl": (1, None, "unsupported content part type 'input_audio'"),
}


def test_corpus_and_cases_match() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file(name: str) -> None:
    line, record, words = CASES[name]
    path = BAD / name
    with pytest.raises(DataFormatError) as info:
        load(path)
    exc = info.value
    assert isinstance(exc, CtxlabError) and isinstance(exc, ValueError)
    assert exc.path == str(path)
    assert (exc.line, exc.record) == (line, record)
    assert words in exc.reason
    where = f"line {line}" if line is not None else f"record {record}"
    assert str(exc).startswith(f"{path}, {where}: ")


def test_unknown_format_lists_the_known_ones() -> None:
    with pytest.raises(DataFormatError, match="locomo, taubench, sweagent, mtbench101"):
        load(BAD / "unknown_format.json")


def test_missing_file() -> None:
    with pytest.raises(DataFormatError, match="cannot read the file"):
        load(BAD / "no_such_file.json")
