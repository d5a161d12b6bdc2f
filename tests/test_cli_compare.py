"""``ctxlab compare``: the main job, run as a user would."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ctxlab import datasets, get_counter
from ctxlab.cli import main
from ctxlab.formats.openai_chat import from_openai
from ctxlab.lab.report import COLUMNS


def _jsonl(path: Path) -> Path:
    """A file the project has never seen: two chats with a tool call, in OpenAI JSONL."""
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    chats = [
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Find order A-1234 " * 60},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "order A-1234 shipped " * 200},
            {"role": "assistant", "content": "It shipped."},
            {"role": "user", "content": "And order B-99?"},
            {"role": "assistant", "content": "Not found."},
        ],
        [{"role": "user", "content": "hi " * 3000}, {"role": "assistant", "content": "hello"}],
    ]
    path.write_text("\n".join(json.dumps({"messages": c}) for c in chats) + "\n")
    return path


def test_compare_a_new_file_writes_csv_record_and_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _jsonl(tmp_path / "chats.jsonl")
    out, dump = tmp_path / "r.csv", tmp_path / "dump"
    argv = ["compare", "--data", str(data), "--strategy", "token_window", "--budget", "2000",
            "--budget", "8000", "--probes", "end", "--out", str(out), "--dump", str(dump),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    df = pd.read_csv(out)
    assert tuple(df.columns[: len(COLUMNS)]) == COLUMNS
    assert len(df) == 4 and set(df["budget"]) == {2000, 8000}
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["data"][0]["sha256"] and record["budgets"][0]["max_tokens"] == 2000
    assert record["encoding"] == "o200k_base" and record["token_counts"] == "exact"
    assert (tmp_path / "pareto.png").exists() is False  # plots go beside --out
    assert (out.parent / "tokens.png").read_bytes().startswith(b"\x89PNG")
    # Independent check: recount the dumped contexts.
    counter = get_counter()
    for line in (p for f in dump.rglob("*.jsonl") for p in f.read_text().splitlines()):
        entry = json.loads(line)
        row = df[
            (df["conversation_id"] == entry["conversation_id"]) & (df["budget"] == entry["budget"])
        ]
        if entry["budget_unreachable"]:
            assert not row["budget_ok"].iloc[0] and row["input_tokens"].isna().all()
            continue
        sent = counter.count_messages(from_openai(entry["messages"], id_prefix=None))
        assert row["input_tokens"].iloc[0] == sent <= entry["budget"]
    # The second chat's only user message alone exceeds 2000 tokens: that cell fails.
    failed = df[(df["conversation_id"] == "chats-1") & (df["budget"] == 2000)]
    assert not failed["budget_ok"].iloc[0] and failed["evidence_recall"].isna().all()
    table = capsys.readouterr().out
    assert "chats: 2 conversations" in table and "token_window" in table


def test_unknown_strategy_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _jsonl(tmp_path / "chats.jsonl")
    assert main(["compare", "--data", str(data), "--strategy", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "known strategies:" in err and "token_window" in err


def test_unreadable_data_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{"messages": [\n')
    assert main(["compare", "--data", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.jsonl" in err and "line 2" in err


def test_user_strategy_by_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_strategies.py").write_text(
        "def last_two(messages):\n"
        "    system = [m for m in messages[:1] if m.role == 'system']\n"
        "    return system + list(messages[-2:])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = _jsonl(tmp_path / "chats.jsonl")
    out = tmp_path / "u.csv"
    argv = ["compare", "--data", str(data), "--strategy", "my_strategies:last_two",
            "--budget", "100000", "--probes", "end", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    df = pd.read_csv(out)
    assert set(df["strategy"]) == {"last_two"} and (df["messages_sent"] <= 3).all()


_SPENDER = """
from dataclasses import dataclass
from typing import ClassVar

from ctxlab.strategies.base import BaseStrategy, Pruned
from ctxlab.usage import Usage


@dataclass(frozen=True, kw_only=True)
class Spender(BaseStrategy):
    name: ClassVar[str] = "spender"

    def _prune(self, conversation, budget, counter):
        sent = conversation.messages
        return Pruned(conversation=conversation, messages=tuple(sent), budget=budget,
                      tokens=counter.count_messages(sent), strategy=self.label,
                      extra_usage=Usage(input_tokens=1000, output_tokens=100))
"""


def test_summarizer_model_prices_the_strategies_own_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ctxlab.providers.pricing import cost_usd
    from ctxlab.usage import Usage

    (tmp_path / "spending.py").write_text(_SPENDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = _jsonl(tmp_path / "chats.jsonl")
    out = tmp_path / "s.csv"
    argv = ["compare", "--data", str(data), "--strategy", "spending:Spender", "--budget",
            "100000", "--probes", "assistant_turns", "--model", "gpt-4o",
            "--summarizer-model", "gpt-4o-mini", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    df = pd.read_csv(out)
    chat = df[df["conversation_id"] == "chats-0"]  # three requests, each with its own calls
    requests = sum(cost_usd(Usage(input_tokens=int(n)), "gpt-4o") for n in chat["input_tokens"])
    own = cost_usd(Usage(input_tokens=1000, output_tokens=100), "gpt-4o-mini")
    assert chat["cost_usd"].iloc[-1] == pytest.approx(requests + 3 * own)
    record = json.loads(out.with_suffix(".json").read_text())
    assert (record["model"], record["summarizer_model"]) == ("gpt-4o", "gpt-4o-mini")
    table = capsys.readouterr().out
    assert "own calls at gpt-4o-mini" in table
    # Per conversation, the calls' whole spend (3 probes and 1 probe): 2,000 tokens in.
    head, row = table.split("\nlegend")[0].strip().splitlines()[-2:]
    assert "tok/conv  extra in/conv  extra out/conv  usd/conv" in head
    assert row.split()[5:7] == ["2,000", "200"]  # not the means per probe, 500 and 50
    assert main(["compare", "--data", str(data), "--summarizer-model", "x", "--quiet"]) == 2
    assert "--summarizer-model needs --model" in capsys.readouterr().err


def test_jobs_give_the_same_results(tmp_path: Path, data_dir: Path) -> None:
    source = data_dir / "taubench" / "gpt-4o-airline-dev.json"
    small = tmp_path / "tau.json"
    small.write_text(json.dumps(json.loads(source.read_text())[:4]))
    outputs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}" / "r.csv"
        argv = ["compare", "--data", str(small), "--strategy", "token_window",
                "--strategy", "mask_tool_outputs", "--budget", "3000", "--budget", "8000",
                "--jobs", jobs, "--out", str(out), "--quiet"]  # fmt: skip
        assert main(argv) == 0
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]


def _small_data(root: Path, data_dir: Path) -> Path:
    """The bundled datasets cut down: LoCoMo's first conversation to 2 sessions, 2 tau-bench
    runs, 3 MT-Bench-101 dialogues, 1 SWE-agent run."""
    sample = json.loads((data_dir / "locomo" / "locomo7.json").read_text())[0]
    keep = {
        k: v for k, v in sample["conversation"].items()
        if not re.fullmatch(r"session_\d+(_date_time)?", k) or int(re.findall(r"\d+", k)[0]) <= 2
    }  # fmt: skip
    (root / "locomo").mkdir(parents=True)
    (root / "locomo" / "locomo7.json").write_text(json.dumps([dict(sample, conversation=keep)]))
    (root / "taubench").mkdir()
    tau = json.loads((data_dir / "taubench" / "gpt-4o-airline-dev.json").read_text())[:2]
    (root / "taubench" / "t.json").write_text(json.dumps(tau))
    (root / "mtbench101").mkdir()
    lines = (data_dir / "mtbench101" / "mtbench101.jsonl").read_text().splitlines()[:3]
    (root / "mtbench101" / "m.jsonl").write_text("\n".join(lines) + "\n")
    (root / "sweagent_demos").mkdir()
    traj = data_dir / "sweagent_demos/trajectories/demonstrations/function_calling_simple.traj"
    shutil.copy(traj, root / "sweagent_demos" / traj.name)
    return root


def test_no_options_runs_everything_and_writes_results(
    tmp_path: Path,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CTXLAB_DATA", str(_small_data(tmp_path / "data", data_dir)))
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--quiet"]) == 0
    results = tmp_path / "ctxlab-results"
    df = pd.read_csv(results / "results.csv")
    from ctxlab import strategies

    # MT-Bench-101's dialogues (a few hundred tokens) are too short for any budget to bind.
    assert set(df["dataset"]) == {"locomo", "taubench", "sweagent"}
    assert set(df["strategy"]) == set(strategies.default_names())
    for name in ("pareto.png", "tokens.png", "evidence_by_category.png", "results.json"):
        assert (results / name).stat().st_size > 0, name
    table = capsys.readouterr().out
    assert "mtbench101: left out: its median conversation" in table
    counter = get_counter()
    record = json.loads((results / "results.json").read_text())
    for dataset in ("locomo", "taubench", "sweagent"):
        chosen = re.search(rf"^{dataset}: budgets ([\d, ]+) = pinned", table, re.M)
        assert chosen, table[:2000]
        budgets = sorted(int(b.replace(",", "")) for b in chosen.group(1).split(", "))
        rows = df[df["dataset"] == dataset]
        assert sorted(set(rows["budget"])) == budgets == record["budgets_by_dataset"][dataset]
        # Each budget binds: below the largest conversation's size, above what must be sent.
        convs = datasets.load(dataset)  # the cut-down data: CTXLAB_DATA points at it
        sizes = [counter.count_messages(c.messages) for c in convs]
        assert max(budgets) < max(sizes)
        keep_all = rows[(rows["strategy"] == "keep_all") & (rows["budget"] == min(budgets))]
        assert not keep_all["budget_ok"].all()  # the smallest budget binds somewhere
    assert "token counts: o200k_base (exact)" in table
    assert "locomo: 1 conversations" in table and "evidence" in table
    assert "legend" in table and "tok/conv" in table.split("legend")[1]


def test_metric_subset_prints_what_was_computed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--metric without the token columns: the table still prints (it used to raise KeyError)."""
    out = tmp_path / "r.csv"
    argv = ["compare", "--data", "sweagent", "--strategy", "token_window", "--budget", "2000",
            "--probes", "end", "--metric", "violations", "--metric", "key_string_recall",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    df = pd.read_csv(out)
    within = df.dropna(subset=["violations"])  # the rest: budget unreachable
    assert len(within) >= 5 and (within["violations"] == 0).all()
    assert "key_string_recall" in df
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("token_window"))
    assert row.split()[:2] == ["token_window", "2000"]
