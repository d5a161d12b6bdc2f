"""A `Session` with a running summary resumes it from the store: summaries computed once.

Every store kind (memory, SQLite, a real redis-server) keeps the `summarize` walk beside the
messages, committed with each turn. These tests check that a resumed turn equals a fresh
prune of the same history, that the summarizer sees each message at most once over a whole
session (it saw the whole history again at every turn before), that a reopened store resumes,
and that a corrupted or foreign state is detected and recomputed, never trusted.
The conversation is LoCoMo's first sample (see `session_support.locomo_pairs`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis_fixture import StoreFactory
from session_support import locomo_pairs

from ctxlab.budget import Budget
from ctxlab.errors import ProviderHTTPError
from ctxlab.invariants import check
from ctxlab.live import sent_ids
from ctxlab.live.session import Session
from ctxlab.live.stores import SessionKey
from ctxlab.messages import Message
from ctxlab.providers.scripted import ScriptedProvider
from ctxlab.strategies import get_strategy
from ctxlab.strategies._summary_state import fingerprint, seal
from ctxlab.strategies.base import Pruned
from ctxlab.summarizers import ExtractiveSummarizer, SummaryResult
from ctxlab.tokens import TokenCounter, get_counter

BUDGET = Budget(max_tokens=800)
STRATEGIES = ("summarize", "summary_window")


@dataclass(frozen=True)
class CountingSummarizer:
    """The extractive summarizer, recording how many messages each call was given."""

    inner: ExtractiveSummarizer = field(default_factory=ExtractiveSummarizer)
    calls: list[int] = field(default_factory=list, repr=False, compare=False)

    def summarize(
        self,
        previous_summary: str | None,
        new_messages: Sequence[Message],
        max_tokens: int,
        counter: TokenCounter,
    ) -> SummaryResult:
        self.calls.append(len(new_messages))
        return self.inner.summarize(previous_summary, new_messages, max_tokens, counter)


@pytest.fixture(scope="module")
def pairs(data_dir: Path) -> list[tuple[str, str]]:
    return locomo_pairs(data_dir)[:60]


def run(session: Session, pairs: Sequence[tuple[str, str]]) -> list[Pruned]:
    out = []
    for text, _ in pairs:
        session.send(text)
        assert session.last_pruned is not None
        out.append(session.last_pruned)
    return out


def same(a: Pruned, b: Pruned) -> None:
    assert [m.id for m in a.messages] == [m.id for m in b.messages]
    assert a.messages == b.messages
    assert a.decisions == b.decisions
    assert a.tokens == b.tokens


def stored_state(session: Session) -> dict[str, Any]:
    text = session.store.load_state(session.key)
    assert text is not None
    data: dict[str, Any] = json.loads(text)
    return data


@pytest.mark.parametrize("name", STRATEGIES)
def test_each_turn_resumes_and_equals_a_fresh_prune(
    stores: StoreFactory, pairs: list[tuple[str, str]], name: str
) -> None:
    strategy, counter = get_strategy(name), get_counter()
    provider = ScriptedProvider([reply for _, reply in pairs])
    session = Session(provider, strategy, BUDGET, store=stores.open(), system="Be brief.")
    for i, pruned in enumerate(run(session, pairs)):
        fresh = strategy.prune(pruned.conversation, BUDGET, counter)
        same(pruned, fresh)
        check(pruned.conversation, pruned, BUDGET, counter)
        assert pruned.tokens <= BUDGET.available
        assert provider.calls[i].messages == pruned.messages
    replies = [m for m in session.history if m.role == "assistant"]
    # Every turn after the first walked on from the state the previous one stored.
    assert [r.meta["resumed_at"] for r in replies] == [0] + [2 * i for i in range(1, 60)]
    assert not any("state_rejected" in r.meta for r in replies)
    exported = session.export()
    summaries = exported.annotations["summaries"]
    sent = [r.meta["summary_id"] for r in replies if "summary_id" in r.meta]
    assert len(sent) > 30 and set(sent) == set(summaries)
    for r in replies:  # the id each turn sent names the summary text it sent
        if "summary_id" in r.meta:
            assert r.meta["summary_id"] in sent_ids(session.history, r)
    last = session.last_pruned
    assert last is not None and last.messages[1].text == summaries[sent[-1]]


@pytest.mark.parametrize("name", STRATEGIES)
def test_the_summarizer_sees_each_message_once(
    stores: StoreFactory, pairs: list[tuple[str, str]], name: str
) -> None:
    summarizer = CountingSummarizer()
    strategy = get_strategy(name, summarizer=summarizer)
    session = Session(
        ScriptedProvider([r for _, r in pairs]), strategy, BUDGET, store=stores.open()
    )
    run(session, pairs)
    state = stored_state(session)
    folded = sum(n for fold, n in state["fold_no"] if fold > 0)
    # One call per fold (and per re-compaction) over the whole session, each message once:
    # before, every turn re-walked the history, calling again for every earlier fold.
    assert len(summarizer.calls) == state["versions"] >= state["folds"] >= 5
    assert sum(summarizer.calls) == folded <= 2 * len(pairs)
    recomputing = CountingSummarizer()
    again = get_strategy(name, summarizer=recomputing)
    for pruned in session_prunes(session):
        again.prune(pruned, BUDGET, get_counter())
    assert len(recomputing.calls) > 10 * len(summarizer.calls)  # what the old turns cost


def session_prunes(session: Session) -> list[Any]:
    """The history each turn pruned (the stored messages up to that turn's user message)."""
    history = session.history
    return [history[: i + 1] for i, m in enumerate(history) if m.role == "user"]


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"], indirect=True)
def test_a_reopened_store_resumes_the_summary(
    stores: StoreFactory, pairs: list[tuple[str, str]]
) -> None:
    replies = [r for _, r in pairs]
    strategy = get_strategy("summarize", summarizer=CountingSummarizer())
    first = Session(
        ScriptedProvider(replies), strategy, BUDGET, store=stores.open(), session_id="kept"
    )
    run(first, pairs[:40])
    before = stored_state(first)
    # A restarted process: a new store object on the same file or database, a new strategy.
    summarizer = CountingSummarizer()
    strategy = get_strategy("summarize", summarizer=summarizer)
    second = Session(
        ScriptedProvider(replies[40:]), strategy, BUDGET, store=stores.open(), session_id="kept"
    )
    assert second.store is not first.store and stored_state(second) == before
    pruned = run(second, pairs[40:])
    replies_meta = [m.meta for m in second.history[-40:] if m.role == "assistant"]
    assert replies_meta[0]["resumed_at"] == before["k"] == 79  # 39 turns + a user message
    assert not any("state_rejected" in meta for meta in replies_meta)
    after = stored_state(second)
    folded = sum(n for fold, n in after["fold_no"] if fold > 0)
    folded_before = sum(n for fold, n in before["fold_no"] if fold > 0)
    assert after["folds"] > before["folds"]
    assert sum(summarizer.calls) == folded - folded_before  # nothing summarized twice
    fresh = get_strategy("summarize").prune(pruned[-1].conversation, BUDGET, get_counter())
    same(pruned[-1], fresh)


def _corrupt(data: dict[str, Any]) -> list[tuple[str, dict[str, Any] | str]]:
    """Ways a stored state can be damaged, each with what it damages."""

    def edit(**changes: Any) -> dict[str, Any]:
        return {**data, **changes}

    first_unit = data["unfolded"][0]
    runs = data["fold_no"]
    return [
        ("not JSON", '{"format": '),
        ("not an object", "[1, 2]"),
        ("one character changed", json.dumps(data).replace('"live": ', '"live": 1')),
        ("another format", edit(format="ctxlab.summary_walk/0")),
        ("made for another session", edit(**{"for": "0" * 64})),
        ("walked too far", edit(k=data["k"] + 500)),
        ("another history", edit(prefix="f" * 64)),
        ("summary text changed", edit(text=(data["text"] or "") + " and a forged fact")),
        ("live tokens", edit(live=data["live"] + 1)),
        (
            "unit cost",
            edit(unfolded=[[first_unit[0], first_unit[1] + 5, "ok"], *data["unfolded"][1:]]),
        ),
        (
            "unit state",
            edit(unfolded=[[first_unit[0], first_unit[1], "maybe"], *data["unfolded"][1:]]),
        ),
        ("fold numbers", edit(fold_no=[[runs[0][0], runs[0][1] + 1], *runs[1:]])),
        ("future fold", edit(fold_no=[[data["folds"] + 1, runs[0][1]], *runs[1:]])),
        ("message twice", edit(unfolded=[*data["unfolded"], first_unit])),
        ("bad pin", edit(system=data["k"])),
        ("usage", edit(usage=[-1, 0, 0, 0, 0, False])),
        ("bad reasons", edit(bad={"x": 1})),
        ("wrong types", edit(folds="3")),
    ]


def test_a_sound_state_copied_to_another_session_is_resumed_there(
    pairs: list[tuple[str, str]],
) -> None:
    # The control for the damage cases below: the same copy, undamaged, is trusted.
    strategy, counter = get_strategy("summarize"), get_counter()
    good = Session(ScriptedProvider([r for _, r in pairs]), strategy, BUDGET, store="memory")
    run(good, pairs[:30])
    data = stored_state(good)
    data["for"] = fingerprint(strategy, BUDGET, counter, "copy")
    good.store.append_turn(SessionKey(id="copy"), good.history, state=seal(data))
    copy = Session(ScriptedProvider(["ok"]), strategy, BUDGET, store=good.store, session_id="copy")
    copy.send(pairs[30][0])
    assert copy.history[-1].meta["resumed_at"] == data["k"] == 59
    assert copy.last_pruned is not None
    same(copy.last_pruned, strategy.prune(copy.last_pruned.conversation, BUDGET, counter))


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_damaged_state_is_detected_and_recomputed(
    stores: StoreFactory,
    pairs: list[tuple[str, str]],
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = stores.open()
    strategy, counter = get_strategy(name), get_counter()
    good = Session(
        ScriptedProvider([r for _, r in pairs]), strategy, BUDGET, store=store, session_id="good"
    )
    run(good, pairs[:30])
    history = good.history
    for n, (what, damaged) in enumerate(_corrupt(stored_state(good))):
        key = SessionKey(id=f"bad{n}")
        if isinstance(damaged, dict) and damaged["for"] != "0" * 64:  # sound but for the damage
            damaged["for"] = fingerprint(strategy, BUDGET, counter, key.id)
        text = damaged if isinstance(damaged, str) else seal(damaged)
        store.append_turn(key, history, state=text)
        session = Session(
            ScriptedProvider(["ok", "fine"]), strategy, BUDGET, store=store, session_id=key.id
        )
        with caplog.at_level(logging.WARNING, logger="ctxlab.live"):
            session.send(pairs[30][0])
        reply = session.history[-1]
        assert reply.meta["resumed_at"] == 0, what
        assert reply.meta["state_rejected"], what
        assert "summarized the history again" in caplog.text
        pruned = session.last_pruned
        assert pruned is not None
        same(pruned, strategy.prune(pruned.conversation, BUDGET, counter))
        # The recomputed state replaced the damaged one: the next turn resumes it.
        assert json.loads(store.load_state(key) or "{}")["k"] == len(pruned.conversation.messages)
        session.send(pairs[31][0])
        assert session.history[-1].meta["resumed_at"] == len(pruned.conversation.messages)


def test_a_state_from_another_budget_or_system_prompt_is_not_trusted(
    pairs: list[tuple[str, str]],
) -> None:
    session = Session(
        ScriptedProvider([r for _, r in pairs]),
        "summarize",
        BUDGET,
        store="memory",
        session_id="s",
        system="Be brief.",
    )
    run(session, pairs[:30])
    store = session.store
    wider = Session(
        ScriptedProvider(["a"]), "summarize", 900, store=store, session_id="s", system="Be brief."
    )
    wider.send("Another budget.")
    meta = wider.history[-1].meta
    assert meta["resumed_at"] == 0 and "another strategy, budget" in meta["state_rejected"]
    other = Session(
        ScriptedProvider(["b"]), "summarize", 900, store=store, session_id="s", system="Be verbose."
    )
    other.send("Another system prompt.")
    meta = other.history[-1].meta
    assert meta["resumed_at"] == 0 and meta["state_rejected"] == "the history changed"
    same_again = Session(
        ScriptedProvider(["c"]), "summarize", 900, store=store, session_id="s", system="Be verbose."
    )
    same_again.send("Back to normal.")
    assert same_again.history[-1].meta["resumed_at"] > 60


def test_a_failed_turn_stores_neither_messages_nor_state(
    stores: StoreFactory, pairs: list[tuple[str, str]]
) -> None:
    store = stores.open()
    session = Session(
        ScriptedProvider([r for _, r in pairs[:20]]),
        "summarize",
        BUDGET,
        store=store,
        session_id="f",
    )
    run(session, pairs[:20])
    state, history = store.load_state(session.key), session.history
    failing = Session(
        ScriptedProvider([ProviderHTTPError("p", 500, "down")]),
        "summarize",
        BUDGET,
        store=store,
        session_id="f",
    )
    with pytest.raises(ProviderHTTPError):
        failing.send(pairs[20][0])
    assert store.load_state(session.key) == state and session.history == history


def test_stores_keep_the_state_beside_the_messages(stores: StoreFactory) -> None:
    store = stores.open()
    key = SessionKey(owner="alice", id="st")
    assert store.load_state(key) is None
    store.append_turn(key, [Message(role="user", content="1")], state='{"v": 1}')
    store.append_turn(key, [Message(role="assistant", content="2")])  # no state: kept
    assert store.load_state(key) == '{"v": 1}'
    store.append_turn(key, [Message(role="user", content="3")], state='{"v": 2}')
    assert stores.open().load_state(key) == '{"v": 2}'
    with store.begin_turn(key) as held:
        assert held.state == '{"v": 2}' and len(held.history) == 3
        held.commit([Message(role="assistant", content="4")], state='{"v": 3}')
    assert store.load_state(key) == '{"v": 3}' and len(store.load(key)) == 4
    assert store.delete(key) and store.load_state(key) is None
