"""``ctxlab strategies`` lists every registered strategy with parameters and descriptions."""

from __future__ import annotations

import json

import pytest
from strategy_helpers import NEEDS_MODEL

from ctxlab.cli import main
from ctxlab.errors import UsageError
from ctxlab.strategies import get_strategy, names, strategy_class


def test_lists_every_strategy_with_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in names():
        first_line = (strategy_class(name).__doc__ or "").strip().splitlines()[0]
        assert f"{name:<18} {first_line}" in out
    assert "    max_messages: int | None = None" in out
    assert "    fallback: BaseStrategy | None = token_window" in out
    # What each parameter does, from the strategy's docstring, under its line.
    assert "    head: int = 1\n        how many messages after the first system message" in out


def test_json_output_and_defaults_work_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies", "--json", "head_tail", "keep_all"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == ["head_tail", "keep_all"]
    [head] = infos[0]["parameters"]
    assert head["help"].startswith("how many messages after the first system message")
    assert {k: head[k] for k in ("name", "type", "default")} == {
        "name": "head", "type": "int", "default": "1"}  # fmt: skip
    assert infos[1]["parameters"] == []
    for name in names():
        if name in NEEDS_MODEL:  # nothing offline writes a summary: the error says what to pass
            with pytest.raises(UsageError, match="provider="):
                get_strategy(name)
            continue
        assert get_strategy(name).label == name  # defaults: no parameters shown


def test_unknown_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["strategies", "nope"]) == 2
    assert (
        "unknown strategy 'nope'; known strategies: agents_tool_trim, evidence_oracle"
        in capsys.readouterr().err
    )
