"""Question probes on the bundled LoCoMo conversations: rows, metrics, and their strategies."""

from __future__ import annotations

import numpy as np
import pytest
from strategy_helpers import built

import ctxlab
from ctxlab import Budget, Message, datasets
from ctxlab.errors import BudgetUnreachableError, UsageError
from ctxlab.invariants import check
from ctxlab.lab._questions import applicable_questions, branch_results, question_message
from ctxlab.strategies import default_names, get_strategy, names, peer_names
from ctxlab.tokens import get_counter

COUNTER = get_counter()
LOCOMO = datasets.load("locomo")
CONV = LOCOMO[0]


def _asked(conv, q):
    return conv.with_messages((*conv.messages, question_message(conv, q)))


def test_applicable_questions_follow_the_evidence_recall_rule() -> None:
    for conv in LOCOMO:
        ids = {m.id for m in conv.messages}
        chosen = set(applicable_questions(conv))
        for q, item in enumerate(conv.annotations["questions"]):
            ev = item.get("evidence") or []
            expected = (
                int(item["category"]) in (1, 2, 3, 4) and bool(ev) and all(e in ids for e in ev)
            )
            assert (q in chosen) == expected
    total = sum(len(applicable_questions(c)) for c in LOCOMO)
    assert total == 1101  # of 1,428 QA items: category 5 and unresolvable evidence left out


def test_question_rows_carry_index_category_and_their_own_question() -> None:
    report = ctxlab.compare(CONV, ["token_window"], budgets=[2000], probes="questions")
    df = report.df
    qs = applicable_questions(CONV)
    assert list(df["question_index"]) == list(qs)
    items = CONV.annotations["questions"]
    assert list(df["category"]) == [int(items[q]["category"]) for q in qs]
    assert (df["probe"] == len(CONV.messages)).all()
    assert (df["evidence_questions"] == 1).all()  # each row measures its own question
    # The question is in the request and in the budget: tokens_before grows by its count.
    q0 = qs[0]
    whole = COUNTER.count_messages([*CONV.messages, question_message(CONV, q0)])
    assert df["tokens_before"].iloc[0] == whole
    assert (df["input_tokens"] <= 2000).all()


def test_token_window_recall_equals_an_independent_recount() -> None:
    budget = 2000
    report = ctxlab.compare(CONV, ["token_window"], budgets=[budget], probes="questions")
    for row in report.df.itertuples():
        item = CONV.annotations["questions"][row.question_index]
        # The question, then the newest turns while they fit (LoCoMo has no system message).
        used = 3 + COUNTER.count(Message(role="user", content=item["question"]))
        kept: set[str] = set()
        for m in reversed(CONV.messages):
            if used + COUNTER.count(m) > budget:
                break
            used += COUNTER.count(m)
            kept.add(m.id)
        expected = np.mean([e in kept for e in item["evidence"]])
        assert row.evidence_recall == pytest.approx(expected)


def test_evidence_oracle_keeps_the_evidence_whenever_it_fits() -> None:
    oracle = get_strategy("evidence_oracle")
    by_id = {m.id: m for m in CONV.messages}
    for q in applicable_questions(CONV)[:60]:
        conv = _asked(CONV, q)
        evidence = CONV.annotations["questions"][q]["evidence"]
        need = COUNTER.count_messages([conv.messages[-1], *(by_id[e] for e in evidence)])
        for budget in (need, need + 500):
            pruned = oracle.prune(conv, budget, COUNTER)
            assert set(evidence) <= {m.id for m in pruned.messages}
            check(conv, pruned, budget, COUNTER)


def test_retrieve_keeps_most_evidence_at_2000_tokens() -> None:
    report = ctxlab.compare(
        LOCOMO, ["token_window", "retrieve"], budgets=[2000], probes="questions", progress=False
    )
    recall = report.df.groupby("strategy")["evidence_recall"].mean()
    assert recall["retrieve"] >= 0.6
    assert recall["retrieve"] > 4 * recall["token_window"]


def test_answer_presence_does_not_count_the_question_itself() -> None:
    # A question whose gold answer is written in the question: only the context can hold it.
    conv = CONV.with_messages(CONV.messages[:2])
    item = {"question": "Is the answer blue umbrella?", "answer": "blue umbrella",
            "category": 4, "evidence": [conv.messages[0].id]}  # fmt: skip
    conv = ctxlab.Conversation(
        id="t", messages=conv.messages, annotations={"questions": [item]}, source=CONV.source
    )
    report = ctxlab.compare(conv, ["token_window"], budgets=[4000], probes="questions")
    assert report.df["answer_presence"].iloc[0] == 0.0
    assert report.df["evidence_recall"].iloc[0] == 1.0


def test_datasets_without_questions_are_named_in_the_error() -> None:
    with pytest.raises(UsageError, match="'taubench'"):
        ctxlab.compare("taubench", ["token_window"], budgets=[1000], probes="questions")


def test_an_oracle_on_a_conversation_without_questions_gives_rows_that_say_why() -> None:
    conv = datasets.load("sweagent")[0]
    report = ctxlab.compare(conv, ["evidence_oracle", "token_window"], budgets=[4000])
    oracle = report.df[report.df["strategy"] == "evidence_oracle"]
    assert oracle["note"].str.contains("oracle").all() and oracle["input_tokens"].isna().all()
    assert (report.df.loc[report.df["strategy"] == "token_window", "note"] == "").all()
    assert "evidence_oracle" not in default_names() and "retrieve" in default_names()


@pytest.mark.parametrize("name", names())
def test_branches_equal_pruning_each_request(name: str) -> None:
    """What question probes use (shared work across questions) equals plain prune()."""
    strategy = built(name)
    qs = applicable_questions(CONV)[::40]
    asked = [question_message(CONV, q) for q in qs]
    budgets = [Budget(max_tokens=b) for b in (20, 600, 2000, 8000)]
    got = branch_results(strategy, CONV, asked, budgets, COUNTER)
    for b, budget in enumerate(budgets):
        for j, message in enumerate(asked):
            conv = CONV.with_messages((*CONV.messages, message))
            try:
                want = strategy.prune(conv, budget, COUNTER)
            except BudgetUnreachableError:
                assert got[b][j] is None
                continue
            result = got[b][j]
            assert result is not None
            assert result.messages == want.messages and result.tokens == want.tokens
            assert result.decisions == want.decisions
            if name not in peer_names():  # peers promise nothing: the violations metric
                check(conv, result, budget, COUNTER)


def test_importance_ranks_the_question_evidence_above_unrelated_turns() -> None:
    """Its relevance term reads the question: evidence turns score well above the others."""
    importance = get_strategy("importance")
    scores: dict[tuple[bool, bool], list[float]] = {}
    for q in applicable_questions(CONV)[:80]:
        evidence = set(CONV.annotations["questions"][q]["evidence"])
        for own in (True, False):
            # The same turns, asked their own question, or another conversation's question.
            asked = question_message(CONV, q) if own else question_message(LOCOMO[3], q % 50)
            conv = CONV.with_messages((*CONV.messages, asked))
            decisions = importance.prune(conv, 1000, COUNTER).decisions
            for m, d in zip(CONV.messages, decisions, strict=False):
                scores.setdefault((own, m.id in evidence), []).append(float(d.score))
    mean = {key: np.mean(v) for key, v in scores.items()}
    assert mean[True, True] > 1.5 * mean[True, False]  # evidence above unrelated turns
    assert mean[True, True] > 1.3 * mean[False, True]  # because of the question asked


def test_retrieve_decisions_give_score_rank_and_the_recent_window() -> None:
    conv = _asked(CONV, applicable_questions(CONV)[0])
    pruned = get_strategy("retrieve").prune(conv, 2000, COUNTER)
    reasons = [d.reason for d in pruned.decisions]
    retrieved = [d for d in pruned.decisions if d.reason.startswith("retrieved: score")]
    assert retrieved and all(d.score is not None and d.score > 0 for d in retrieved)
    assert "rank 1" in " ".join(reasons)
    assert "recent window" in reasons
    assert reasons[-1] == "pinned: newest user message (the query)"
    kept = [m.id for m in pruned.messages]
    assert kept == sorted(kept, key=[m.id for m in conv.messages].index)  # original order


def test_retrieve_takes_any_embedder_and_labels_the_relevance() -> None:
    calls: list[int] = []

    def letters(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.array([[t.count("a") + 1.0, t.count("e") + 1.0] for t in texts])

    strategy = get_strategy("retrieve", embedder=letters)
    assert strategy.relevance == "bm25+letters" and "embedder=" in strategy.label
    conv = _asked(CONV, applicable_questions(CONV)[0])
    pruned = strategy.prune(conv, 1500, COUNTER)
    check(conv, pruned, 1500, COUNTER)
    assert any("cosine" in d.reason for d in pruned.decisions)
    strategy.prune(conv, 3000, COUNTER)
    assert calls[1:] == []  # the second request embeds nothing new: cached by content
    with pytest.raises(UsageError, match="unknown embedder"):
        get_strategy("retrieve", embedder="word2vec")


def test_minilm_embeds_offline_and_a_second_run_reads_the_disk_cache(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctxlab.scoring import embeddings

    monkeypatch.setenv("CTXLAB_HOME", str(tmp_path))
    model = embeddings.MiniLM()
    first = embeddings.CachedEmbedder(model, name="minilm-test", disk=True)
    texts = ["I adopted a puppy last week", "I got a new dog", "the stock market fell"]
    v = first(texts)
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.5 > 0.1 > v[0] @ v[2]  # related sentences are close, others not
    assert (tmp_path / "embeddings" / "minilm-test.sqlite").is_file()

    def refuse(texts: list[str]) -> np.ndarray:
        raise AssertionError(f"embedded again: {texts}")

    second = embeddings.CachedEmbedder(refuse, name="minilm-test", disk=True)
    assert np.array_equal(second(texts), v)  # a fresh process would embed nothing


def test_hybrid_retrieval_keeps_the_invariants_on_a_conversation(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CTXLAB_HOME", str(tmp_path))
    conv = LOCOMO[1]
    qs = applicable_questions(conv)[:5]
    strategy = get_strategy("retrieve", embedder="minilm")
    assert strategy.label == "retrieve(embedder='minilm')"
    asked = [question_message(conv, q) for q in qs]
    results = branch_results(strategy, conv, asked, [Budget(max_tokens=2000)], COUNTER)[0]
    for message, pruned in zip(asked, results, strict=True):
        assert pruned is not None
        check(conv.with_messages((*conv.messages, message)), pruned, 2000, COUNTER)
        assert any("cosine" in d.reason for d in pruned.decisions)


def test_an_embedder_returning_the_wrong_shape_is_a_usage_error() -> None:
    def broken(texts: list[str]) -> np.ndarray:
        return np.ones((1, 3))  # one row, whatever it is given

    conv = _asked(CONV, applicable_questions(CONV)[0])
    with pytest.raises(UsageError, match="one row per text"):
        get_strategy("retrieve", embedder=broken).prune(conv, 2000, COUNTER)
