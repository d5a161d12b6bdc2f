"""`Session`: one behaviour suite over memory, SQLite and a real redis-server.

The conversation is real: the user turns and the replies of LoCoMo's first sample (Caroline
speaks to the session, the scripted provider answers with Melanie's recorded lines).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import session_support
from redis_fixture import StoreFactory

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, ProviderHTTPError, UsageError
from ctxlab.live import sent_ids
from ctxlab.live.session import Session
from ctxlab.messages import Conversation, Message, ToolCall
from ctxlab.providers.base import Completion, TextDelta
from ctxlab.providers.scripted import ScriptedProvider
from ctxlab.strategies import get_strategy
from ctxlab.tokens import get_counter

BUDGET = Budget(max_tokens=600)


@pytest.fixture(scope="module")
def locomo_pairs(data_dir: Path) -> list[tuple[str, str]]:
    """(user text, reply text) pairs from LoCoMo sample 0, in dialogue order."""
    return session_support.locomo_pairs(data_dir)


def check_consistent(history: Sequence[Message], budget: Budget = BUDGET) -> None:
    """Every stored reply's ``sent`` ids equal the strategy's prune of the history before it."""
    strategy, counter = get_strategy("token_window"), get_counter()
    head = list(history[:1]) if history and history[0].role == "system" else []
    turns = list(history[len(head) :])
    assert [m.role for m in turns] == ["user", "assistant"] * (len(turns) // 2)
    for i in range(0, len(turns), 2):
        prefix = Conversation(id="check", messages=(*head, *turns[: i + 1]))
        expected = strategy.prune(prefix, budget, counter)
        assert sent_ids(history, turns[i + 1]) == [m.id for m in expected.messages]


def test_fifty_turns_send_what_the_strategy_prunes(
    stores: StoreFactory, locomo_pairs: list[tuple[str, str]]
) -> None:
    pairs = locomo_pairs[:50]
    assert len(pairs) == 50
    provider = ScriptedProvider([reply for _, reply in pairs])
    strategy = get_strategy("token_window")
    session = Session(provider, strategy, BUDGET, store=stores.open(), system="Be kind.")
    for i, (text, reply) in enumerate(pairs):
        before = session.history
        completion = session.send(text)
        assert completion.text == reply
        sent = provider.calls[i].messages
        # What the provider received is exactly the strategy's prune of the stored history.
        stored_user = session.history[-2]
        expected = strategy.prune(
            Conversation(id=session.session_id, messages=(*before, stored_user)), BUDGET
        )
        assert sent == expected.messages
        assert session.last_pruned is not None and session.last_pruned.messages == sent
    history = session.history
    assert len(history) == 101 and history[0].text == "Be kind."
    assert [m.text for m in history[1::2]] == [t for t, _ in pairs]
    assert [m.text for m in history[2::2]] == [r for _, r in pairs]
    # The budget bit: late turns sent far fewer messages than the history held.
    assert len(provider.calls[-1].messages) < 30
    assert all(c.messages[0].text == "Be kind." for c in provider.calls)
    check_consistent(history)


def test_reply_metadata(stores: StoreFactory) -> None:
    provider = ScriptedProvider(["Fine, thanks."])
    session = Session(provider, "token_window", BUDGET, store=stores.open())
    completion = session.send("How are you?")
    reply = session.history[-1]
    assert reply.id and reply.timestamp is not None and reply.text == "Fine, thanks."
    meta = reply.meta
    assert meta["model"] == "scripted" and meta["finish_reason"] == "stop"
    assert meta["usage"]["input_tokens"] == completion.usage.input_tokens > 0
    assert meta["usage"]["output_tokens"] == completion.usage.output_tokens > 0
    assert meta["tokens"] == get_counter().count(reply)
    assert sent_ids(session.history, reply) == [m.id for m in provider.calls[0].messages]
    assert meta["sent_tokens"] == get_counter().count_messages(provider.calls[0].messages)
    assert meta["strategy"] == "token_window" and meta["budget"] == 600
    assert meta["latency_s"] >= 0


def test_restart_continues_the_conversation(
    stores: StoreFactory, locomo_pairs: list[tuple[str, str]]
) -> None:
    first = Session(ScriptedProvider(), "token_window", BUDGET, store=stores.open(), system="S")
    for text, _ in locomo_pairs[:10]:
        first.send(text)
    before = first.history
    sid = first.session_id
    if stores.kind != "memory":
        first.store.close()  # the process "ends"; a new store object reopens the data
    provider = ScriptedProvider()
    second = Session(provider, "token_window", BUDGET, store=stores.open(), session_id=sid)
    assert second.history == before
    second.send("Do you remember what we talked about?")
    assert provider.calls[0].messages[0].text == "S"  # the stored system message is kept
    assert provider.calls[0].messages[-2] == before[-1]  # the earlier turns were sent
    assert len(second.history) == len(before) + 2
    check_consistent(second.history)


def test_failed_provider_call_stores_nothing(stores: StoreFactory) -> None:
    failure = ProviderHTTPError("scripted", 500, '{"error": "boom"}', "boom")
    provider = ScriptedProvider(["one", failure, "three"])
    session = Session(provider, "token_window", BUDGET, store=stores.open())
    session.send("first")
    before = session.history
    with pytest.raises(ProviderHTTPError):
        session.send("second")
    assert session.history == before
    assert session.send("third").text == "three"
    assert [m.text for m in session.history] == ["first", "one", "third", "three"]


def test_budget_unreachable_stores_nothing(stores: StoreFactory) -> None:
    session = Session(ScriptedProvider(), "token_window", 20, store=stores.open())
    with pytest.raises(BudgetUnreachableError):
        session.send("word " * 100)
    assert session.history == ()


class BrokenStream(ScriptedProvider):
    """Streams two words, then fails as a dropped connection would."""

    def stream(self, messages: Any, **kwargs: Any) -> Iterator[Any]:
        yield TextDelta(text="half ")
        yield TextDelta(text="a reply")
        raise ProviderHTTPError("scripted", 502, "", "upstream went away")


def test_stream_stores_only_a_complete_reply(stores: StoreFactory) -> None:
    store = stores.open()
    session = Session(ScriptedProvider(), "token_window", BUDGET, store=store, session_id="s")
    assert list(session.stream("hello there friend")) == ["hello", " there", " friend"]
    assert [m.text for m in session.history] == ["hello there friend"] * 2
    before = session.history
    broken = Session(BrokenStream(), "token_window", BUDGET, store=store, session_id="s")
    with pytest.raises(ProviderHTTPError):
        list(broken.stream("again"))
    assert session.history == before
    abandoned = session.stream("never finished")
    assert next(abandoned) == "never"
    abandoned.close()  # the consumer walks away: nothing stored, the lock is released
    assert session.history == before
    assert session.send("next").text == "next"


def test_async_stream_and_turn(stores: StoreFactory) -> None:
    session = Session(ScriptedProvider(), "token_window", BUDGET, store=stores.open())

    async def run() -> list[Any]:
        items = [item async for item in session.astream_turn("one two")]
        text = [x async for x in session.astream("three")]
        return [*items, text]

    *deltas, turn, text = asyncio.run(run())
    assert deltas == ["one", " two"] and text == ["three"]
    assert turn.reply == session.history[1] and turn.stored[0].text == "one two"


def test_two_sessions_in_one_store_never_mix(stores: StoreFactory) -> None:
    store = stores.open()
    a = Session(ScriptedProvider(), "token_window", BUDGET, store=store, system="A")
    b = Session(ScriptedProvider(), "token_window", BUDGET, store=store, system="B")
    other_owner = Session(
        ScriptedProvider(), "token_window", BUDGET, store=store, session_id=a.session_id, owner="x"
    )
    for i in range(5):
        a.send(f"a{i}")
        b.send(f"b{i}")
        other_owner.send(f"x{i}")
    assert [m.text for m in a.history] == ["A"] + [f"a{i}" for i in range(5) for _ in (0, 1)]
    assert [m.text for m in b.history] == ["B"] + [f"b{i}" for i in range(5) for _ in (0, 1)]
    assert [m.text for m in other_owner.history] == [f"x{i}" for i in range(5) for _ in (0, 1)]
    assert {i.key.id for i in store.list_sessions("default")} == {a.session_id, b.session_id}
    assert [i.key.owner for i in store.list_sessions("x")] == ["x"]


class SlowEcho(ScriptedProvider):
    """Echoes, after yielding to the event loop (or sleeping): turns would interleave."""

    async def acomplete(self, messages: Any, **kwargs: Any) -> Completion:
        await asyncio.sleep(0.002)
        return self.complete(messages, **kwargs)

    def complete(self, messages: Any, **kwargs: Any) -> Completion:
        time.sleep(0.001)
        return super().complete(messages, **kwargs)


def test_concurrent_asend_is_serialised(stores: StoreFactory) -> None:
    store = stores.open()
    one = Session(SlowEcho(), "token_window", BUDGET, store=store, session_id="busy")
    # A second object on the same session: only the store's lock stands between them.
    two = Session(SlowEcho(), "token_window", BUDGET, store=stores.open(), session_id="busy")

    async def run() -> list[Completion]:
        calls = [(one if i % 2 else two).asend(f"message {i}") for i in range(20)]
        return await asyncio.gather(*calls)

    replies = asyncio.run(run())
    assert [c.text for c in replies] == [f"message {i}" for i in range(20)]
    history = one.history
    assert len(history) == 40
    assert sorted(m.text for m in history[::2]) == sorted(f"message {i}" for i in range(20))
    assert all(u.text == r.text for u, r in zip(history[::2], history[1::2], strict=True))
    check_consistent(history)


def test_concurrent_threads_are_serialised(stores: StoreFactory) -> None:
    def worker(n: int) -> None:
        s = Session(SlowEcho(), "token_window", BUDGET, store=stores.open(), session_id="t")
        for i in range(5):
            s.send(f"thread {n} turn {i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = Session(
        ScriptedProvider(), "token_window", BUDGET, store=stores.open(), session_id="t"
    ).history
    assert len(history) == 40
    check_consistent(history)
    for n in range(4):  # each thread's turns kept their own order
        own = [m.text for m in history[::2] if m.text.startswith(f"thread {n} ")]
        assert own == [f"thread {n} turn {i}" for i in range(5)]


def test_system_prompt_changes(stores: StoreFactory) -> None:
    store = stores.open()
    provider = ScriptedProvider()
    s = Session(provider, "token_window", BUDGET, store=store, session_id="s", system="old")
    s.send("hi")
    s2 = Session(provider, "token_window", BUDGET, store=store, session_id="s", system="new")
    assert s2.history[0].text == "new"  # in effect from the next turn
    s2.send("hello")
    assert provider.calls[-1].messages[0].text == "new"
    s3 = Session(provider, "token_window", BUDGET, store=store, session_id="s")
    s3.send([Message(role="system", content="newest"), Message(role="user", content="yo")])
    assert [m.text for m in s3.history] == ["newest", "hi", "hi", "hello", "hello", "yo", "yo"]
    with pytest.raises(UsageError, match="user"):
        s3.send(Message(role="system", content="only a system message"))


def test_tool_round_trip_and_clashing_ids(stores: StoreFactory) -> None:
    call = ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}')
    provider = ScriptedProvider([Message(role="assistant", tool_calls=(call,)), "It is sunny."])
    session = Session(provider, "token_window", BUDGET, store=stores.open())
    first = session.send(Message(role="user", content="Weather in Oslo?", id="m0"))
    assert first.tool_calls == (call,) and session.history[-1].tool_calls == (call,)
    result = Message(role="tool", content="sunny", tool_call_id="c1", id="m0")  # id reused
    assert session.send(result).text == "It is sunny."
    ids = [m.id for m in session.history]
    assert len(ids) == len(set(ids)) == 4 and session.history[2].tool_call_id == "c1"


def test_reset_keeps_the_system_prompt(stores: StoreFactory) -> None:
    session = Session(ScriptedProvider(), "token_window", BUDGET, store=stores.open(), system="S")
    session.send("hi")
    session.reset()
    assert [m.text for m in session.history] == ["S"] and session.last_pruned is None
    session.send("again")
    assert [m.text for m in session.history] == ["S", "again", "again"]
    asyncio.run(session.areset())
    assert [m.text for m in session.history] == ["S"]


def test_export_is_a_comparable_conversation(stores: StoreFactory) -> None:
    session = Session(ScriptedProvider(), "token_window", BUDGET, store=stores.open(), system="S")
    for i in range(3):
        session.send(f"turn {i}")
    conv = session.export()
    assert conv.id == session.session_id and conv.source.dataset == "session"
    assert conv.messages == session.history and len(conv) == 7
    assert conv.annotations["strategy"] == "token_window"
    assert asyncio.run(session.aexport()) == conv


def test_export_feeds_compare_and_save(tmp_path: Path, locomo_pairs: list[tuple[str, str]]) -> None:
    from ctxlab.formats import load, save
    from ctxlab.lab.harness import compare

    pairs = locomo_pairs[:12]
    provider = ScriptedProvider([reply for _, reply in pairs])
    session = Session(provider, "token_window", BUDGET, store="memory", system="Be kind.")
    for text, _ in pairs:
        session.send(text)
    conv = session.export()
    assert load(save([conv], tmp_path / "session.jsonl")) == [conv]
    report = compare(conv, ["token_window", "keep_all"], [300], probes="end", progress=False)
    rows = report.df.set_index("strategy")
    assert set(rows["dataset"]) == {"session"} and set(rows["conversation_id"]) == {conv.id}
    full = get_counter().count_messages(conv.messages)
    assert rows.loc["keep_all", "input_tokens"] == full
    assert rows.loc["token_window", "input_tokens"] <= 300 < full


def test_session_from_names_and_default_store(_ctxlab_home: Path) -> None:
    with Session("scripted", "token_window", 4000) as session:
        assert session.send("hello").text == "hello"
        assert session.store.url == f"sqlite:///{_ctxlab_home / 'sessions.db'}"
        sid = session.session_id
    with Session("scripted", "token_window", 4000, session_id=sid) as again:
        assert [m.text for m in again.history] == ["hello", "hello"]
    with pytest.raises(UsageError, match="unknown strategy"):
        Session("scripted", "no_such_strategy", 4000, store="memory")


def test_sending_inside_an_unfinished_stream_fails_fast() -> None:
    session = Session(ScriptedProvider(), "token_window", BUDGET, store="memory")
    stream = session.stream("one two three")
    assert next(stream) == "one"
    with pytest.raises(UsageError, match="finish or close"):
        session.send("interrupting")
    assert list(stream) == [" two", " three"]

    async def run() -> None:
        async for _ in session.astream("four five"):
            with pytest.raises(UsageError, match="finish or close"):
                await session.asend("interrupting")

    asyncio.run(run())
    assert [m.text for m in session.history] == ["one two three"] * 2 + ["four five"] * 2


def test_sqlite_turn_takes_two_write_transactions(tmp_path: Path) -> None:
    from ctxlab.live.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.db")
    s = Session(ScriptedProvider(["a", "b"]), "token_window", BUDGET, store=store)
    s.send("first")  # opens this thread's connection
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    s.send("second")
    begins = [x.split()[:2] for x in statements if x.upper().startswith("BEGIN")]
    # lock + load in one, store the turn + unlock in the other; no separate read or release
    assert begins == [["BEGIN", "IMMEDIATE"], ["BEGIN", "IMMEDIATE"]]
    assert [m.text for m in s.history] == ["first", "a", "second", "b"]
    assert store._acquire_lease(s.key, "next", 30), "the turn left its session locked"
    store.close()


def test_plain_store_protocol_still_works() -> None:
    from ctxlab.live.stores import MemoryStore

    class Plain:  # a Store by protocol only, no BaseStore: lock, load, append step by step
        def __init__(self) -> None:
            self._inner = MemoryStore()
            self.url = "plain"

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    store = Plain()
    for name in ("lock", "alock", "load", "aload", "append_turn", "aappend_turn"):
        setattr(store, name, getattr(store._inner, name))
    for name in ("list_sessions", "alist_sessions", "delete", "adelete", "close"):
        setattr(store, name, getattr(store._inner, name))
    s = Session(ScriptedProvider(["a", "b"]), "token_window", BUDGET, store=store)  # type: ignore[arg-type]
    s.send("one")
    asyncio.run(s.asend("two"))
    assert [m.text for m in s.history] == ["one", "a", "two", "b"]
