"""A turn reads only what was stored since: decoded histories kept by the SQLite and Redis
stores, and replies that record what they sent in space that does not grow with the session."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from redis_fixture import StoreFactory
from session_support import locomo_pairs

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.live import sent_ids
from ctxlab.live.session import Session
from ctxlab.live.stores import SessionKey, _history
from ctxlab.live.stores.sqlite import SQLiteStore
from ctxlab.messages import Message
from ctxlab.providers.scripted import ScriptedProvider
from ctxlab.strategies import get_strategy

KEY = SessionKey(owner="alice", id="s1")


@pytest.fixture(params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """The stores that persist and keep decoded histories (memory holds messages as they are)."""
    kind: str = request.param
    return kind


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every stored text the history cache decodes, in order."""
    seen: list[str] = []
    real = _history.decode

    def counting(text: str) -> Message:
        seen.append(text)
        return real.__wrapped__(text)  # bypass the text cache: count real decodes

    monkeypatch.setattr(_history, "decode", counting)
    return seen


def pairs_as_messages(data_dir: Path, n: int) -> list[list[Message]]:
    return [
        [Message(role="user", content=u), Message(role="assistant", content=a)]
        for u, a in locomo_pairs(data_dir)[:n]
    ]


def test_a_turn_decodes_only_the_messages_stored_since(
    stores: StoreFactory, data_dir: Path, decoded: list[str]
) -> None:
    store = stores.open()
    turns = pairs_as_messages(data_dir, 30)
    system = Message(role="system", content="Be kind.")
    store.append_turn(KEY, turns[0], system=system)
    assert store.load(KEY) == [system, *turns[0]]
    for i, turn in enumerate(turns[1:], start=1):
        decoded.clear()
        store.append_turn(KEY, turn)
        with store.begin_turn(KEY) as held:
            assert held.history == [system, *(m for t in turns[: i + 1] for m in t)]
        assert len(decoded) == 2  # the two new messages, not the 2i before them
    # A new store object (a restarted process) decodes everything once, then only news.
    again = stores.open()
    decoded.clear()
    assert len(again.load(KEY)) == 61 and len(decoded) == 61
    decoded.clear()
    assert len(again.load(KEY)) == 61 and decoded == []


def test_another_writer_and_a_new_system_message_are_seen(
    stores: StoreFactory, data_dir: Path
) -> None:
    turns = pairs_as_messages(data_dir, 6)
    mine, theirs = stores.open(), stores.open()
    mine.append_turn(KEY, turns[0], system=Message(role="system", content="A"))
    assert len(mine.load(KEY)) == 3
    theirs.append_turn(KEY, turns[1])  # another process appends: the cached prefix grows
    assert mine.load(KEY)[1:] == [*turns[0], *turns[1]]
    theirs.append_turn(KEY, turns[2], system=Message(role="system", content="B"))
    loaded = mine.load(KEY)
    assert loaded[0].text == "B" and loaded[1:] == [m for t in turns[:3] for m in t]


def test_a_deleted_and_recreated_session_is_never_read_from_the_old_one(
    stores: StoreFactory, data_dir: Path
) -> None:
    turns = pairs_as_messages(data_dir, 8)
    mine, theirs = stores.open(), stores.open()
    for t in turns[:2]:
        mine.append_turn(KEY, t)
    assert len(mine.load(KEY)) == 4
    # Another process deletes the session and stores more turns than it had under the key:
    # counts alone would take the old messages for a prefix of the new ones.
    assert theirs.delete(KEY)
    for t in turns[2:5]:
        theirs.append_turn(KEY, t)
    assert mine.load(KEY) == [m for t in turns[2:5] for m in t]
    with mine.begin_turn(KEY) as held:  # under the lease, in one round trip, alike
        assert held.history == [m for t in turns[2:5] for m in t]


def test_the_cache_is_bounded_and_eviction_only_costs_a_full_read(
    stores: StoreFactory, data_dir: Path
) -> None:
    turns = pairs_as_messages(data_dir, 40)
    keys = [SessionKey(owner="o", id=f"s{i}") for i in range(4)]
    store = stores.open(cache_chars=6_000)
    for turn in turns:
        for key in keys:
            store.append_turn(key, turn)
            with store.begin_turn(key) as held:
                stored = len(held.history)
            assert stored == 2 * (turns.index(turn) + 1)
    assert store._histories._chars <= 6_000
    for key in keys:
        assert store.load(key) == [m for t in turns for m in t]


def test_a_version_2_file_gains_epochs_and_loads_the_same(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE ctxlab_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    from ctxlab.live.stores.sqlite import _MIGRATIONS

    for version, statements in enumerate(_MIGRATIONS[:2], start=1):
        for statement in statements:
            raw.execute(statement)
        raw.execute("INSERT INTO ctxlab_migrations VALUES (?, 0)", (version,))
    body = '{"role":"user","content":"from an older ctxlab","id":"u1"}'
    raw.execute("INSERT INTO sessions VALUES ('alice', 's1', NULL, 0, 0, 1, NULL)")
    raw.execute("INSERT INTO messages VALUES ('alice', 's1', 0, ?)", (body,))
    raw.close()
    store = SQLiteStore(path)
    assert [m.text for m in store.load(KEY)] == ["from an older ctxlab"]
    store.append_turn(KEY, pairs_as_messages(data_dir, 1)[0])
    assert len(store.load(KEY)) == 3
    store.close()
    epochs = sqlite3.connect(path).execute("SELECT epoch FROM sessions").fetchall()
    assert len(epochs) == 1 and len(epochs[0][0]) == 32


def test_replies_record_runs_whose_size_does_not_grow(tmp_path: Path, data_dir: Path) -> None:
    budget = Budget(max_tokens=600)
    strategy = get_strategy("token_window")
    session = Session(
        ScriptedProvider(cycle=True),
        strategy,
        budget,
        store=SQLiteStore(tmp_path / "s.db"),
        system="Be kind.",
    )
    sizes = []
    for user, _ in locomo_pairs(data_dir)[:80]:
        turn = session.turn(user)
        sent = turn.reply.meta["sent"]
        sizes.append(len(sent))
        # the system message alone, then one run of the latest messages
        assert sent[0] == session.history[0].id and len(sent) == 2
        assert sent_ids(session.history, turn.reply) == [m.id for m in turn.pruned.messages]
    assert max(sizes) == 2
    history = session.history
    lengths = [len(m.meta["sent"]) for m in history if m.role == "assistant"]
    assert lengths == sizes
    session.close()


def test_sent_ids_names_what_it_cannot_expand(tmp_path: Path, data_dir: Path) -> None:
    session = Session(ScriptedProvider(cycle=True), "token_window", 4000, store="memory")
    for user, _ in locomo_pairs(data_dir)[:3]:
        session.send(user)
    history = session.history
    with pytest.raises(UsageError, match="records no 'sent'"):
        sent_ids(history, history[0])
    with pytest.raises(UsageError, match="does not hold"):
        sent_ids(history[2:], history[-1])  # a run starting before the slice


@pytest.mark.parametrize("sent", ["msg_abc", 42, [["a", "b", "c"]], [7], [{"first": "a"}], [b"ab"]])
def test_sent_ids_refuses_a_malformed_record(data_dir: Path, sent: object) -> None:
    session = Session(ScriptedProvider(cycle=True), "token_window", 4000, store="memory")
    for user, _ in locomo_pairs(data_dir)[:2]:
        session.send(user)
    history = session.history
    edited = history[-1].replace(meta={**history[-1].meta, "sent": sent})
    with pytest.raises(UsageError, match=edited.id):
        sent_ids(history, edited)


def test_concurrent_turns_and_readers_only_ever_see_prefixes(stores: StoreFactory) -> None:
    # Writers append whole turns under the lease while readers load without it, all on two
    # store objects (two processes' worth of caches) sharing the data: every history a reader
    # or a turn saw must be a prefix of the final one, and nothing is lost or doubled.
    a, b = stores.open(), stores.open()
    keys = [SessionKey(owner="o", id="x"), SessionKey(owner="o", id="y")]
    seen: list[tuple[SessionKey, list[str]]] = []
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            store = (a, b)[w % 2]
            for i in range(15):
                key = keys[i % 2]
                with store.begin_turn(key) as held:
                    seen.append((key, [m.id for m in held.history]))
                    held.commit([Message(role="user", content=f"w{w} t{i}", id=f"w{w}-{i}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader(r: int) -> None:
        try:
            store = (a, b)[r % 2]
            for i in range(40):
                key = keys[i % 2]
                seen.append((key, [m.id for m in store.load(key)]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    final = {key: [m.id for m in a.load(key)] for key in keys}
    assert final == {key: [m.id for m in b.load(key)] for key in keys}
    assert sorted(final[keys[0]] + final[keys[1]]) == sorted(
        f"w{w}-{i}" for w in range(6) for i in range(15)
    )
    for key, ids in seen:
        assert ids == final[key][: len(ids)]
