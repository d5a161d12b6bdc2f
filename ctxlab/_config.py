"""Configuration resolved at call time: explicit argument > environment variable > default.

Nothing here is read at import time, so tests and notebooks can change `CTXLAB_HOME` (where all
on-disk state lives: caches, stores) or `CTXLAB_DATA` (where bundled datasets are found) at will.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "home_dir", "setting"]


def setting(name: str, explicit: str | None = None, default: str | None = None) -> str | None:
    """Resolve one setting: `explicit` if given, else `CTXLAB_<NAME>`, else `default`."""
    if explicit is not None:
        return explicit
    value = os.environ.get(f"CTXLAB_{name.upper()}")
    return value if value not in (None, "") else default


def home_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Directory for every file ctxlab writes on its own (caches, SQLite stores).

    `CTXLAB_HOME` relocates it; the default is `~/.ctxlab`. Created on first use.
    """
    raw = setting("home", os.fspath(explicit) if explicit is not None else None)
    path = Path(raw).expanduser() if raw else Path.home() / ".ctxlab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Directory holding the bundled datasets, or None when it cannot be found.

    `CTXLAB_DATA` wins; otherwise the `data/` folder beside the package in a source checkout.
    """
    raw = setting("data", os.fspath(explicit) if explicit is not None else None)
    if raw:
        return Path(raw).expanduser()
    beside = Path(__file__).resolve().parent.parent / "data"
    return beside if beside.is_dir() else None
