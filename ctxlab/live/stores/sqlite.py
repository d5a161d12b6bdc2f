"""`SQLiteStore`: the default store; one file, WAL, one transaction per turn, survives restarts."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from ctxlab.errors import ConfigurationError, UsageError
from ctxlab.live.stores._codec import encode
from ctxlab.live.stores._history import DEFAULT_CACHE_CHARS, HistoryCache
from ctxlab.live.stores.base import BaseStore, SessionInfo, SessionKey, utc
from ctxlab.messages import Message

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

# Each migration is a list of statements run in one transaction; never edit a released one,
# append a new one instead. The position (1-based) is the schema version it brings the file to.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE sessions (
            owner TEXT NOT NULL, id TEXT NOT NULL, system TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, messages INTEGER NOT NULL,
            PRIMARY KEY (owner, id))""",
        "CREATE INDEX sessions_by_update ON sessions (owner, updated_at)",
        """CREATE TABLE messages (
            owner TEXT NOT NULL, session TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
            PRIMARY KEY (owner, session, seq)) WITHOUT ROWID""",
        """CREATE TABLE locks (
            name TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL)""",
    ),
    # 2: the strategy state each turn leaves (a running summary), committed with the turn.
    ("ALTER TABLE sessions ADD COLUMN state TEXT",),
    # 3: a random token per session lifetime, so a reader may keep what it decoded (see
    # _history.py): messages only grow until the session is deleted, which ends the epoch.
    (
        "ALTER TABLE sessions ADD COLUMN epoch TEXT",
        "UPDATE sessions SET epoch = lower(hex(randomblob(16)))",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SQLiteStore(BaseStore):
    """Sessions in one SQLite file, shared safely by threads and processes.

    Guarantees:
        - a turn is one ``BEGIN IMMEDIATE`` transaction: after a crash the file holds every
          committed turn whole and nothing of an uncommitted one; a `Session` turn writes
          twice: lock + load, then the turn + unlock (`begin_turn`);
        - WAL journal: readers never block the writer; with ``synchronous=NORMAL`` (default) a
          committed turn survives a process crash, and the file stays consistent on power loss
          (the newest turns may then be lost; pass ``synchronous="FULL"`` to fsync each turn);
        - one connection per thread, so threads never share a cursor; this process's writers
          take turns on a lock of their own, so they never sleep in SQLite's busy handler
          waiting for each other (only other processes' transactions are waited out there);
        - a turn decodes only the messages stored since this store last read the session
          (histories are kept decoded, up to `cache_chars` stored characters);
        - the schema is versioned (`SCHEMA_VERSION`); older files are migrated on open, newer
          ones are refused rather than misread.

    Args:
        path: the database file (created with its parent directories).
        synchronous: SQLite's ``synchronous`` pragma: ``NORMAL`` or ``FULL``.
        busy_timeout: seconds a writer waits for another process's transaction.
        lock_ttl: see `BaseStore`.
        lock_timeout: see `BaseStore`.
        cache_chars: stored characters of history kept decoded between turns (0: none).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 30.0,
        lock_ttl: float = 30.0,
        lock_timeout: float = 300.0,
        cache_chars: int = DEFAULT_CACHE_CHARS,
    ) -> None:
        super().__init__(lock_ttl=lock_ttl, lock_timeout=lock_timeout)
        if synchronous not in ("NORMAL", "FULL"):
            raise UsageError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = Path(path).expanduser().resolve()
        self.url = f"sqlite:///{self.path}"
        self._pragmas = (
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={synchronous}",
            f"PRAGMA busy_timeout={int(busy_timeout * 1000)}",
        )
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._writer = threading.Lock()
        self._histories = HistoryCache(cache_chars)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # -- connections ---------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE so a
            # writer takes the write lock up front instead of failing on upgrade.
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._enable_wal(conn)
            for pragma in self._pragmas[1:]:
                conn.execute(pragma)
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL, waiting out other connections doing the same.

        WAL is a property of the file, so it is asked for only when not yet set. Changing the
        journal mode fails at once with "database is locked" (SQLite's busy handler is not
        consulted) while another connection holds the file, which happens when several threads
        or processes open a new store together; retry until ``busy_timeout``.
        """
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.001
        while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                conn.execute(self._pragmas[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        # One writer of this process at a time: SQLite's busy handler sleeps in growing steps
        # (up to 100 ms) when the file is locked, which would stall turns behind one another.
        with self._writer:
            if not durable:
                # Lock leases need no fsync: after a power loss every holder is gone anyway.
                conn.execute("PRAGMA synchronous=OFF")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute(self._pragmas[1])

    def close(self) -> None:
        """Close every connection this store opened."""
        super().close()
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS ctxlab_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            row = conn.execute("SELECT MAX(version) FROM ctxlab_migrations").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.path} has session-store schema version {current}, but this ctxlab "
                    f"knows only up to {SCHEMA_VERSION}; upgrade ctxlab or use another file"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO ctxlab_migrations VALUES (?, ?)", (version, time.time()))

    # -- sessions ------------------------------------------------------------------------------

    def append_turn(
        self,
        key: SessionKey,
        messages: Sequence[Message],
        *,
        system: Message | None = None,
        state: str | None = None,
    ) -> None:
        """Append one turn in one transaction; `system` and `state` replace the stored ones."""
        rows = self._turn_rows(messages, system)
        with self._write() as conn:
            self._insert_turn(conn, key, *rows, state)

    def _turn_rows(
        self, messages: Sequence[Message], system: Message | None
    ) -> tuple[list[str], str | None]:
        # Encoded before the transaction opens, so the write lock is held only for SQL.
        return [encode(m) for m in messages], encode(system) if system is not None else None

    def _insert_turn(
        self,
        conn: sqlite3.Connection,
        key: SessionKey,
        bodies: list[str],
        system: str | None,
        state: str | None,
    ) -> None:
        now = time.time()
        row = conn.execute(
            "SELECT messages FROM sessions WHERE owner = ? AND id = ?", (key.owner, key.id)
        ).fetchone()
        start = row[0] if row else 0
        conn.executemany(
            "INSERT INTO messages VALUES (?, ?, ?, ?)",
            [(key.owner, key.id, start + i, b) for i, b in enumerate(bodies)],
        )
        conn.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner, id) DO UPDATE"
            " SET system = COALESCE(excluded.system, system), updated_at = excluded.updated_at,"
            " messages = excluded.messages, state = COALESCE(excluded.state, state)",
            (key.owner, key.id, system, now, now, start + len(bodies), state, uuid.uuid4().hex),
        )

    def load(self, key: SessionKey) -> list[Message]:
        """The session's messages in order, its system message first; empty when unknown."""
        conn = self._conn()
        # One read transaction, so the system message and the turns come from one snapshot.
        conn.execute("BEGIN")
        try:
            history, _ = self._read(conn, key)
        finally:
            conn.execute("COMMIT")
        return history

    def load_state(self, key: SessionKey) -> str | None:
        """The strategy state stored with the session, or None."""
        row = (
            self._conn()
            .execute("SELECT state FROM sessions WHERE owner = ? AND id = ?", (key.owner, key.id))
            .fetchone()
        )
        return row[0] if row else None

    def list_sessions(self, owner: str) -> list[SessionInfo]:
        """The owner's sessions, most recently updated first."""
        rows = self._conn().execute(
            "SELECT id, messages, created_at, updated_at FROM sessions WHERE owner = ? "
            "ORDER BY updated_at DESC, id",
            (owner,),
        )
        return [
            SessionInfo(
                key=SessionKey(owner=owner, id=sid),
                messages=count,
                created_at=utc(created),
                updated_at=utc(updated),
            )
            for sid, count, created, updated in rows
        ]

    def delete(self, key: SessionKey) -> bool:
        """Forget a session and its messages; True when it existed."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM messages WHERE owner = ? AND session = ?", (key.owner, key.id)
            )
            gone = conn.execute(
                "DELETE FROM sessions WHERE owner = ? AND id = ?", (key.owner, key.id)
            )
        self._histories.forget(key)
        return gone.rowcount > 0

    def _read(self, conn: sqlite3.Connection, key: SessionKey) -> tuple[list[Message], str | None]:
        """The history and the strategy state, in an open transaction (one snapshot)."""
        row = conn.execute(
            "SELECT system, state, messages, epoch FROM sessions WHERE owner = ? AND id = ?",
            (key.owner, key.id),
        ).fetchone()
        if row is None:
            return [], None
        system, state, stored, epoch = row

        def bodies_from(start: int) -> list[str]:
            rows = conn.execute(
                "SELECT body FROM messages WHERE owner = ? AND session = ? AND seq >= ? "
                "ORDER BY seq",
                (key.owner, key.id, start),
            )
            return [body for (body,) in rows]

        return self._histories.read(key, epoch, system, stored, bodies_from), state

    # -- lease locks (wall clock: leases are shared between processes) ---------------------------

    def _acquire_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        with self._write(durable=False) as conn:
            return _take(conn, key, token, ttl)

    def _acquire_and_load(
        self, key: SessionKey, token: str, ttl: float
    ) -> tuple[list[Message], str | None] | None:
        # One transaction: the lease and the history it guards, read while the lease is new.
        with self._write(durable=False) as conn:
            if not _take(conn, key, token, ttl):
                return None
            return self._read(conn, key)

    def _append_and_release(
        self,
        key: SessionKey,
        token: str,
        messages: Sequence[Message],
        system: Message | None,
        state: str | None,
    ) -> bool:
        # The turn, its strategy state and the release commit together (durably, like a turn).
        rows = self._turn_rows(messages, system)
        with self._write() as conn:
            self._insert_turn(conn, key, *rows, state)
            freed = conn.execute(
                "DELETE FROM locks WHERE name = ? AND token = ?", (_lock_name(key), token)
            )
            return freed.rowcount > 0

    def _renew_lease(self, key: SessionKey, token: str, ttl: float) -> bool:
        with self._write(durable=False) as conn:
            cur = conn.execute(
                "UPDATE locks SET expires_at = ? WHERE name = ? AND token = ?",
                (time.time() + ttl, _lock_name(key), token),
            )
            return cur.rowcount > 0

    def _release_lease(self, key: SessionKey, token: str) -> None:
        with self._write(durable=False) as conn:
            conn.execute("DELETE FROM locks WHERE name = ? AND token = ?", (_lock_name(key), token))


def _take(conn: sqlite3.Connection, key: SessionKey, token: str, ttl: float) -> bool:
    """Take the lease inside an open write transaction; False while another holder has it."""
    now = time.time()
    cur = conn.execute(
        "INSERT INTO locks VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
        "SET token = excluded.token, expires_at = excluded.expires_at "
        "WHERE locks.expires_at <= ?",
        (_lock_name(key), token, now + ttl, now),
    )
    return cur.rowcount > 0


def _lock_name(key: SessionKey) -> str:
    # Length-prefixed so that no (owner, id) pair can collide with another.
    return f"{len(key.owner)}:{key.owner}:{key.id}"
