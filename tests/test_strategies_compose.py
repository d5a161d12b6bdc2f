"""Pipelines of strategies and plain functions as strategies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
from strategy_helpers import agent_conversation, ids

from ctxlab import datasets
from ctxlab.errors import InvariantError, UsageError
from ctxlab.invariants import check
from ctxlab.messages import Message
from ctxlab.strategies import get_strategy
from ctxlab.strategies.base import BaseStrategy, Pruned
from ctxlab.strategies.function import from_function
from ctxlab.strategies.mask_tool_outputs import MaskToolOutputs
from ctxlab.strategies.pipeline import Pipeline, pipeline
from ctxlab.strategies.token_window import TokenWindow
from ctxlab.strategies.truncate_long import TruncateLong
from ctxlab.tokens import get_counter
from ctxlab.usage import Usage

COUNTER = get_counter()


@dataclass(frozen=True, kw_only=True)
class Billed(BaseStrategy):
    """Keeps everything and reports one fake LLM call."""

    name: ClassVar[str] = "billed"

    def _prune(self, conversation, budget, counter) -> Pruned:
        return Pruned(
            conversation=conversation,
            messages=conversation.messages,
            tokens=counter.count_messages(conversation.messages),
            budget=budget,
            strategy=self.label,
            extra_usage=Usage(input_tokens=10, output_tokens=2, requests=1),
        )


def test_pipeline_composes_decisions_back_to_the_original() -> None:
    c = agent_conversation(turns=5, output_words=300)
    mask = MaskToolOutputs(keep_last=1, fallback=None)
    steps = pipeline([mask, "token_window"])
    masked = mask.prune(c, 10**6, COUNTER).messages
    budget = COUNTER.count_messages(m for m in masked if m.id not in ("task", "a0", "r0"))
    pruned = steps.prune(c, budget, COUNTER)
    check(c, pruned, budget, COUNTER)
    by_id = {d.message_id: d for d in pruned.decisions}
    assert by_id["r4"].action == "kept"  # newest output, verbatim
    assert by_id["r3"].action == "masked"  # masked by step 1, kept by the window
    assert by_id["r0"].action == "dropped"  # masked by step 1, then outside the window
    assert by_id["r0"].reason == "older than the window that fits the budget"
    assert (
        pruned.strategy
        == steps.label
        == ("pipeline(steps=[mask_tool_outputs(keep_last=1, fallback=None), token_window])")
    )
    assert len(ids(pruned.messages)) > len(ids(TokenWindow().prune(c, budget, COUNTER).messages))


def test_pipeline_sums_extra_usage_and_accepts_names() -> None:
    c = agent_conversation()
    pruned = Pipeline(steps=(Billed(), "truncate_long", Billed())).prune(c, 10**6, COUNTER)
    assert pruned.extra_usage == Usage(input_tokens=20, output_tokens=4, requests=2)
    assert isinstance(Pipeline(steps=["token_window"]).steps[0], TokenWindow)
    with pytest.raises(UsageError, match="non-empty"):
        Pipeline(steps=())
    with pytest.raises(UsageError, match="unknown strategy 'nope'"):
        pipeline(["nope"])


def test_truncated_then_masked_is_masked_with_both_reasons() -> None:
    c = agent_conversation(turns=3, output_words=800)
    steps = pipeline(
        [TruncateLong(max_tokens_per_message=200, fallback=None), MaskToolOutputs(keep_last=1)]
    )
    pruned = steps.prune(c, 10**6, COUNTER)
    d = {d.message_id: d for d in pruned.decisions}
    assert d["r0"].action == "masked" and "cut from the middle" in d["r0"].reason
    assert d["r2"].action == "truncated"


def test_the_default_pipeline_works_offline_on_real_data() -> None:
    c = datasets.load("taubench")[0]
    strategy = get_strategy("pipeline")
    assert strategy.label == "pipeline"
    budget = COUNTER.count_messages(c.messages) // 2 + 500
    check(c, strategy.prune(c, budget, COUNTER), budget, COUNTER)


# -- functions --------------------------------------------------------------------------------


def keep_recent_and_system(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.role == "system"] + messages[-4:]


def test_a_function_becomes_a_strategy() -> None:
    c = agent_conversation()
    strategy = from_function(keep_recent_and_system)
    assert strategy.label == "keep_recent_and_system"
    pruned = strategy.prune(c, 10**6, COUNTER)
    assert ids(pruned.messages) == ["sys", "a5", "r5", "done", "last"]
    assert pruned.decisions[2].reason == "left out by keep_recent_and_system"


def test_function_results_are_checked_and_made_safe() -> None:
    c = agent_conversation()
    # cutting a tool pair in half is repaired by the fallback window
    pruned = from_function(lambda ms: [ms[0], ms[3], *ms[-2:]], name="half").prune(c, 10**6)
    assert ids(pruned.messages) == ["sys", "done", "last"]
    # dropping the newest user message cannot be repaired
    with pytest.raises(InvariantError, match=r"newest user message .* was dropped"):
        from_function(lambda ms: ms[:-1], name="lossy").prune(c, 10**6, COUNTER)
    # new messages are marked synthetic
    note = Message(role="assistant", content="(earlier steps omitted)")
    pruned = from_function(lambda ms: [ms[0], note, ms[-1]]).prune(c, 10**6, COUNTER)
    assert pruned.messages[1].is_synthetic and pruned.messages[1].id == note.id
    with pytest.raises(UsageError, match="not a Message"):
        from_function(lambda ms: ["text"]).prune(c, 10**6, COUNTER)  # type: ignore[list-item]
