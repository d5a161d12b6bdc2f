"""The session stores: one behaviour suite over memory, SQLite and a real redis-server."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from redis_fixture import StoreFactory

from ctxlab.errors import ConfigurationError, MissingDependencyError, UsageError
from ctxlab.live.stores import MemoryStore, SessionBusyError, SessionKey, Store, open_store
from ctxlab.live.stores.sqlite import SCHEMA_VERSION, SQLiteStore
from ctxlab.messages import ImagePart, Message, TextPart, ToolCall

KEY = SessionKey(owner="alice", id="s1")
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


def rich_turn() -> list[Message]:
    """Messages using every field a store must keep."""
    call = ToolCall(id="call_1", name="lookup", arguments='{"q": "naïve café"}')
    return [
        Message(
            role="user",
            content=(TextPart(text="what is this?"), ImagePart(url="data:,x", detail="low")),
            name="alice",
            id="u1",
            timestamp=WHEN,
            meta={"speaker": "Alice", "tags": ["a", "b"], "n": 3},
        ),
        Message(
            role="assistant", content="", tool_calls=(call,), id="a1", meta={"usage": {"x": 1}}
        ),
        Message(role="tool", content="a cat 🐈", tool_call_id="call_1", id="t1"),
        Message(role="assistant", content="It is a cat.", id="a2"),
    ]


def test_turn_round_trips_losslessly(stores: StoreFactory) -> None:
    store = stores.open()
    turn = rich_turn()
    store.append_turn(KEY, turn[:2])
    store.append_turn(KEY, turn[2:])
    assert store.load(KEY) == turn
    assert stores.open().load(KEY) == turn  # a fresh store object on the same data


def test_system_message_is_replaced_not_appended(stores: StoreFactory) -> None:
    store = stores.open()
    first, second = Message(role="system", content="A"), Message(role="system", content="B")
    user, reply = Message(role="user", content="hi"), Message(role="assistant", content="yo")
    store.append_turn(KEY, [user], system=first)
    assert store.load(KEY) == [first, user]
    store.append_turn(KEY, [reply], system=second)
    assert store.load(KEY) == [second, user, reply]
    store.append_turn(KEY, [user.replace(id="u2")])  # no system given: the stored one stays
    assert store.load(KEY)[0] == second


def test_unknown_session_loads_empty(stores: StoreFactory) -> None:
    store = stores.open()
    assert store.load(SessionKey(id="never")) == []
    assert store.delete(SessionKey(id="never")) is False


def test_owners_and_ids_never_collide(stores: StoreFactory) -> None:
    store = stores.open()
    # Separators inside names must not let one key address another's data.
    keys = [
        SessionKey(owner="a:b", id="c"),
        SessionKey(owner="a", id="b:c"),
        SessionKey(owner="a", id="b"),
        SessionKey(owner="b", id="a"),
    ]
    for k in keys:
        store.append_turn(k, [Message(role="user", content=str(k))])
    for k in keys:
        assert [m.text for m in store.load(k)] == [str(k)]
    assert [i.key for i in store.list_sessions("a")] == [keys[2], keys[1]]


def test_list_sessions_newest_first_with_counts(stores: StoreFactory) -> None:
    store = stores.open()
    a, b = SessionKey(owner="alice", id="a"), SessionKey(owner="alice", id="b")
    store.append_turn(a, [Message(role="user", content="1")])
    time.sleep(0.01)
    store.append_turn(
        b, [Message(role="user", content="1"), Message(role="assistant", content="2")]
    )
    time.sleep(0.01)
    store.append_turn(a, [Message(role="assistant", content="3")])
    infos = store.list_sessions("alice")
    assert [(i.key.id, i.messages) for i in infos] == [("a", 2), ("b", 2)]
    assert infos[0].created_at < infos[1].created_at < infos[0].updated_at
    assert store.list_sessions("bob") == []


def test_delete_forgets_one_session(stores: StoreFactory) -> None:
    store = stores.open()
    other = SessionKey(owner="alice", id="s2")
    store.append_turn(KEY, [Message(role="user", content="x")], system=Message(role="system"))
    store.append_turn(other, [Message(role="user", content="y")])
    assert store.delete(KEY) is True
    assert store.load(KEY) == []
    assert [i.key for i in store.list_sessions("alice")] == [other]
    store.append_turn(KEY, [Message(role="user", content="again")])
    assert [m.text for m in store.load(KEY)] == ["again"]


def test_async_methods_match_sync(stores: StoreFactory) -> None:
    store = stores.open()

    async def run() -> list[Message]:
        await store.aappend_turn(KEY, rich_turn())
        assert [i.key for i in await store.alist_sessions("alice")] == [KEY]
        loaded = await store.aload(KEY)
        assert await store.adelete(KEY) is True
        return loaded

    assert asyncio.run(run()) == rich_turn()


def test_lock_excludes_other_threads(stores: StoreFactory) -> None:
    store = stores.open()
    inside, overlaps = [0], []

    def worker() -> None:
        for _ in range(20):
            with store.lock(KEY):
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 80 and max(overlaps) == 1


def test_locks_are_per_session(stores: StoreFactory) -> None:
    store = stores.open()
    with store.lock(KEY), store.lock(SessionKey(owner="alice", id="other"), timeout=0.2):
        pass  # a second session's lock is free while the first is held


def test_busy_lock_times_out_then_frees(stores: StoreFactory) -> None:
    store = stores.open()
    with store.lock(KEY):
        started = time.monotonic()
        with (
            pytest.raises(SessionBusyError, match="alice/s1"),
            stores.open().lock(KEY, timeout=0.1),
        ):
            pass
        assert 0.1 <= time.monotonic() - started < 2
    with store.lock(KEY, timeout=0.1):
        pass


def test_async_lock_serialises_coroutines(stores: StoreFactory) -> None:
    store = stores.open()
    order: list[str] = []

    async def worker(name: str) -> None:
        async with store.alock(KEY):
            order.append(f"{name}+")
            await asyncio.sleep(0.002)
            order.append(f"{name}-")

    async def run() -> None:
        await asyncio.gather(*(worker(str(i)) for i in range(6)))

    asyncio.run(run())
    assert all(a[:-1] == b[:-1] for a, b in zip(order[::2], order[1::2], strict=True))


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"], indirect=True)
def test_lease_of_a_vanished_holder_expires(stores: StoreFactory) -> None:
    store = stores.open(lock_ttl=0.3)
    # A holder that died without releasing: its lease is simply never renewed.
    assert store._acquire_lease(KEY, "dead-holder", 0.3)
    started = time.monotonic()
    with store.lock(KEY, timeout=5):
        waited = time.monotonic() - started
    assert 0.2 <= waited < 3


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"], indirect=True)
def test_held_lock_is_renewed_past_its_ttl(stores: StoreFactory) -> None:
    store = stores.open(lock_ttl=0.3)
    other = stores.open(lock_ttl=0.3)
    # Waiting three TTLs: a lease that was not renewed would have expired by then.
    with store.lock(KEY), pytest.raises(SessionBusyError), other.lock(KEY, timeout=1.0):
        pass
    with other.lock(KEY, timeout=0.5):
        pass


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"], indirect=True)
def test_stale_holder_cannot_release_a_new_lease(stores: StoreFactory) -> None:
    store = stores.open()
    assert store._acquire_lease(KEY, "old", 0.05)
    time.sleep(0.1)
    assert store._acquire_lease(KEY, "new", 30)
    store._release_lease(KEY, "old")
    assert not store._renew_lease(KEY, "old", 30)
    assert not store._acquire_lease(KEY, "third", 30)  # "new" still holds it


# -- open_store ---------------------------------------------------------------------------------


def test_open_store_urls(tmp_path: Path, _ctxlab_home: Path) -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    relative = open_store("sqlite:///sub/s.db")
    assert isinstance(relative, SQLiteStore) and relative.path == _ctxlab_home / "sub" / "s.db"
    relative.close()
    absolute = open_store(f"sqlite:///{tmp_path / 'abs.db'}")
    assert isinstance(absolute, SQLiteStore) and absolute.path == tmp_path / "abs.db"
    absolute.close()
    default = open_store()
    assert isinstance(default, SQLiteStore) and default.path == _ctxlab_home / "sessions.db"
    default.close()
    assert isinstance(MemoryStore(), Store)


def test_open_store_reads_ctxlab_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXLAB_STORE", "memory")
    assert isinstance(open_store(), MemoryStore)


@pytest.mark.parametrize("url", ["postgres://x", "sqlite://", "sqlite:///:memory:", "s.db"])
def test_open_store_rejects_unknown_urls(url: str) -> None:
    with pytest.raises(UsageError, match="sqlite:///"):
        open_store(url)


def test_redis_without_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ctxlab\[redis\]'"):
        open_store("redis://127.0.0.1:1/0")


def test_unreachable_redis_is_a_configuration_error(redis_server: object) -> None:
    from redis_fixture import _free_port

    port = _free_port()
    with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}.*start redis-server") as info:
        open_store(f"redis://:secret@127.0.0.1:{port}/0")
    assert "secret" not in str(info.value)


def test_redis_prefix_separates_applications(redis_url: str) -> None:
    one, two = open_store(redis_url), open_store(redis_url + "?prefix=other")
    one.append_turn(KEY, [Message(role="user", content="x")])
    assert two.load(KEY) == [] and len(one.load(KEY)) == 1
    one.close()
    two.close()


# -- SQLite specifics ---------------------------------------------------------------------------


def test_sqlite_file_is_wal_and_versioned(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.append_turn(KEY, [Message(role="user", content="x")])
    store.close()
    raw = sqlite3.connect(tmp_path / "s.db")
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    versions = raw.execute("SELECT version FROM ctxlab_migrations").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    raw.close()
    again = SQLiteStore(tmp_path / "s.db")  # reopening migrates nothing twice
    assert [m.text for m in again.load(KEY)] == ["x"]
    again.close()


def test_sqlite_new_file_opened_while_another_connection_reads(tmp_path: Path) -> None:
    # Switching a file to WAL fails at once (no busy wait) while another connection holds it,
    # as when several processes open a new store together; the store waits it out instead.
    raw = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    raw.execute("CREATE TABLE t (x)")
    raw.execute("BEGIN")
    raw.execute("SELECT * FROM t").fetchall()  # a shared lock that blocks the journal change
    release = threading.Timer(0.3, lambda: raw.execute("COMMIT"))
    release.start()
    store = SQLiteStore(tmp_path / "s.db")
    release.join()
    store.append_turn(KEY, [Message(role="user", content="x")])
    assert store._conn().execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()
    raw.close()


def test_sqlite_many_threads_open_a_new_file_together(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def open_close(path: Path) -> None:
        try:
            SQLiteStore(path).close()
        except BaseException as exc:  # collected, then asserted empty
            errors.append(exc)

    for round_ in range(30):
        path = tmp_path / f"r{round_}.db"
        threads = [threading.Thread(target=open_close, args=(path,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    raw = sqlite3.connect(tmp_path / "s.db")
    raw.execute("INSERT INTO ctxlab_migrations VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(ConfigurationError, match="upgrade ctxlab"):
        SQLiteStore(tmp_path / "s.db")


def test_sqlite_failed_turn_leaves_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.append_turn(KEY, [Message(role="user", content="ok")])
    # A write failing halfway through a turn (here: on its second message) rolls it all back.
    store._conn().execute(
        "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.seq = 2 "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        store.append_turn(KEY, [Message(role="assistant", content="a"), Message(role="user")])
    assert [m.text for m in store.load(KEY)] == ["ok"]
    assert store.list_sessions("alice")[0].messages == 1
    store.close()


def test_sqlite_full_sync_survives_lock_traffic(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", synchronous="FULL")
    with store.lock(KEY):  # lease writes skip the fsync, then restore the setting
        store.append_turn(KEY, [Message(role="user", content="x")])
    assert store._conn().execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    store.close()


@pytest.mark.parametrize("store_kind", ["sqlite", "redis"], indirect=True)
def test_cancelled_waiter_gives_back_a_lease_it_won(stores: StoreFactory) -> None:
    store = stores.open()
    real = store._acquire_lease

    def slow_acquire(key: SessionKey, token: str, ttl: float) -> bool:
        time.sleep(0.1)  # the waiter is cancelled while this attempt is in flight
        return real(key, token, ttl)

    store._acquire_lease = slow_acquire

    async def waiter() -> None:
        async with store.alock(KEY):
            raise AssertionError("the cancelled waiter never gets the lock")

    async def run() -> None:
        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)  # the attempt won the lease meanwhile, then gave it back

    asyncio.run(run())
    assert real(KEY, "next", 30), "the lease leaked: the session stays locked for a whole TTL"
