"""Metrics on hand-built conversations whose right values are known by construction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from ctxlab import Budget, Conversation, Message, ToolCall, get_counter
from ctxlab.errors import UsageError
from ctxlab.lab.harness import compare
from ctxlab.lab.metrics import get_metric, names
from ctxlab.lab.metrics.text import content_words, normalise
from ctxlab.messages import Source
from ctxlab.strategies.base import BaseStrategy, Pruned
from ctxlab.tokens import TokenCounter
from ctxlab.usage import Usage

COUNTER = get_counter()


@dataclass(frozen=True, kw_only=True)
class KeepIds(BaseStrategy):
    """Sends the messages whose ids are listed (in order), plus optional synthetic ones."""

    name: ClassVar[str] = "keep_ids"
    ids: tuple[str, ...] = ()
    insert: tuple[tuple[int, str], ...] = ()  # (position, text) of synthetic messages

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        sent = [m for m in conversation.messages if m.id in self.ids]
        for pos, text in self.insert:
            synthetic = Message(role="system", content=text, meta={"synthetic": True})
            sent.insert(pos, synthetic)
        return _pruned(conversation, sent, budget, counter, self.label)


@dataclass(frozen=True, kw_only=True)
class LastN(BaseStrategy):
    """Sends the newest `n` messages."""

    name: ClassVar[str] = "last_n"
    n: int = 2

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        return _pruned(conversation, conversation.messages[-self.n :], budget, counter, self.label)


@dataclass(frozen=True, kw_only=True)
class Spender(BaseStrategy):
    """Sends everything and reports its own LLM calls: `spend` prompt tokens per probe."""

    name: ClassVar[str] = "spender"
    spend: int = 1000

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        usage = Usage(input_tokens=self.spend, output_tokens=self.spend // 10)
        return _pruned(conversation, conversation.messages, budget, counter, self.label, usage)


def _pruned(
    conv: Conversation,
    sent: Sequence[Message],
    budget: Budget,
    counter: TokenCounter,
    label: str,
    extra: Usage | None = None,
) -> Pruned:
    return Pruned(
        conversation=conv,
        messages=tuple(sent),
        tokens=counter.count_messages(sent),
        budget=budget,
        strategy=label,
        extra_usage=extra or Usage(),
    )


def _conv(texts: Sequence[str], **annotations: Any) -> Conversation:
    roles = ("user", "assistant")
    messages = [
        Message(role=roles[i % 2], content=t, id=f"D{i}", meta={"session": 1 + i // 2})
        for i, t in enumerate(texts)
    ]
    return Conversation(
        id="c", messages=tuple(messages), annotations=annotations, source=Source(dataset="t")
    )


def _run(conv: Conversation, strategy: Any, metrics: list[str], probes: Any = "end") -> Any:
    report = compare(conv, [strategy], [100_000], metrics=metrics, probes=probes, progress=False)
    return report.df


def test_registry_lists_every_metric_in_column_order() -> None:
    assert names() == [
        "input_tokens", "cumulative_input_tokens", "extra_input_tokens", "extra_output_tokens",
        "cost_usd", "cache_tokens", "compression", "prefix_stability", "evidence_recall",
        "answer_presence", "key_string_recall", "action_argument_recall",
        "dropped_content_coverage", "violations",
    ]  # fmt: skip
    for name in names():
        assert get_metric(name).name == name


def test_cost_metrics_follow_their_definitions() -> None:
    conv = _conv(["alpha beta", "gamma delta epsilon", "zeta", "eta theta"])
    df = _run(conv, LastN(n=2), ["input_tokens", "cumulative_input_tokens", "compression"], [2, 4])
    count = [COUNTER.count(m) for m in conv.messages]
    sent = [count[0] + count[1] + 3, count[2] + count[3] + 3]
    assert df["input_tokens"].tolist() == sent
    assert df["cumulative_input_tokens"].tolist() == [sent[0], sent[0] + sent[1]]
    assert df["compression"].iloc[0] == 0.0
    assert df["compression"].iloc[1] == pytest.approx(1 - sent[1] / (sum(count) + 3))
    assert df["extra_input_tokens"].isna().all()  # not asked for: not computed


def test_prefix_stability_counts_shared_leading_tokens() -> None:
    conv = _conv(["one two three", "four five", "six", "seven eight"])
    df = _run(conv, LastN(n=99), ["prefix_stability"], [2, 4])
    count = [COUNTER.count(m) for m in conv.messages]
    t2, t4 = count[0] + count[1] + 3, sum(count) + 3
    assert df["prefix_stability"].tolist() == [
        0.0,
        pytest.approx((count[0] + count[1]) / (t2 + t4)),
    ]


def test_prefix_stability_counts_a_partly_shared_message_token_by_token() -> None:
    conv = _conv(["the quick brown fox", "jumps", "over the lazy dog"])
    summary_a = "Summary: the user said the quick brown fox"
    summary_b = "Summary: the user said the quick brown fox jumps"
    first = KeepIds(ids=("D1",), insert=((0, summary_a),))
    second = KeepIds(ids=("D2",), insert=((0, summary_b),))
    pa = first.prune(conv.prefix(2), 10_000, COUNTER)
    pb = second.prune(conv, 10_000, COUNTER)
    from ctxlab.lab.metrics.base import Cell, Facts, Probe

    facts = Facts(conv, COUNTER)
    cell = Cell(
        facts=facts,
        strategy="x",
        budget=Budget(max_tokens=10_000),
        probes=(Probe(k=2, pruned=pa, facts=facts), Probe(k=3, pruned=pb, facts=facts)),
    )
    value = get_metric("prefix_stability").compute(cell)["prefix_stability"][1]
    # By hand: <start> system <sep> then the common tokens of the two summary texts.
    ea, eb = COUNTER.encode(summary_a), COUNTER.encode(summary_b)
    common = next(i for i, (x, y) in enumerate(zip([*ea, -1], eb, strict=False)) if x != y)
    shared = 2 + COUNTER.count_text("system") + common
    assert value == pytest.approx(shared / (pa.tokens + pb.tokens))


QUESTIONS = [
    {"question": "q1", "answer": "The Eiffel Tower!", "category": 4, "evidence": ["D0"]},
    {"question": "q2", "answer": "red kite", "category": 1, "evidence": ["D1", "D2"]},
    {"question": "q3", "answer": "x", "category": 5, "evidence": ["D0"]},  # adversarial
    {"question": "q4", "answer": "blue whale", "category": 2, "evidence": ["D3"]},
    {"question": "q5", "answer": "tower red", "category": 3, "evidence": []},  # end only
]
TEXTS = ["we saw the eiffel tower", "a red", "kite flew", "blue whale song"]


def test_evidence_recall_by_construction() -> None:
    conv = _conv(TEXTS, questions=QUESTIONS)
    df = _run(conv, KeepIds(ids=("D0", "D2")), ["evidence_recall"], [2, 3, 4])
    # k=2: only q1 applies (q2 needs D2): kept -> 1.0.
    # k=3: q1 (1.0) and q2 (D2 kept, D1 not: 0.5) -> 0.75; k=4: q1, q2, q4 (0.0) -> 0.5.
    assert df["evidence_recall"].tolist() == [1.0, 0.75, 0.5]
    assert df["evidence_questions"].tolist() == [1, 2, 3]
    assert df["evidence_recall_single_hop"].tolist() == [1.0, 1.0, 1.0]
    assert df["evidence_recall_multi_hop"].iloc[2] == 0.5
    assert df["evidence_recall_temporal"].iloc[2] == 0.0
    assert math.isnan(df["evidence_recall_temporal"].iloc[0])
    assert math.isnan(df["evidence_recall_open_domain"].iloc[2])  # q5 has no evidence


def test_questions_with_evidence_beyond_a_prefix_never_apply() -> None:
    # The prefix of 3 messages keeps every annotation: q4's evidence (D3) is cut off, and
    # q6's (D0 and D3) only partly. Neither may apply, nor shrink to the evidence left.
    q6 = {"question": "q6", "answer": "blue", "category": 4, "evidence": ["D0", "D3"]}
    six = [*QUESTIONS, q6]
    prefix = _conv(TEXTS, questions=six).prefix(3)
    df = _run(prefix, KeepIds(ids=("D2",)), ["evidence_recall", "answer_presence"], [2, 3])
    assert df["evidence_questions"].tolist() == [1, 2]  # q1; q1 and q2
    assert df["evidence_recall"].tolist() == [0.0, 0.25]
    assert math.isnan(df["evidence_recall_temporal"].iloc[1])  # q4 is not asked
    # At the prefix's end q1, q2 and q5 (no evidence: the end) apply; none is sent whole.
    assert df["answer_presence"].tolist() == [0.0, 0.0]
    assert df["answer_questions"].tolist() == [1, 3]  # q1; q1, q2 and q5
    whole = _run(prefix, LastN(n=99), ["answer_presence"], [3])
    # All three present ("tower red" straddles D0|D1); counting q4 ("blue whale", cut off)
    # would give 3 of 4, and q6 would be a fifth.
    assert whole["answer_presence"].tolist() == [1.0]


def test_answer_presence_normalises_and_reads_the_whole_context() -> None:
    conv = _conv(TEXTS, questions=QUESTIONS)
    df = _run(conv, LastN(n=99), ["answer_presence"], [1, 3, 4])
    # k=1: q1 present. k=3: q1, q2 ("red kite" straddles D1|D2) -> 1.0.
    # k=4 (end): q1, q2, q4 present; q5 "tower red" straddles D0|D1 -> 1.0.
    assert df["answer_presence"].tolist() == [1.0, 1.0, 1.0]
    dropped = _run(conv, KeepIds(ids=("D0", "D2", "D3")), ["answer_presence"], [4])
    # Without D1, "red kite" is gone; "tower kite" is not "tower red": q1, q4 of q1, q2, q4, q5.
    assert dropped["answer_presence"].tolist() == [0.5]


def test_answer_presence_finds_answers_made_by_new_junctions_and_summaries() -> None:
    questions = [
        {"question": "a", "answer": "tower kite", "category": 1, "evidence": ["D0"]},
        {"question": "b", "answer": "purple moon", "category": 1, "evidence": ["D0"]},
    ]
    conv = _conv(TEXTS, questions=questions)
    junction = _run(conv, KeepIds(ids=("D0", "D2")), ["answer_presence"], [3])
    assert junction["answer_presence"].tolist() == [0.5]  # "...eiffel tower" + "kite flew"
    summary = KeepIds(ids=("D2",), insert=((0, "Earlier: a Purple, moon."),))
    df = _run(conv, summary, ["answer_presence"], [3])
    assert df["answer_presence"].tolist() == [0.5]  # "purple moon" in the summary only


def test_normalise_matches_locomo() -> None:
    assert normalise("The  Eiffel-Tower, and a  cat!") == "eiffeltower cat"
    assert normalise("“Caroline’s” 7 May 2023") == "carolines 7 may 2023"
    assert content_words("The cat and the hat, again") == {"cat", "hat"}


def test_key_string_recall_uses_keys_needed_later() -> None:
    conv = _conv(
        [
            "open src/app.py please",
            "booking HAT170 confirmed",
            "ok",
            "fix src/app.py and HAT170 now",
        ]
    )
    df = _run(conv, KeepIds(ids=("D1", "D2", "D3")), ["key_string_recall"], [2, 3, 4])
    # F at k=2 and k=3 = {src/app.py, HAT170}; only HAT170 is kept. At the end F is empty.
    assert df["key_string_recall"].iloc[:2].tolist() == [0.5, 0.5]
    assert math.isnan(df["key_string_recall"].iloc[2])


def _tau_conversation() -> Conversation:
    call = ToolCall(id="c1", name="get_reservation", arguments='{"reservation_id": "ZFA04Y"}')
    messages = [
        Message(role="system", content="policy", id="s"),
        Message(role="user", content="my reservation is ZFA04Y, user mia_li_3668", id="u1"),
        Message(role="assistant", content="", tool_calls=(call,), id="a1"),
        Message(role="tool", content="reservation ZFA04Y economy", tool_call_id="c1", id="t1"),
        Message(role="user", content="cancel it please", id="u2"),
        Message(
            role="assistant",
            content="",
            tool_calls=(
                ToolCall(
                    id="c2",
                    name="cancel_reservation",
                    arguments='{"reservation_id": "ZFA04Y", "user_id": "mia_li_3668"}',
                ),
            ),
            id="a2",
        ),
    ]
    gold = [
        {
            "name": "cancel_reservation",
            "kwargs": {"reservation_id": "ZFA04Y", "user_id": "mia_li_3668", "x": "abc"},
        }
    ]
    return Conversation(id="tau", messages=tuple(messages), annotations={"gold_actions": gold})


def test_action_argument_recall_at_the_issuing_probe() -> None:
    conv = _tau_conversation()
    # "abc" is shorter than 4 characters; both others appeared before message a2 (k=5).
    full = _run(conv, LastN(n=99), ["action_argument_recall"], [2, 5])
    assert math.isnan(full["action_argument_recall"].iloc[0])
    assert full["action_argument_recall"].iloc[1] == 1.0
    # Keeping s, t1 and u2 leaves ZFA04Y (in the tool output) but not mia_li_3668.
    part = _run(conv, KeepIds(ids=("s", "t1", "u2")), ["action_argument_recall"], [5])
    assert part["action_argument_recall"].tolist() == [0.5]


def test_dropped_content_coverage() -> None:
    conv = _conv(["zebra giraffe lion", "hippo rhino", "done"])
    only_drop = _run(conv, KeepIds(ids=("D2",)), ["dropped_content_coverage"], [3])
    assert only_drop["dropped_content_coverage"].tolist() == [0.0]
    told = KeepIds(ids=("D2",), insert=((0, "They spoke of a zebra and a rhino."),))
    df = _run(conv, told, ["dropped_content_coverage"], [3])
    # Removed words: zebra giraffe lion hippo rhino; retold: zebra rhino ("spoke" is new).
    assert df["dropped_content_coverage"].tolist() == [pytest.approx(2 / 5)]
    nothing = _run(conv, LastN(n=99), ["dropped_content_coverage"], [3])
    assert math.isnan(nothing["dropped_content_coverage"].iloc[0])  # nothing removed: NaN


def test_metrics_that_do_not_apply_are_nan_never_zero() -> None:
    conv = _conv(["hello there", "hi"])
    df = _run(conv, LastN(n=1), list(names()))
    for col in ("evidence_recall", "answer_presence", "action_argument_recall", "cost_usd"):
        assert df[col].isna().all(), col
    assert (df["extra_input_tokens"] == 0).all()  # no LLM calls: a real zero


def test_cost_usd_prices_every_probe_and_the_prompt_cache() -> None:
    from ctxlab.providers.pricing import cost_usd, lookup
    from ctxlab.usage import Usage

    assert lookup("gpt-4o-mini") is not None
    conv = _conv(["word " * 800, "reply " * 400, "more " * 300, "end"])
    report = compare(
        conv, [LastN(n=99)], [100_000], metrics=["cost_usd", "prefix_stability"],
        probes=[2, 4], model="gpt-4o-mini", progress=False,
    )  # fmt: skip
    df = report.df
    sent = [COUNTER.count_messages(conv.messages[:2]), COUNTER.count_messages(conv.messages)]
    shared = [0, sum(COUNTER.count(m) for m in conv.messages[:2])]
    plain = [cost_usd(Usage(input_tokens=n), "gpt-4o-mini") for n in sent]
    # OpenAI's automatic cache: the shared prefix (over 1,024 tokens) read in 128-token steps
    price = lookup("gpt-4o-mini")
    assert price is not None and price.cached_input is not None and shared[1] >= 1024
    hit = shared[1] // 128 * 128
    cached = [plain[0], plain[1] - hit * (price.input - price.cached_input)]
    assert df["cost_usd"].tolist() == pytest.approx([plain[0], plain[0] + plain[1]])
    assert df["cost_usd_cached"].tolist() == pytest.approx([cached[0], cached[0] + cached[1]])
    assert df["cost_usd_cached"].iloc[1] < df["cost_usd"].iloc[1]


def test_cost_usd_prices_the_strategys_own_calls_at_the_summarizer_model() -> None:
    from ctxlab.providers.pricing import cost_usd

    conv = _conv(["word " * 800, "reply " * 400, "more " * 300, "end"])
    sent = [COUNTER.count_messages(conv.messages[:2]), COUNTER.count_messages(conv.messages)]
    own = Usage(input_tokens=1000, output_tokens=100)

    def bill(summarizer: str | None) -> list[float]:
        report = compare(
            conv, [Spender()], [100_000], metrics=["cost_usd", "extra_input_tokens"],
            probes=[2, 4], model="gpt-4o", summarizer_model=summarizer, progress=False,
        )  # fmt: skip
        assert report.meta["summarizer_model"] == (summarizer or "gpt-4o")
        return list(report.df["cost_usd"])

    requests = [cost_usd(Usage(input_tokens=n), "gpt-4o") for n in sent]
    for model in ("gpt-4o-mini", None):
        calls = cost_usd(own, model or "gpt-4o")
        expected = [requests[0] + calls, requests[0] + requests[1] + 2 * calls]
        assert bill(model) == pytest.approx(expected), model
    assert bill("gpt-4o-mini")[-1] < bill(None)[-1]
    with pytest.raises(UsageError, match="needs model="):
        compare(conv, [Spender()], [100_000], summarizer_model="gpt-4o-mini", progress=False)
