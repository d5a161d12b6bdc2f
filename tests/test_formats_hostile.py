"""Hostile and odd inputs to the loaders, built from the bundled recordings.

Each case once misbehaved: a NaN LoCoMo answer loaded as the gold answer "nan"; an assistant
message repeating a tool-call id paired its results wrongly; duplicate message ids raised an
error naming no file; deep nesting raised a bare RecursionError; a FIFO hung `load` and
``/dev/zero`` read until memory ran out; line separators written raw by `save` split a line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from ctxlab.budget import Budget
from ctxlab.errors import DataFormatError
from ctxlab.formats import load, openai_jsonl, save
from ctxlab.strategies import get_strategy
from ctxlab.tokens import get_counter

DATA = Path(__file__).resolve().parents[1] / "data"


def _locomo() -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = json.loads((DATA / "locomo" / "locomo7.json").read_text())
    return samples


def _taubench_with_a_call() -> list[dict[str, Any]]:
    """The first tau-bench trajectory holding a tool call, cut just after its first result."""
    for task in json.loads((DATA / "taubench" / "gpt-4o-airline-dev.json").read_text()):
        traj = task["traj"]
        for i, m in enumerate(traj):
            if m.get("tool_calls"):
                assert traj[i + 1]["role"] == "tool"
                return [dict(x) for x in traj[: i + 2]]
    raise AssertionError("no tool call in the tau-bench recording")


def test_nan_locomo_answer_is_no_answer(tmp_path: Path) -> None:
    samples = _locomo()[:1]
    question = samples[0]["qa"][0]
    question["answer"] = float("nan")
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(samples))  # json writes the bare token NaN, as pandas does
    assert "NaN" in path.read_text()
    (conv,) = load(path)
    first = conv.annotations["questions"][0]
    assert first["question"] == question["question"]
    assert first["answer"] is None


def test_one_message_repeating_a_call_id_pairs_results_in_order(tmp_path: Path) -> None:
    traj = _taubench_with_a_call()
    call_message, result = traj[-2], traj[-1]
    call = call_message["tool_calls"][0]
    second = {**call, "function": {**call["function"], "arguments": '{"again": true}'}}
    call_message["tool_calls"] = [call, second]
    traj.append({**result, "content": "second result"})
    path = tmp_path / "repeat.jsonl"
    path.write_text(json.dumps({"messages": traj}) + "\n")
    (conv,) = load(path)
    calls = conv.messages[-3].tool_calls
    assert [c.id for c in calls] == [call["id"], call["id"] + "_dup2"]
    assert [m.tool_call_id for m in conv.messages[-2:]] == [c.id for c in calls]
    assert conv.messages[-1].text == "second result"
    pruned = get_strategy("keep_all").prune(conv, Budget(max_tokens=10**6), get_counter())
    assert pruned.messages == conv.messages


def test_duplicate_message_ids_name_the_file_and_line(tmp_path: Path) -> None:
    (conv,) = load(DATA / "mtbench101" / "mtbench101.jsonl")[:1]
    record = openai_jsonl.to_record(conv)
    record["messages"][1]["id"] = record["messages"][0]["id"]
    path = tmp_path / "dup.jsonl"
    path.write_text("\n" + json.dumps(record) + "\n")
    with pytest.raises(DataFormatError) as caught:
        load(path)
    assert caught.value.path == str(path) and caught.value.line == 2
    assert "duplicate message id" in str(caught.value)


@pytest.mark.parametrize("where", ["meta", "file"])
def test_deep_nesting_is_a_data_format_error(tmp_path: Path, where: str) -> None:
    (conv,) = load(DATA / "mtbench101" / "mtbench101.jsonl")[:1]
    deep = "[" * 100_000 + "]" * 100_000
    line = openai_jsonl.json_line(openai_jsonl.to_record(conv))
    if where == "meta":
        text = line.replace('"messages": [{', '"messages": [{"meta": {"x": ' + deep + "}, ", 1)
    else:
        text = line + deep + "\n"
    path = tmp_path / "deep.jsonl"
    path.write_text(text)
    with pytest.raises(DataFormatError) as caught:
        load(path)
    assert caught.value.path == str(path)
    assert caught.value.line == (1 if where == "meta" else 2)
    assert "nested" in str(caught.value)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            load(fifo)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader so the thread ends, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("load() blocked on a FIFO")
    assert isinstance(outcome[0], DataFormatError)
    assert "not a regular file" in str(outcome[0]) and str(fifo) in str(outcome[0])


def test_a_device_is_refused_unread() -> None:
    with pytest.raises(DataFormatError, match="not a regular file"):
        load("/dev/zero")


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    source = DATA / "mtbench101" / "mtbench101.jsonl"
    size = source.stat().st_size
    assert load(source, max_bytes=size)
    with pytest.raises(DataFormatError, match=f"{size} bytes, more than the limit of {size - 1}"):
        load(source, max_bytes=size - 1)


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85"])
def test_line_separators_round_trip_through_save(tmp_path: Path, char: str) -> None:
    convs = load(DATA / "mtbench101" / "mtbench101.jsonl")[:3]
    first = convs[0]
    m = first.messages[0]
    edited = m.replace(content=f"one{char}two", meta={"note": f"a{char}b"})
    changed = dataclasses.replace(first, messages=(edited, *first.messages[1:]))
    path = save([changed, *convs[1:]], tmp_path / "saved.jsonl")
    assert char not in path.read_text(encoding="utf-8")
    assert load(path) == [changed, *convs[1:]]


def test_raw_line_separators_written_elsewhere_still_load(tmp_path: Path) -> None:
    (conv,) = load(DATA / "mtbench101" / "mtbench101.jsonl")[:1]
    record = openai_jsonl.to_record(conv)
    record["messages"][0]["content"] = "one\u2028two\x85three"
    path = tmp_path / "raw.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    (back,) = load(path)
    assert back.messages[0].text == "one\u2028two\x85three"
