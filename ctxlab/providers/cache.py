"""A response cache in SQLite, so re-running a notebook or an evaluation costs nothing.

The key is a hash of the normalised request (provider, base URL and the JSON body with sorted
keys), so any change to the messages, model or parameters misses. Only whole completions are
cached (not streams). The cache is off for live providers unless asked for
(``get_provider(..., cache=True)``); evaluation runs turn it on. The file lives under
``CTXLAB_HOME`` (``cache/responses.sqlite3``) unless a path is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ctxlab._config import home_dir
from ctxlab.messages import ToolCall, thaw
from ctxlab.providers.base import Completion
from ctxlab.usage import Usage

__all__ = ["ResponseCache", "request_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    completion TEXT NOT NULL
)
"""


def request_key(provider: str, base_url: str, body: Mapping[str, Any]) -> str:
    """The cache key of a request: sha256 of its canonical JSON."""
    canonical = json.dumps(
        {"provider": provider, "base_url": base_url.rstrip("/"), "body": thaw(body)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    """Completions stored by request key in one SQLite file (thread-safe)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        """Open or create the cache (default ``$CTXLAB_HOME/cache/responses.sqlite3``)."""
        self.path = Path(path) if path is not None else home_dir() / "cache" / "responses.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> Completion | None:
        """The cached completion for `key` (marked ``cached=True``), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT completion FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else _load(row[0])

    def put(self, key: str, completion: Completion, *, provider: str = "") -> None:
        """Store `completion` under `key` (replacing an older entry); `provider` is a label."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (key, provider, completion.model, time.time(), _dump(completion)),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        """Forget every cached response."""
        with self._lock:
            self._db.execute("DELETE FROM responses")

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"


def _dump(c: Completion) -> str:
    usage = c.usage
    return json.dumps(
        {
            "text": c.text,
            "tool_calls": [[t.id, t.name, t.arguments] for t in c.tool_calls],
            "usage": [
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.cache_write_tokens,
                usage.output_tokens,
                usage.requests,
                usage.estimated,
            ],
            "model": c.model,
            "finish_reason": c.finish_reason,
            "raw": thaw(c.raw),
            "latency_s": c.latency_s,
        },
        ensure_ascii=False,
    )


def _load(text: str) -> Completion:
    d = json.loads(text)
    inp, cached, write, out, requests, estimated = d["usage"]
    usage = Usage(
        input_tokens=inp,
        cached_input_tokens=cached,
        cache_write_tokens=write,
        output_tokens=out,
        requests=requests,
        estimated=estimated,
    )
    return Completion(
        text=d["text"],
        tool_calls=tuple(ToolCall(id=i, name=n, arguments=a) for i, n, a in d["tool_calls"]),
        usage=usage,
        model=d["model"],
        finish_reason=d["finish_reason"],
        raw=d["raw"],
        latency_s=0.0,
        cached=True,
    )
