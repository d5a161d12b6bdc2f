"""Where `Session` and the proxy keep conversations: memory, SQLite (default) or Redis.

``open_store(url)`` builds a store from a URL:

- ``"memory"``: `MemoryStore`, this process only;
- ``"sqlite:///sessions.db"``: `SQLiteStore`; a relative path lies under ``CTXLAB_HOME``
  (default ``~/.ctxlab``), an absolute one takes four slashes: ``"sqlite:////var/lib/x.db"``;
- ``"redis://host:port/db"`` (also ``rediss://``, ``unix://``): `RedisStore`, needs the
  ``redis`` extra; ``?prefix=NAME`` sets the key prefix (default ``ctxlab``).

With no URL, ``CTXLAB_STORE`` decides, else ``sqlite:///sessions.db``.

Part of `ctxlab.live`: may import the core values and `formats`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ctxlab._config import home_dir, setting
from ctxlab.errors import UsageError
from ctxlab.live.stores.base import BaseStore, SessionBusyError, SessionInfo, SessionKey, Store
from ctxlab.live.stores.memory import MemoryStore

if TYPE_CHECKING:
    from ctxlab.live.stores.redis import RedisStore
    from ctxlab.live.stores.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_STORE",
    "BaseStore",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "SessionBusyError",
    "SessionInfo",
    "SessionKey",
    "Store",
    "open_store",
    "sqlite_path",
]

DEFAULT_STORE = "sqlite:///sessions.db"

_LAZY = {"RedisStore": "ctxlab.live.stores.redis", "SQLiteStore": "ctxlab.live.stores.sqlite"}


def open_store(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names (see the module docstring); `options` go to its constructor.

    Raises:
        UsageError: a URL of no known form.
        MissingDependencyError: a Redis URL without the ``redis`` package.
        ConfigurationError: Redis unreachable, or a SQLite file written by a newer ctxlab.
    """
    url = setting("store", url, DEFAULT_STORE) or DEFAULT_STORE
    scheme = url.partition("://")[0] if "://" in url else url
    if scheme in ("memory", "mem"):
        return MemoryStore(**options)
    if scheme == "sqlite":
        from ctxlab.live.stores.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url), **options)
    if scheme in ("redis", "rediss", "unix"):
        from ctxlab.live.stores.redis import RedisStore

        plain, prefix = _split_prefix(url)
        if prefix is not None:
            options.setdefault("prefix", prefix)
        return RedisStore(plain, **options)
    raise UsageError(
        f"unknown store URL {url!r}; use 'memory', 'sqlite:///FILE' (relative to CTXLAB_HOME), "
        "'sqlite:////ABSOLUTE/FILE' or 'redis://HOST:PORT/DB'"
    )


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:///`` store URL names (relative paths lie under CTXLAB_HOME)."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        raise UsageError(
            f"bad SQLite store URL {url!r}: write 'sqlite:///FILE' (under CTXLAB_HOME) or "
            "'sqlite:////ABSOLUTE/FILE'; for a store in memory use 'memory'"
        )
    path = rest[1:]
    return path if path.startswith("/") else str(home_dir() / path)


def _split_prefix(url: str) -> tuple[str, str | None]:
    """Take ctxlab's own ``prefix`` query parameter out of a Redis URL."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", None)
    return urlunsplit(parts._replace(query=urlencode(query))), prefix


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxlab.live.stores' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
