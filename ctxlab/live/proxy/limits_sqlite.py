"""`SQLiteLimits`: the proxy's limits in the store's SQLite file, so a restart keeps them.

Two tables beside the sessions: ``proxy_limits`` (each key's request and token allowances)
and ``proxy_spend`` (each key's spend per UTC day, reservations included). `admit` and
`settle` are each one ``BEGIN IMMEDIATE`` transaction, so several proxy processes on one file
enforce one limit. Buckets use the wall clock, which those processes share.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
import time

from ctxlab.live.proxy.config import KeyConfig
from ctxlab.live.proxy.limits import ALLOWED, Bucket, Verdict, decide, has_limits, today

__all__ = ["SQLiteLimits"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS proxy_limits (
        name TEXT PRIMARY KEY, requests REAL NOT NULL, tokens REAL NOT NULL,
        stamp REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS proxy_spend (
        name TEXT NOT NULL, day INTEGER NOT NULL, usd REAL NOT NULL, PRIMARY KEY (name, day))""",
)


class SQLiteLimits:
    """Limit state in a SQLite file (see the module docstring).

    Args:
        path: the database file (the session store's, usually).
        busy_timeout: seconds a writer waits for another process's transaction.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._mutex = threading.Lock()
        conn = self._conn()
        for statement in _SCHEMA:
            conn.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            self._local.conn = conn
            with self._mutex:
                self._all.append(conn)
        return conn

    async def check(self, key: KeyConfig) -> Verdict:
        """See `Limits.check`."""
        if not has_limits(key):
            return ALLOWED
        return await asyncio.to_thread(self._admit, key, 0, 0.0, False)

    async def admit(self, key: KeyConfig, tokens: int, reserve_usd: float = 0.0) -> Verdict:
        """See `Limits.admit`."""
        if not has_limits(key):
            return ALLOWED
        return await asyncio.to_thread(self._admit, key, tokens, reserve_usd, True)

    async def settle(self, key: KeyConfig, extra_tokens: int, extra_usd: float, day: int) -> None:
        """See `Limits.settle`."""
        if has_limits(key):
            await asyncio.to_thread(self._settle, key, extra_tokens, extra_usd, day)

    async def aclose(self) -> None:
        """Close every connection."""
        with self._mutex:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _admit(self, key: KeyConfig, tokens: int, reserve: float, take: bool) -> Verdict:
        conn, day, now = self._conn(), today(), time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            bucket = _bucket(conn, key, now)
            spent = _spent(conn, key.name, day)
            verdict = decide(key, bucket, now, spent, tokens, reserve)
            if verdict.allowed and take:
                conn.execute(
                    "INSERT OR REPLACE INTO proxy_limits VALUES (?, ?, ?, ?)",
                    (key.name, bucket.requests, bucket.tokens, bucket.stamp),
                )
                if key.usd_per_day is not None:
                    _add_spend(conn, key.name, day, reserve)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return Verdict(allowed=True, day=day) if verdict.allowed else verdict

    def _settle(self, key: KeyConfig, extra_tokens: int, extra_usd: float, day: int) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if key.tokens_per_minute is not None:
                conn.execute(
                    "UPDATE proxy_limits SET tokens = MIN(?, tokens - ?) WHERE name = ?",
                    (float(key.tokens_per_minute), extra_tokens, key.name),
                )
            if key.usd_per_day is not None and math.isfinite(extra_usd):
                _add_spend(conn, key.name, day, extra_usd)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _bucket(conn: sqlite3.Connection, key: KeyConfig, now: float) -> Bucket:
    row = conn.execute(
        "SELECT requests, tokens, stamp FROM proxy_limits WHERE name = ?", (key.name,)
    ).fetchone()
    if row is None:
        rpm, tpm = float(key.requests_per_minute or 0), float(key.tokens_per_minute or 0)
        return Bucket(requests=rpm, tokens=tpm, stamp=now)
    return Bucket(requests=row[0], tokens=row[1], stamp=row[2])


def _spent(conn: sqlite3.Connection, name: str, day: int) -> float:
    row = conn.execute(
        "SELECT usd FROM proxy_spend WHERE name = ? AND day = ?", (name, day)
    ).fetchone()
    return float(row[0]) if row else 0.0


def _add_spend(conn: sqlite3.Connection, name: str, day: int, usd: float) -> None:
    conn.execute(
        "INSERT INTO proxy_spend VALUES (?, ?, ?) ON CONFLICT (name, day) "
        "DO UPDATE SET usd = usd + excluded.usd",
        (name, day, usd),
    )
    conn.execute("DELETE FROM proxy_spend WHERE name = ? AND day < ?", (name, day - 2))
