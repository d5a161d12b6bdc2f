"""Lossless round trips over every bundled conversation: OpenAI dicts, Anthropic turns, save/load.

Anthropic's format cannot carry a message's id, timestamp, meta or name, the position of system
messages (they are hoisted into `system`), empty text messages (the API rejects empty text
blocks), part boundaries inside one message, nor the exact spelling of tool-call argument JSON
(its parsed value survives). The Anthropic round trip therefore compares, per message: role,
text, tool calls (id, name, parsed arguments) and the tool_call_id of results.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxlab import datasets
from ctxlab.formats import load, save
from ctxlab.formats.anthropic import from_anthropic, to_anthropic
from ctxlab.formats.openai_chat import from_openai, to_openai
from ctxlab.messages import Conversation, ImagePart, Message, TextPart, ToolCall

HERE = Path(__file__).resolve().parent / "data"
OTHER = ["locomo_other.json", "taubench_other.json", "openai_other.jsonl", "sharegpt_other.json"]


@pytest.fixture(scope="module", params=datasets.names())
def bundled(request: pytest.FixtureRequest) -> list[Conversation]:
    return datasets.load(request.param)


def test_openai_round_trip(bundled: list[Conversation]) -> None:
    for conv in bundled:
        wire = json.loads(json.dumps(to_openai(conv.messages, extras=True)))
        assert tuple(from_openai(wire)) == conv.messages, conv.id


def test_openai_without_extras_is_plain_chat(bundled: list[Conversation]) -> None:
    allowed = {"role", "content", "name", "tool_calls", "tool_call_id"}
    for conv in bundled[:50]:
        for d in to_openai(conv.messages):
            assert set(d) <= allowed
            if d.get("tool_calls"):
                assert all(c["type"] == "function" for c in d["tool_calls"])


def _anthropic_view(messages: Any) -> list[tuple[Any, ...]]:
    return [
        (
            m.role,
            m.text,
            tuple((c.id, c.name, json.loads(c.arguments)) for c in m.tool_calls),
            m.tool_call_id,
        )
        for m in messages
    ]


def test_anthropic_round_trip(bundled: list[Conversation]) -> None:
    for conv in bundled:
        system, turns = to_anthropic(conv.messages)
        wire = json.loads(json.dumps(turns))
        back = from_anthropic(system, wire)
        # The bundled data has its one system message first and no empty text message, so
        # nothing is reordered or left out.
        assert _anthropic_view(back) == _anthropic_view(conv.messages), conv.id


def test_anthropic_wire_rules(bundled: list[Conversation]) -> None:
    for conv in bundled:
        system, turns = to_anthropic(conv.messages)
        assert (system is not None) == any(m.role == "system" for m in conv)
        roles = [t["role"] for t in turns]
        assert all(a != b for a, b in itertools.pairwise(roles))  # alternating
        for turn in turns:
            kinds = [b["type"] for b in turn["content"]]
            if "tool_result" in kinds:  # results come first in their user turn
                assert turn["role"] == "user"
                assert kinds[: kinds.count("tool_result")] == ["tool_result"] * kinds.count(
                    "tool_result"
                )
            assert all(b["text"] for b in turn["content"] if b["type"] == "text")


def test_anthropic_merges_consecutive_tool_results() -> None:
    messages = [
        Message(role="system", content="sys", id="s"),
        Message(role="user", content="go", id="u"),
        Message(
            role="assistant",
            tool_calls=(
                ToolCall(id="a", name="f", arguments='{"x": 1}'),
                ToolCall(id="b", name="g"),
            ),
            id="c",
        ),
        Message(role="tool", content="A", tool_call_id="a", id="r1"),
        Message(role="tool", content="B", tool_call_id="b", id="r2"),
        Message(role="user", content="and?", id="u2"),
        Message(role="assistant", content="done", id="d"),
    ]
    system, turns = to_anthropic(messages)
    assert system == "sys"
    assert turns == [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "b", "name": "g", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "A"},
                {"type": "tool_result", "tool_use_id": "b", "content": "B"},
                {"type": "text", "text": "and?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
    ]
    assert _anthropic_view(from_anthropic(system, turns)) == _anthropic_view(messages)


def test_images_convert_both_ways() -> None:
    url = "data:image/png;base64,iVBORw0KGgo="
    m = Message(role="user", content=(TextPart(text="see"), ImagePart(url=url)), id="m0")
    system, turns = to_anthropic([m])
    assert turns[0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    (back,) = from_anthropic(system, turns)
    assert back.content == m.content
    assert tuple(from_openai(to_openai([m], extras=True))) == (m,)


@pytest.mark.parametrize("name", datasets.names())
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    convs = datasets.load(name)
    path = save(convs, tmp_path / f"{name}.jsonl")
    assert load(path) == convs
    assert not [p for p in tmp_path.iterdir() if p.name != f"{name}.jsonl"]  # no temp file left


@pytest.mark.parametrize("name", OTHER)
def test_save_load_round_trip_other_sources(name: str, tmp_path: Path) -> None:
    convs = load(HERE / name)
    assert load(save(convs, tmp_path / "out.jsonl")) == convs


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("previous\n", encoding="utf-8")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ctxlab.formats.os.fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save(datasets.load("mtbench101")[:2], path)
    assert path.read_text(encoding="utf-8") == "previous\n"  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # and no temp file is left


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_calls = st.lists(
    st.builds(
        ToolCall,
        id=st.from_regex(r"call_[A-Za-z0-9]{1,8}", fullmatch=True),
        name=st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
        arguments=st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), _text).map(
            json.dumps
        ),
    ),
    max_size=3,
    unique_by=lambda c: c.id,
)


@given(
    st.lists(
        st.one_of(
            st.builds(Message, role=st.sampled_from(["system", "user"]), content=_text),
            st.builds(Message, role=st.just("assistant"), content=_text, tool_calls=_calls),
            st.builds(Message, role=st.just("tool"), content=_text, tool_call_id=_text),
        ),
        max_size=8,
    )
)
def test_openai_round_trip_generated(messages: list[Message]) -> None:
    wire = json.loads(json.dumps(to_openai(messages, extras=True)))
    assert from_openai(wire) == messages
