"""The `summarize` strategy and the extractive summarizer, on bundled recordings."""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from ctxlab import datasets
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.invariants import check
from ctxlab.keys import key_strings
from ctxlab.messages import Conversation, Message
from ctxlab.strategies import get_strategy
from ctxlab.strategies.summarize import SUMMARY_HEADER, Summarize, SummaryWindow
from ctxlab.summarizers import ExtractiveSummarizer, SummaryResult
from ctxlab.tokens import TokenCounter, get_counter
from ctxlab.usage import Usage

COUNTER = get_counter()


def _locomo(i: int = 0) -> Conversation:
    return datasets.load("locomo")[i]


def _session_ends(conv: Conversation) -> list[int]:
    msgs = conv.messages
    return [
        k
        for k in range(1, len(msgs) + 1)
        if k == len(msgs) or msgs[k].meta["session"] != msgs[k - 1].meta["session"]
    ]


def _summary(pruned_messages: Sequence[Message]) -> Message:
    (summary,) = [m for m in pruned_messages if m.is_synthetic]
    return summary


def _norm(text: object) -> str:
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    return " " + " ".join(w for w in words if w not in ("a", "an", "the", "and")) + " "


@dataclass
class RecordingSummarizer:
    """A stand-in for an LLM summarizer: keeps first words, bills tokens, records calls."""

    calls: list[tuple[str | None, tuple[str, ...], int]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def summarize(
        self,
        previous_summary: str | None,
        new_messages: Sequence[Message],
        max_tokens: int,
        counter: TokenCounter,
    ) -> SummaryResult:
        self.calls.append((previous_summary, tuple(m.id for m in new_messages), max_tokens))
        lines = (previous_summary or "").splitlines()
        lines += [f"[{m.role}] " + " ".join(m.text.split()[:6]) for m in new_messages]
        while lines and counter.count_text("\n".join(lines)) > max_tokens:
            lines.pop(0)
        text = "\n".join(lines)
        self.outputs.append(text)
        usage = Usage(
            input_tokens=counter.count_messages(new_messages)
            + counter.count_text(previous_summary or ""),
            output_tokens=counter.count_text(text),
            requests=1,
        )
        return SummaryResult(text=text, usage=usage)

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


# -- the strategy on real conversations ---------------------------------------------------------


def test_locomo_summary_keeps_key_strings_and_answers_of_folded_turns() -> None:
    """At 4k, the summary carries the key strings and many answers of the turns it replaced."""
    folded_keys = kept_keys = with_summary = without_summary = 0
    for conv in datasets.load("locomo"):
        pruned = Summarize().prune(conv, 4000, COUNTER)
        check(conv, pruned, 4000, COUNTER)
        summary = _summary(pruned.messages)
        ids = set(summary.meta["summary_of"])
        folded = [m for m in conv.messages if m.id in ids]
        keys = set().union(*(key_strings(m.text) for m in folded))
        folded_keys += len(keys)
        kept_keys += len(keys & key_strings(summary.text))
        dia = {m.meta["dia_id"] for m in folded}
        questions = [
            q
            for q in conv.annotations["questions"]
            if q["category"] != 5 and q["evidence"] and set(q["evidence"]) <= dia
        ]
        full = _norm(" ".join(m.text for m in pruned.messages))
        bare = _norm(" ".join(m.text for m in pruned.messages if not m.is_synthetic))
        with_summary += sum(_norm(q["answer"]) in full for q in questions)
        without_summary += sum(_norm(q["answer"]) in bare for q in questions)
    # Measured on the 7 bundled conversations: 14 of 16 key strings; 96 answers vs 37.
    assert folded_keys >= 10 and kept_keys >= 0.75 * folded_keys
    assert with_summary >= 1.5 * without_summary and with_summary >= 60


def test_summary_message_contract_on_a_tool_calling_run() -> None:
    conv = next(c for c in datasets.load("taubench") if c.id == "2-1")
    pruned = Summarize().prune(conv, 2500, COUNTER)
    check(conv, pruned, 2500, COUNTER)
    assert pruned.messages[0] == conv.messages[0]  # the system prompt, then the summary
    summary = pruned.messages[1]
    assert summary.is_synthetic and summary.role == "user"
    assert summary.text.startswith(SUMMARY_HEADER)
    assert summary.id not in {m.id for m in conv.messages}
    assert "dia_id" not in summary.meta
    summarized = [d for d in pruned.decisions if d.action == "summarized"]
    assert summarized and all(d.into == summary.id for d in summarized)
    assert tuple(d.message_id for d in summarized) == summary.meta["summary_of"]
    # Calls and their results are folded together.
    folded = {d.message_id for d in summarized}
    for m in conv.messages:
        if m.tool_calls and m.id in folded:
            results = [r for r in conv.messages if r.tool_call_id in {c.id for c in m.tool_calls}]
            assert all(r.id in folded for r in results)


def test_summary_role_can_be_system() -> None:
    conv = next(c for c in datasets.load("taubench") if c.id == "2-1")
    pruned = Summarize(role="system").prune(conv, 2500, COUNTER)
    check(conv, pruned, 2500, COUNTER)
    assert pruned.messages[1].role == "system" and pruned.messages[1].is_synthetic


def test_replay_equals_prune_on_locomo_prefixes() -> None:
    conv = _locomo(1)
    probes = sorted({*_session_ends(conv), *range(0, len(conv.messages) + 1, 23)})
    strategy = Summarize()
    replayed = list(strategy.replay(conv, probes, 2000, COUNTER))
    for k, got in zip(probes, replayed, strict=True):
        want = strategy.prune(conv.prefix(k), 2000, COUNTER)
        assert got == want, k
        assert got.decisions == want.decisions, k
        check(conv.prefix(k), got, 2000, COUNTER)


@pytest.mark.parametrize("name", ["summarize", "summary_window"])
def test_replay_equals_prune_on_every_prefix_of_a_tool_run(name: str) -> None:
    conv = next(c for c in datasets.load("taubench") if c.id == "2-1")
    strategy = get_strategy(name)
    probes = list(range(len(conv.messages) + 1))
    for k, got in zip(probes, strategy.replay(conv, probes, 1800, COUNTER), strict=True):
        want = strategy.prune(conv.prefix(k), 1800, COUNTER)
        assert got == want and got.decisions == want.decisions, k
        check(conv.prefix(k), got, 1800, COUNTER)


def test_input_is_never_mutated() -> None:
    conv = next(c for c in datasets.load("sweagent") if c.id.startswith("pydicom"))
    before = copy.deepcopy(conv)
    pruned = Summarize().prune(conv, 3000, COUNTER)
    list(Summarize().replay(conv, range(len(conv.messages) + 1), 3000, COUNTER))
    assert conv == before
    originals = {m.id: m for m in conv.messages}
    assert all(m == originals[m.id] for m in pruned.messages if not m.is_synthetic)


def test_extractive_usage_is_zero_and_the_summary_counts_inside_the_budget() -> None:
    conv = _locomo(2)
    probes = _session_ends(conv)
    for result in Summarize().replay(conv, probes, 3000, COUNTER):
        assert result.extra_usage == Usage()
        assert result.tokens == COUNTER.count_messages(result.messages) <= 3000
    summary = _summary(result.messages)
    without = COUNTER.count_messages([m for m in result.messages if m is not summary])
    assert result.tokens == without + COUNTER.count(summary)


def test_llm_usage_is_reported_at_the_probe_that_made_the_calls() -> None:
    conv = _locomo(3)
    probes = list(range(len(conv.messages) + 1))
    summarizer = RecordingSummarizer()
    results = list(Summarize(summarizer=summarizer).replay(conv, probes, 3000, COUNTER))
    calls = len(summarizer.calls)
    assert calls >= 5
    assert sum(r.extra_usage.requests for r in results) == calls
    total = Usage()
    for r in results:
        total = total + r.extra_usage
    cold = Summarize(summarizer=RecordingSummarizer()).prune(conv, 3000, COUNTER)
    assert cold.extra_usage == total  # a cold prune makes every call itself
    assert cold.messages == results[-1].messages
    # Each message is folded once; the summary given back is the one returned before.
    folded = [i for _, ids, _ in summarizer.calls for i in ids]
    assert len(folded) == len(set(folded))
    for returned, (prev, _, _) in zip(summarizer.outputs, summarizer.calls[1:], strict=False):
        assert prev == returned


def test_summary_is_extended_not_rewritten() -> None:
    conv = _locomo(0)
    probes = _session_ends(conv)
    texts = [
        _summary(r.messages).text.splitlines()
        for r in Summarize().replay(conv, probes, 4000, COUNTER)
        if any(m.is_synthetic for m in r.messages)
    ]
    new_lines = 0
    for before, after in itertools.pairwise(texts):
        old = [line for line in after if line in before]
        # Lines that stay keep their order; the rest are new sentences, not rewrites.
        assert old == [line for line in before if line in old]
        new_lines += len(after) - len(old)
    assert new_lines > 0


def test_folding_goes_down_to_the_target_and_keeps_the_last_messages() -> None:
    conv = _locomo(4)
    strategy = Summarize(keep_last=6)
    probes = list(range(len(conv.messages) + 1))
    covered: tuple[str, ...] = ()
    folds = 0
    for k, r in zip(probes, strategy.replay(conv, probes, 4000, COUNTER), strict=True):
        synthetic = [m for m in r.messages if m.is_synthetic]
        now = synthetic[0].meta["summary_of"] if synthetic else ()
        if len(now) > len(covered):
            folds += 1
            assert r.tokens <= 0.7 * 4000, k
        covered = now
        tail = conv.messages[max(0, k - 6) : k]
        assert all(m in r.messages for m in tail), k
    assert folds >= 5


def test_summary_window_folds_a_little_at_a_time() -> None:
    conv = _locomo(5)
    probes = _session_ends(conv)
    batch, window = RecordingSummarizer(), RecordingSummarizer()
    for r in Summarize(summarizer=batch).replay(conv, probes, 4000, COUNTER):
        check(conv.prefix(len(r.conversation.messages)), r, 4000, COUNTER)
    for r in SummaryWindow(summarizer=window).replay(conv, probes, 4000, COUNTER):
        assert r.tokens <= 0.85 * 4000
    assert len(window.calls) > 2 * len(batch.calls)
    assert get_strategy("summary_window").label == "summary_window"
    assert Summarize(keep_last=2).label == "summarize(keep_last=2)"


def test_budget_unreachable_only_when_system_and_newest_user_do_not_fit() -> None:
    conv = next(c for c in datasets.load("taubench") if c.id == "2-1")
    system = conv.messages[0]
    user = [m for m in conv.messages if m.role == "user"][-1]
    need = COUNTER.count_messages([system, user])
    with pytest.raises(BudgetUnreachableError) as info:
        Summarize().prune(conv, need - 1, COUNTER)
    assert info.value.required == need
    pruned = Summarize().prune(conv, need, COUNTER)
    check(conv, pruned, need, COUNTER)
    assert pruned.messages == (system, user)


def test_no_room_for_a_summary_drops_instead() -> None:
    conv = _locomo(0).prefix(60)
    user = [m for m in conv.messages if m.role == "user"][-1]
    budget = COUNTER.count_messages([user]) + 20
    pruned = Summarize().prune(conv, budget, COUNTER)
    check(conv, pruned, budget, COUNTER)
    assert not any(m.is_synthetic for m in pruned.messages)
    assert pruned.count("summarized") == 0 and pruned.count("dropped") > 0


def test_parameters_are_validated() -> None:
    for bad in ({"keep_last": -1}, {"target": 0.0}, {"trigger": 0.5, "target": 0.7}):
        with pytest.raises(UsageError):
            Summarize(**bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Summarize(summary_share=0.8)
    with pytest.raises(UsageError):
        Summarize(role="assistant")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        get_strategy("summarize", budget=3)


def test_replay_over_a_locomo_conversation_answers_every_session_end() -> None:
    conv = max(datasets.load("locomo"), key=lambda c: len(c.messages))
    strategy = Summarize(summarizer=ExtractiveSummarizer(key_weight=0.4999))  # cold cache
    results = list(strategy.replay(conv, _session_ends(conv), 4000, COUNTER))
    assert len(results) == len(_session_ends(conv))
    assert all(r.budget_ok for r in results)


# -- the extractive summarizer ------------------------------------------------------------------


def test_extractive_summary_fits_and_is_deterministic() -> None:
    conv = _locomo(0)
    summarizer = ExtractiveSummarizer()
    for limit in (30, 120, 600):
        result = summarizer.summarize(None, conv.messages[:80], limit, COUNTER)
        assert 0 < COUNTER.count_text(result.text) <= limit
        assert result.usage == Usage() and result.usage.requests == 0
        again = ExtractiveSummarizer().summarize(None, conv.messages[:80], limit, COUNTER)
        assert again.text == result.text
    assert summarizer.summarize(None, conv.messages[:80], 0, COUNTER).text == ""


def test_extractive_lines_name_speakers_and_dates() -> None:
    conv = _locomo(0)
    text = ExtractiveSummarizer().summarize(None, conv.messages[:40], 400, COUNTER).text
    lines = text.splitlines()
    assert lines[0] == "(2023-05-08)"
    assert all(re.fullmatch(r"\(\d{4}-\d{2}-\d{2}\)|\[(Caroline|Melanie)\] .+", x) for x in lines)
    assert not any(x.endswith(("Thanks, Mel!", "Hey Mel!")) for x in lines)  # no small talk


def test_extractive_extends_then_compacts_the_previous_summary() -> None:
    conv = _locomo(0)
    s = ExtractiveSummarizer()
    first = s.summarize(None, conv.messages[:30], 300, COUNTER).text
    roomy = s.summarize(first, conv.messages[30:60], 2000, COUNTER).text
    assert roomy.startswith(first)  # room enough: old lines verbatim, new ones after
    tight = s.summarize(roomy, [], 150, COUNTER).text
    assert COUNTER.count_text(tight) <= 150
    assert set(tight.splitlines()) <= set(roomy.splitlines())


def test_extractive_keeps_paths_and_calls_of_an_agent_run() -> None:
    conv = next(c for c in datasets.load("sweagent") if c.id.startswith("pydicom"))
    text = ExtractiveSummarizer().summarize(None, conv.messages[2:20], 500, COUNTER).text
    assert "pixel_data_handlers/numpy_handler.py" in text
    assert "[tool]" in text or "[keys]" in text
