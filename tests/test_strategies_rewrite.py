"""Behaviour of mask_tool_outputs and truncate_long: rewrite in place, then fit the budget."""

from __future__ import annotations

import pytest
from strategy_helpers import agent_conversation, ids

from ctxlab import datasets
from ctxlab.errors import UsageError
from ctxlab.invariants import check
from ctxlab.strategies import get_strategy
from ctxlab.strategies.mask_tool_outputs import MaskToolOutputs, placeholder_text
from ctxlab.strategies.truncate_long import TruncateLong
from ctxlab.tokens import get_counter

COUNTER = get_counter()
HUGE = 10**7


@pytest.fixture(scope="module")
def taubench():
    return max(datasets.load("taubench"), key=lambda c: sum(m.role == "tool" for m in c))


@pytest.fixture(scope="module")
def sweagent():
    # observations sent as user messages tagged tool_output
    return next(c for c in datasets.load("sweagent") if c.id == "i_got_id_demo")


# -- mask_tool_outputs ------------------------------------------------------------------------


def test_masking_keeps_every_assistant_message_verbatim(taubench) -> None:
    pruned = MaskToolOutputs(keep_last=1).prune(taubench, HUGE, COUNTER)
    check(taubench, pruned, HUGE, COUNTER)
    sent = {m.id: m for m in pruned.messages}
    for m in taubench.messages:
        if not m.is_tool_output:
            assert sent[m.id] == m
    assert pruned.tokens < COUNTER.count_messages(taubench.messages)


def test_masking_replaces_old_outputs_with_a_placeholder_naming_tool_and_size(taubench) -> None:
    pruned = MaskToolOutputs(keep_last=2).prune(taubench, HUGE, COUNTER)
    outputs = [i for i, m in enumerate(taubench.messages) if m.role == "tool"]
    for i in outputs[-2:]:
        assert pruned.decisions[i].action == "kept"
    masked = [d for d in pruned.decisions if d.action == "masked"]
    assert masked and all(d.into == d.message_id for d in masked)
    for d in masked:
        original = taubench[d.index]
        placeholder = next(m for m in pruned.messages if m.id == d.message_id)
        assert placeholder.tool_call_id == original.tool_call_id
        assert placeholder.text.startswith(f"[{original.name} output omitted")
        assert COUNTER.count(placeholder) < COUNTER.count(original)
    for i in outputs[:-2]:  # old outputs are left alone only when a placeholder is not shorter
        if pruned.decisions[i].action == "kept":
            text = placeholder_text(taubench[i].name or "", 999, 99)
            assert COUNTER.count(taubench[i]) <= COUNTER.count(taubench[i].replace(content=text))


def test_masking_handles_observations_sent_as_user_messages(sweagent) -> None:
    pruned = MaskToolOutputs(keep_last=1).prune(sweagent, HUGE, COUNTER)
    observations = [i for i, m in enumerate(sweagent.messages) if m.is_tool_output]
    actions = [pruned.decisions[i].action for i in observations]
    assert actions[-1] == "kept" and actions.count("masked") >= len(observations) // 2
    placeholders = [m for m in pruned.messages if "output omitted" in m.text]
    assert placeholders and all(m.role == "user" for m in placeholders)
    assert {m.text.split()[0] for m in placeholders} >= {"[curl"}  # the command that ran


def test_masking_then_the_fallback_enforces_the_budget(taubench) -> None:
    budget = COUNTER.count_messages(taubench.messages[:1]) + 1500
    pruned = get_strategy("mask_tool_outputs").prune(taubench, budget, COUNTER)
    check(taubench, pruned, budget, COUNTER)
    assert pruned.count("dropped") > 0
    unfenced = MaskToolOutputs(fallback=None)
    assert unfenced.label == "mask_tool_outputs(fallback=None)"
    loose = unfenced.prune(taubench, budget, COUNTER)
    assert loose.count("dropped") == 0 and not loose.budget_ok
    check(taubench, loose, budget, COUNTER, enforce_budget=False)
    with pytest.raises(UsageError):
        MaskToolOutputs(keep_last=-1)


# -- truncate_long ----------------------------------------------------------------------------


def test_truncation_cuts_the_middle_and_says_how_much(sweagent) -> None:
    cap = 300
    pruned = TruncateLong(max_tokens_per_message=cap).prune(sweagent, HUGE, COUNTER)
    check(sweagent, pruned, HUGE, COUNTER)
    cut = [d for d in pruned.decisions if d.action == "truncated"]
    assert cut
    for d in cut:
        original, sent = sweagent[d.index], next(m for m in pruned.messages if m.id == d.into)
        assert COUNTER.count(original) > cap >= COUNTER.count(sent)
        head, marker_and_tail = sent.text.split("\n[... ", 1)
        assert original.text.startswith(head)
        removed = int(marker_and_tail.split(" tokens removed")[0])
        assert removed > COUNTER.count(original) - cap - 40
        assert original.text.endswith(marker_and_tail.split("message ...]\n", 1)[1])


def test_truncation_never_touches_the_system_prompt_or_the_newest_user_message() -> None:
    c = agent_conversation(turns=2, output_words=400)
    long = "word " * 2000
    c = c.with_messages(
        [c[0].replace(content=long), *c.messages[1:-1], c[-1].replace(content=long)]
    )
    pruned = TruncateLong(max_tokens_per_message=100).prune(c, HUGE, COUNTER)
    assert pruned.messages[0] == c[0] and pruned.messages[-1] == c[-1]
    assert [d.action for d in pruned.decisions if d.message_id in ("r0", "r1")] == ["truncated"] * 2
    assert ids(pruned.messages) == ids(c.messages)
