"""`ctxlab.datasets` and `ctxlab inspect` on the bundled data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ctxlab
from ctxlab import datasets
from ctxlab.cli import main
from ctxlab.errors import ConfigurationError, UsageError
from ctxlab.tokens import get_counter

REPO = Path(__file__).resolve().parent.parent

# Measured on the bundled files (o200k_base, whole conversation as one request).
EXPECTED = {
    "locomo": (7, 4130, 142_316, 1428),
    "mtbench101": (1388, 8416, 382_679, 0),
    "sweagent": (15, 328, 97_091, 0),
    "taubench": (152, 3986, 544_547, 0),
}


def test_names() -> None:
    assert datasets.names() == sorted(EXPECTED)
    assert ctxlab.datasets is datasets


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_counts(name: str) -> None:
    convs = datasets.load(name)
    counter = get_counter()
    qa = sum(len(c.annotations.get("questions", ())) for c in convs)
    tokens = sum(counter.count_messages(c.messages) for c in convs)
    assert (len(convs), sum(len(c) for c in convs), tokens, qa) == EXPECTED[name]
    assert len({c.id for c in convs}) == len(convs)
    assert {c.source.dataset for c in convs} == {name}


def test_sweagent_repeated_file_names_get_their_folder() -> None:
    ids = [c.id for c in datasets.load("sweagent")]
    twins = [i for i in ids if i.endswith("marshmallow-code__marshmallow-1867")]
    assert len(twins) == 2 and all("/" in i for i in twins)


def test_user_turns_leave_out_observations_sent_as_user_messages() -> None:
    # Older SWE-agent runs send each command's output back as a user message tagged tool_output.
    run = datasets.load("sweagent")[1]
    users = [m for m in run.messages if m.role == "user"]
    turns = [m for m in users if m.is_user_turn]
    assert 0 < len(turns) < len(users)
    assert all(not m.is_tool_output for m in turns)
    assert all(m.is_tool_output for m in users if m not in turns)
    chat = datasets.load("locomo")[0]
    assert all(m.is_user_turn == (m.role == "user") for m in chat.messages)


def test_load_is_cached_and_returns_a_fresh_list() -> None:
    a, b = datasets.load("taubench"), datasets.load("taubench")
    assert a == b and a is not b
    assert a[0] is b[0]


def test_info_and_unknown_name() -> None:
    assert datasets.info("locomo").license.startswith("CC BY-NC 4.0")
    with pytest.raises(UsageError, match="locomo, mtbench101, sweagent, taubench"):
        datasets.load("squad")


def test_ctxlab_data_relocates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO / "data" / "mtbench101", tmp_path / "mtbench101")
    monkeypatch.setenv("CTXLAB_DATA", str(tmp_path))
    assert datasets.path("mtbench101") == tmp_path / "mtbench101"
    assert len(datasets.load("mtbench101")) == 1388
    with pytest.raises(ConfigurationError, match="CTXLAB_DATA"):
        datasets.load("locomo")  # not copied


def test_missing_data_says_to_set_ctxlab_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTXLAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match="set CTXLAB_DATA"):
        datasets.load("taubench")


def test_inspect_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    for name, (convs, messages, tokens, qa) in EXPECTED.items():
        line = next(x for x in out.splitlines() if x.startswith(name + " "))
        qa_cell = f"{qa:,}" if qa else "-"
        assert line.split() == [name, f"{convs:,}", f"{messages:,}", f"{tokens:,}", qa_cell]
    assert "locomo: evidence ids resolved 1,938, unresolved 3" in out
    assert "non-commercial" in out


def test_inspect_file_and_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    path = REPO / "tests" / "data" / "taubench_other.json"
    assert main(["inspect", str(path), "locomo", "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    counter = get_counter()
    first = ctxlab.load(path)[0]
    row = next(x for x in out if x.startswith("101-0 "))
    assert row.split() == ["101-0", "9", "2", f"{counter.count_messages(first.messages):,}", "-"]
    assert any(x.startswith("conv-26 ") and x.split()[-1] == "199" for x in out)
    assert not any(x.startswith("conv-30 ") for x in out)  # --limit 1


def test_inspect_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "no-such-thing"]) == 2
    assert "neither an existing file or folder nor a bundled dataset" in capsys.readouterr().err
    bad = REPO / "tests" / "data" / "bad" / "unknown_role.jsonl"
    assert main(["inspect", str(bad)]) == 2
    assert "line 3" in capsys.readouterr().err


def test_source_prints_the_file_name_not_the_machine_path() -> None:
    conv = datasets.load("taubench")[0]
    assert conv.source.path is not None and conv.source.path.endswith("gpt-4o-airline-dev.json")
    assert str(conv.source) == "taubench:gpt-4o-airline-dev.json#0"
