"""The loaders on files written by other sources (hand-made under tests/data/), exact results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxlab.errors import UsageError
from ctxlab.formats import FORMATS, detect, load
from ctxlab.messages import ImagePart, TextPart, thaw

HERE = Path(__file__).resolve().parent / "data"


def test_formats_names() -> None:
    assert FORMATS == ("locomo", "taubench", "sweagent", "mtbench101", "openai_jsonl", "sharegpt")


def test_locomo_other_samples() -> None:
    x1, x2 = load(HERE / "locomo_other.json")
    assert (x1.id, x2.id) == ("conv-x1", "conv-x2")
    assert [m.id for m in x1] == ["D1:1", "D1:2", "D1:3", "D1:4", "D2:1", "D2:2", "D2:3"]
    assert [m.role for m in x1] == [
        "user",
        "assistant",
        "user",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert x1[2].text == "Here she is. [shares an image: a photo of a grey cat on a sofa]"
    assert x1[6].text == "[shares an image: a photo of a desk with two monitors]"
    assert x1[0].timestamp is not None and x1[0].timestamp.isoformat() == "2024-03-03T09:05:00"
    assert x1[4].meta["session"] == 2 and x1[4].meta["session_date"] == "6:40 pm on 10 March, 2024"
    # speaker_a of the second sample is Chen, who speaks second.
    assert [(m.role, m.meta["speaker"]) for m in x2] == [("assistant", "Dara"), ("user", "Chen")]

    qs = thaw(x1.annotations["questions"])
    assert [q["evidence"] for q in qs] == [["D1:1"], ["D1:4"], ["D2:2", "D1:1"], ["D1:1"], []]
    assert [q["unresolved_evidence"] for q in qs] == [[], [], [], ["D7:7", "D"], []]
    assert qs[1]["answer"] == "3"
    assert qs[4] == {
        "question": "What is the name of Ben's dog?",
        "answer": None,
        "adversarial_answer": "Rex",
        "category": 5,
        "evidence": [],
        "unresolved_evidence": [],
    }
    assert thaw(x1.annotations["evidence_stats"]) == {
        "questions": 5,
        "entries": 7,
        "ids": 8,
        "resolved": 6,
        "unresolved": 2,
        # "D1:04"; "D2:2" and "D1:1" split out of "D2:2; D1:1"; "D:2:2"
        "normalised": 4,
        "no_evidence": 1,
    }


def test_taubench_other_tasks() -> None:
    a, b = load(HERE / "taubench_other.json")
    assert (a.id, b.id) == ("101-0", "102-3")
    assert len(a) == 9 and len(b) == 6
    # The second call reuses "call_A": renamed, and its result follows it.
    assert [c.id for m in a for c in m.tool_calls] == ["call_A", "call_A_dup2"]
    assert [m.tool_call_id for m in a if m.role == "tool"] == ["call_A", "call_A_dup2"]
    assert a.annotations["renamed_tool_call_ids"] == 1
    assert a[2].text == "" and a[3].name == "get_reservation_details"
    assert thaw(a.annotations["gold_actions"]) == [
        {"name": "cancel_reservation", "kwargs": {"reservation_id": "QX7Z2P"}}
    ]
    # Parallel calls in one assistant message, with text.
    assert b[2].text == "Let me look you up."
    assert [c.name for c in b[2].tool_calls] == ["get_user_details", "list_orders"]
    assert [m.tool_call_id for m in b if m.role == "tool"] == ["call_B1", "call_B2"]
    assert b.annotations["reward"] == 0.0 and thaw(b.annotations["outputs"]) == ["Lisbon"]
    assert b.annotations["renamed_tool_call_ids"] == 0


def test_openai_jsonl_from_another_tool() -> None:
    assert detect(HERE / "openai_other.jsonl") == "openai_jsonl"
    first, second, third = load(HERE / "openai_other.jsonl")
    assert [c.id for c in (first, second, third)] == ["openai_other-0", "chat-7", "openai_other-2"]
    assert first.source.dataset == "openai_other"
    assert first[0].role == "system" and first[0].meta["openai_role"] == "developer"
    assert thaw(second.annotations) == {"topic": "weather", "rating": 5}
    assert second[0].content == (
        TextPart(text="What's the weather in Oslo?"),
        ImagePart(url="https://example.org/oslo.png", detail="low"),
    )
    call = second[1].tool_calls[0]
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "call_w1",
        "get_weather",
        {"city": "Oslo"},
    )
    assert second[2].tool_call_id == "call_w1"
    assert third[1].name == "alice"
    assert [m.id for m in third] == ["m0", "m1", "m2"]


def test_sharegpt() -> None:
    assert detect(HERE / "sharegpt_other.json") == "sharegpt"
    plain, tools = load(HERE / "sharegpt_other.json")
    assert plain.id == "sg-1" and tools.id == "sharegpt_other-1"
    assert [m.role for m in plain] == ["system", "user", "assistant", "user", "assistant"]
    assert plain[1].meta["from"] == "human"
    assert [m.role for m in tools] == ["system", "user", "assistant", "tool", "assistant"]
    call = tools[2].tool_calls[0]
    assert call.name == "lookup_stock" and json.loads(call.arguments) == {"ticker": "ACME"}
    assert tools[3].tool_call_id == call.id and tools[3].text == '{"price": 12.5}'


def test_format_can_be_forced_and_must_be_known(tmp_path: Path) -> None:
    # A one-line ShareGPT file with a .jsonl suffix still reads with format= given.
    path = tmp_path / "one.jsonl"
    path.write_text('{"conversations": [{"from": "human", "value": "hi"}]}\n', encoding="utf-8")
    assert [m.text for m in load(path, format="sharegpt")[0]] == ["hi"]
    with pytest.raises(UsageError, match="openai_jsonl"):
        load(path, format="csv")


def test_jsonl_without_suffix_and_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "chats.txt"
    path.write_text(
        '{"messages": [{"role": "user", "content": "a"}]}\n'
        '{"messages": [{"role": "user", "content": "b"}]}\n',
        encoding="utf-8",
    )
    assert [c[0].text for c in load(path)] == ["a", "b"]
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    assert load(empty) == []
