"""``ctxlab compare`` and ``ctxlab inspect`` as a reader sees them: files, checks, table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from ctxlab import datasets, get_counter
from ctxlab.cli import main


@pytest.fixture
def tau(tmp_path: Path, data_dir: Path) -> Path:
    """Four tau-bench runs in a file of their own."""
    source = data_dir / "taubench" / "gpt-4o-airline-dev.json"
    path = tmp_path / "tau.json"
    path.write_text(json.dumps(json.loads(source.read_text())[:4]))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["compare", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_out_with_json_suffix_keeps_the_csv_and_the_record_apart(
    tmp_path: Path, tau: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    status, _, _ = _run(capsys, "--data", str(tau), "--strategy", "token_window",
                        "--budget", "2000", "--out", str(out), "--quiet")  # fmt: skip
    assert status == 0
    df = pd.read_csv(tmp_path / "r.csv")
    assert len(df) > 4 and set(df["strategy"]) == {"token_window"}
    record = json.loads(out.read_text())
    assert record["budgets"][0]["max_tokens"] == 2000 and record["options"]["out"] == str(out)


def test_bad_out_fails_before_the_run(
    tmp_path: Path, tau: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, out, err = _run(capsys, "--data", str(tau), "--budget", "2000",
                            "--out", str(blocker / "r.csv"))  # fmt: skip
    assert status == 2 and "--out" in err and "a-file" in err
    assert "compare: tau" not in err and "Traceback" not in err and out == ""  # nothing ran
    status, _, err = _run(capsys, "--data", str(tau), "--out", str(tmp_path))
    assert status == 2 and "is a folder" in err


def test_format_is_honoured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    status, _, err = _run(capsys, "--data", str(chat), "--format", "locomo", "--budget", "100",
                          "--out", str(tmp_path / "r.csv"))  # fmt: skip
    assert status == 2 and "chat.jsonl" in err and len(err.strip().splitlines()) == 1
    status, _, _ = _run(capsys, "--data", str(chat), "--format", "openai_jsonl", "--budget",
                        "100", "--out", str(tmp_path / "r.csv"), "--quiet")  # fmt: skip
    assert status == 0 and len(pd.read_csv(tmp_path / "r.csv")) > 0


def test_bad_parameter_value_is_a_clear_error(
    tmp_path: Path, tau: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "sliding_window:max_messages=abc"
    status, _, err = _run(capsys, "--data", str(tau), "--strategy", bad, "--out",
                          str(tmp_path / "r.csv"))  # fmt: skip
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "max_messages must be a whole number" in err and "'abc'" in err


def test_table_has_a_legend_marks_over_budget_rows_and_budget_blind_strategies(
    tmp_path: Path, tau: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, "--data", str(tau), "--strategy", "keep_all",
                            "--strategy", "token_window", "--strategy",
                            "sliding_window:max_messages=2", "--budget", "3000",
                            "--budget", "8000", "--out", str(tmp_path / "r.csv"))  # fmt: skip
    assert status == 0
    df = pd.read_csv(tmp_path / "r.csv")
    cells = (line.split() for line in out.split("legend")[0].splitlines())
    rows = {(r[0], int(r[1])): r for r in cells if len(r) > 2 and r[1].isdigit()}
    share = df[(df["strategy"] == "keep_all") & (df["budget"] == 3000)]["budget_ok"].mean()
    assert 0 < share < 1 and rows[("keep_all", 3000)][2] == f"{100 * share:.0f}%!"
    assert rows[("keep_all", 8000)][2] == rows[("token_window", 3000)][2] == "100%"
    legend = out.split("legend")[1]
    for key in ("ok%", "tok/req", "tok/conv", "compr", "stable", "keys", "actions", "-"):
        assert re.search(rf"^  {re.escape(key)} ", legend, re.M), key
    assert "evidence" not in legend  # only the columns shown are explained
    assert "same at every budget: keep_all, sliding_window(max_messages=2)" in out
    assert "token_window" not in out.split("same at every budget")[1].splitlines()[0]
    # stderr is not a terminal here: plain progress lines, no bar redraws.
    assert "\r" not in err and re.search(
        r"^compare: taubench: 4 conversations at budgets", err, re.M
    )
    assert re.search(r"^compare: taubench done in [\d.]+ s$", err, re.M)


def test_inspect_reads_a_folder(capsys: pytest.CaptureFixture[str]) -> None:
    folder = datasets.path("sweagent")
    assert main(["inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{folder}: {len(datasets.load('sweagent'))} conversations")


def test_counting_a_plain_string() -> None:
    counter = get_counter()
    assert counter.count("hello world") == counter.count_text("hello world") == 2
