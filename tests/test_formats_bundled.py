"""The loaders on every bundled file: counts recomputed from the raw JSON, ids, annotations."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import ctxlab
from ctxlab.formats import detect, load
from ctxlab.messages import Conversation, thaw

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
LOCOMO = DATA / "locomo" / "locomo7.json"
TAU = DATA / "taubench" / "gpt-4o-airline-dev.json"
MTB = DATA / "mtbench101" / "mtbench101.jsonl"
SWE = sorted((DATA / "sweagent_demos").glob("**/*.traj"))


def _raw(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _sessions(conv: dict[str, Any]) -> list[int]:
    return sorted(int(k.split("_")[1]) for k in conv if re.fullmatch(r"session_\d+", k))


def test_detect_every_bundled_file() -> None:
    assert detect(LOCOMO) == "locomo"
    assert detect(TAU) == "taubench"
    assert detect(MTB) == "mtbench101"
    assert {detect(p) for p in SWE} == {"sweagent"}
    assert len(SWE) == 15


def test_public_load_and_save_resolve() -> None:
    assert ctxlab.load is load
    assert ctxlab.save is ctxlab.formats.save
    assert ctxlab.datasets.names() == ["locomo", "mtbench101", "sweagent", "taubench"]


# --- LoCoMo -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locomo() -> list[Conversation]:
    return load(LOCOMO)


def test_locomo_one_conversation_per_sample_in_file_order(locomo: list[Conversation]) -> None:
    raw = _raw(LOCOMO)
    assert [c.id for c in locomo] == [s["sample_id"] for s in raw]
    assert [c.id for c in locomo] == [f"conv-{n}" for n in (26, 30, 41, 42, 43, 47, 48)]
    for conv, sample in zip(locomo, raw, strict=True):
        turns = [
            t
            for k in _sessions(sample["conversation"])
            for t in sample["conversation"][f"session_{k}"]
        ]
        assert len(conv) == len(turns)
        assert [m.meta["dia_id"] for m in conv] == [t["dia_id"] for t in turns]
        assert len(conv.annotations["questions"]) == len(sample["qa"])
        assert conv.source.dataset == "locomo" and conv.source.path == str(LOCOMO)
    assert sum(len(c) for c in locomo) == 4130
    assert sum(len(c.annotations["questions"]) for c in locomo) == 1428


def test_locomo_roles_ids_meta_and_timestamps(locomo: list[Conversation]) -> None:
    raw = _raw(LOCOMO)
    for conv, sample in zip(locomo, raw, strict=True):
        a, b = sample["conversation"]["speaker_a"], sample["conversation"]["speaker_b"]
        for m in conv:
            assert m.role == {a: "user", b: "assistant"}[m.meta["speaker"]]
            assert m.name is None
            assert m.id == m.meta["dia_id"]  # the bundled ids are already normal
            assert m.id == f"D{m.meta['session']}:{m.id.split(':')[1]}"
            assert m.timestamp is not None
            assert (
                m.meta["session_date"]
                == sample["conversation"][f"session_{m.meta['session']}_date_time"]
            )
    first = locomo[0][0]
    assert (first.id, first.role, first.text) == (
        "D1:1",
        "user",
        "Hey Mel! Good to see you! How have you been?",
    )
    assert first.timestamp is not None and first.timestamp.isoformat() == "2023-05-08T13:56:00"


def test_locomo_only_session_lists_are_read(locomo: list[Conversation]) -> None:
    # conv-26 lists 35 session dates but has 19 sessions.
    sessions = {m.meta["session"] for m in locomo[0]}
    assert sessions == set(range(1, 20))


def test_locomo_image_turns_carry_the_caption(locomo: list[Conversation]) -> None:
    m = locomo[0].messages[locomo[0].index_of("D1:5")]
    assert m.text == (
        "The transgender stories were so inspiring! I was so happy and thankful for all the "
        "support. [shares an image: a photo of a dog walking past a wall with a painting "
        "of a woman]"
    )
    raw = _raw(LOCOMO)
    captions = sum(
        1
        for s in raw
        for k in _sessions(s["conversation"])
        for t in s["conversation"][f"session_{k}"]
        if t.get("blip_caption")
    )
    assert sum(1 for c in locomo for m in c if "[shares an image: " in m.text) == captions


def test_locomo_questions(locomo: list[Conversation]) -> None:
    qs = [q for c in locomo for q in c.annotations["questions"]]
    assert {q["category"] for q in qs} == {1, 2, 3, 4, 5}
    assert all(isinstance(q["answer"], str) for q in qs if q["category"] != 5)
    # Upstream ints become strings.
    q = locomo[0].annotations["questions"][1]
    assert (q["question"], q["answer"]) == ("When did Melanie paint a sunrise?", "2022")
    # Category 5: the adversarial answer is kept; most have no plain answer.
    adversarial = [q for q in qs if q["category"] == 5]
    assert len(adversarial) == 325
    assert all(isinstance(q["adversarial_answer"], str) for q in adversarial)
    assert sum(q["answer"] is None for q in adversarial) == 323
    assert all(q["adversarial_answer"] is None for q in qs if q["category"] != 5)


def test_locomo_evidence_resolution(locomo: list[Conversation]) -> None:
    by_id = {c.id: c for c in locomo}
    for c in locomo:
        ids = {m.id for m in c}
        for q in c.annotations["questions"]:
            assert set(q["evidence"]) <= ids
    totals = {
        k: sum(c.annotations["evidence_stats"][k] for c in locomo)
        for k in ("resolved", "unresolved", "questions", "no_evidence")
    }
    assert totals == {"resolved": 1938, "unresolved": 3, "questions": 1428, "no_evidence": 2}
    unresolved = sorted(
        (c.id, u)
        for c in locomo
        for q in c.annotations["questions"]
        for u in q["unresolved_evidence"]
    )
    assert unresolved == [("conv-42", "D"), ("conv-42", "D10:19"), ("conv-47", "D4:36")]
    # Malformed upstream ids that now resolve.
    split = next(
        q for q in by_id["conv-26"].annotations["questions"] if q["evidence"] == ("D8:6", "D9:17")
    )
    assert split["unresolved_evidence"] == ()
    colon = [q for q in by_id["conv-43"].annotations["questions"] if "D11:26" in q["evidence"]]
    assert colon


# --- tau-bench --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tau() -> list[Conversation]:
    return load(TAU)


def test_taubench_counts_and_annotations(tau: list[Conversation]) -> None:
    raw = _raw(TAU)
    assert [c.id for c in tau] == [f"{t['task_id']}-{t['trial']}" for t in raw]
    assert len(tau) == 152 and len({c.id for c in tau}) == 152
    for conv, t in zip(tau, raw, strict=True):
        assert len(conv) == len(t["traj"])
        assert [m.role for m in conv] == [m["role"] for m in t["traj"]]
        calls = [c["function"]["name"] for m in t["traj"] for c in m.get("tool_calls") or []]
        assert [c.name for m in conv for c in m.tool_calls] == calls
        assert conv.annotations["reward"] == t["reward"]
        assert conv.annotations["instruction"] == t["info"]["task"]["instruction"]
        assert conv.annotations["user_id"] == t["info"]["task"]["user_id"]
        assert thaw(conv.annotations["gold_actions"]) == t["info"]["task"]["actions"]
    assert sum(len(c) for c in tau) == 3986
    assert sum(len(m.tool_calls) for c in tau for m in c) == 888


def test_taubench_reused_call_ids_are_renamed_and_paired(tau: list[Conversation]) -> None:
    assert sum(c.annotations["renamed_tool_call_ids"] for c in tau) > 0
    for conv in tau:
        call_ids = [c.id for m in conv for c in m.tool_calls]
        assert len(call_ids) == len(set(call_ids))
        _assert_paired(conv)
    first = tau[0]  # task 0 reuses call_HGn16... and call_oIHaz... for later calls
    assert [c.id for c in first[12].tool_calls] == ["call_HGn16KZh9oNCruxsMJ4gYXan_dup2"]
    assert first[13].tool_call_id == "call_HGn16KZh9oNCruxsMJ4gYXan_dup2"
    assert first[9].tool_call_id == "call_HGn16KZh9oNCruxsMJ4gYXan"


def _assert_paired(conv: Conversation) -> None:
    seen: set[str] = set()
    for m in conv:
        if m.role == "tool":
            assert m.tool_call_id in seen, (conv.id, m.id)
        seen.update(c.id for c in m.tool_calls)


# --- MT-Bench-101 -----------------------------------------------------------------------


def test_mtbench101() -> None:
    convs = load(MTB)
    rows = [json.loads(line) for line in MTB.read_text(encoding="utf-8").splitlines()]
    assert len(convs) == len(rows) == 1388
    for conv, row in zip(convs, rows, strict=True):
        assert conv.id == f"{row['task']}-{row['id']}"
        assert [m.text for m in conv] == [t for h in row["history"] for t in (h["user"], h["bot"])]
        assert [m.role for m in conv] == ["user", "assistant"] * len(row["history"])
        assert conv.annotations["task"] == row["task"]
        assert conv.annotations["reference_answer"] == row["history"][-1]["bot"] == conv[-1].text
    assert sum(len(c) for c in convs) == 8416
    assert len({c.annotations["task"] for c in convs}) == 13


# --- SWE-agent --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SWE, ids=lambda p: p.parent.name[:20] + "/" + p.name)
def test_sweagent_file(path: Path) -> None:
    (conv,) = load(path)
    raw = _raw(path)
    history = [m for m in raw["history"] if not m.get("is_demo")]
    assert conv.id == path.stem
    assert len(conv) == len(history)
    assert [m.role for m in conv] == [m["role"] for m in history]
    assert conv.annotations["demo_messages_skipped"] == len(raw["history"]) - len(history)
    _assert_paired(conv)
    # Only observations that answer an action are tool output; the task statement is not.
    for i, m in enumerate(conv):
        expected = m.role == "tool" or (
            m.role == "user" and i > 0 and conv[i - 1].role == "assistant"
        )
        assert m.is_tool_output == expected
    task = next(m for m in conv if m.role == "user")
    assert not task.is_tool_output
    submission = raw.get("info", {}).get("submission")
    assert conv.annotations["patch"] == submission


def test_sweagent_styles_and_patch_paths() -> None:
    convs = {str(p.relative_to(DATA / "sweagent_demos")): load(p)[0] for p in SWE}
    tool_style = [k for k, c in convs.items() if any(m.role == "tool" for m in c)]
    assert len(tool_style) == 3
    plain = [k for k, c in convs.items() if any(m.meta.get("tool_output") for m in c)]
    assert len(plain) == 12
    pydicom = next(c for k, c in convs.items() if k.endswith("pydicom__pydicom-1458.traj"))
    assert pydicom.annotations["demo_messages_skipped"] == 1
    assert pydicom.annotations["patch_paths"] == ("pydicom/pixel_data_handlers/numpy_handler.py",)
    ctf = next(c for k, c in convs.items() if k.endswith("BabyEncryption.traj"))
    assert ctf.annotations["patch_paths"] == ()  # a CTF flag, not a diff


def test_sweagent_demos_can_be_kept() -> None:
    from ctxlab.formats import sweagent
    from ctxlab.messages import Source

    path = next(p for p in SWE if p.name == "pydicom__pydicom-1458.traj")
    conv = sweagent.parse(_raw(path), Source(path=str(path)), include_demos=True)
    assert len(conv) == len(_raw(path)["history"]) == 26
    assert conv[1].meta["is_demo"] is True


# --- stability --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [LOCOMO, TAU, MTB, SWE[0]], ids=lambda p: p.name)
def test_ids_are_unique_and_stable(path: Path) -> None:
    first, second = load(path), load(path)
    assert first == second
    for conv in first:
        assert len({m.id for m in conv}) == len(conv)
