"""Turning what users type into what `compare` runs: data specs, strategy specs, run records.

A strategy spec is a registry name with optional parameters, ``sliding_window:max_messages=20``
(values are read as JSON when they parse, else as text), or a user's own object,
``package.module:object`` (a strategy, a strategy class, or a plain function
``list[Message] -> list[Message]``), optionally followed by ``:key=value,...``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ctxlab.budget import Budget
from ctxlab.errors import UsageError
from ctxlab.messages import Conversation
from ctxlab.strategies.base import Strategy
from ctxlab.tokens import TokenCounter

__all__ = ["conversations_from", "parse_params", "run_record", "strategy_from"]

_DATA_SUFFIXES = (".json", ".jsonl", ".traj")
_WORDS = {"none": None, "null": None, "true": True, "false": False}


def conversations_from(value: Any, *, format: str | None = None) -> list[Conversation]:
    """Conversations from a `Conversation`, a dataset name, a file or folder, or a list.

    Raises:
        UsageError: a name that is neither a bundled dataset nor an existing path, or an
            empty result.
        DataFormatError: a file cannot be read (the message names the file and line).
    """
    items = [value] if isinstance(value, (Conversation, str, os.PathLike)) else list(value)
    out: list[Conversation] = []
    for item in items:
        if isinstance(item, Conversation):
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.extend(_load(item, format))
        else:
            raise UsageError(f"cannot read conversations from {item!r}")
    if not out:
        raise UsageError("no conversations to compare")
    seen: set[tuple[str | None, str]] = set()
    for c in out:
        if (c.dataset, c.id) in seen:
            raise UsageError(f"conversation {c.id!r} of {c.dataset or 'custom'} is given twice")
        seen.add((c.dataset, c.id))
    return out


def _load(spec: str | os.PathLike[str], format: str | None) -> list[Conversation]:
    from ctxlab import datasets, formats

    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return formats.load(path, format=format)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _DATA_SUFFIXES)
        if not files:
            raise UsageError(f"{path} holds no .json, .jsonl or .traj file")
        return datasets.unique_ids([c for f in files for c in formats.load(f, format=format)])
    if text in datasets.names():
        return datasets.load(text)
    raise UsageError(
        f"{text!r} is neither an existing file or folder nor a bundled dataset "
        f"({', '.join(datasets.names())})"
    )


def parse_params(text: str) -> dict[str, Any]:
    """``"a=1,b=x"`` -> ``{"a": 1, "b": "x"}`` (JSON values where they parse)."""
    params: dict[str, Any] = {}
    for part in _split_top(text):
        key, eq, raw = part.partition("=")
        if not eq or not key.strip().isidentifier():
            raise UsageError(f"bad strategy parameter {part!r}; write key=value")
        params[key.strip()] = _value(raw.strip())
    return params


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes (JSON lists stay whole)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def _value(raw: str) -> Any:
    if raw.lower() in _WORDS:
        return _WORDS[raw.lower()]
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def strategy_from(item: Any) -> Strategy:
    """A strategy from an object or a spec string (see the module docstring).

    Raises:
        UsageError: unknown name (the message lists the known ones), bad parameters, or an
            import path that does not lead to a strategy.
    """
    if isinstance(item, Strategy) and not isinstance(item, type):
        return item
    if not isinstance(item, str):
        raise UsageError(f"{item!r} is not a strategy or a strategy name")
    from ctxlab.strategies import get_strategy, names

    head, _, rest = item.partition(":")
    attr, _, params = rest.partition(":")
    if head not in names() and attr.isidentifier():  # package.module:object[:k=v,...]
        return _imported(head, attr, parse_params(params) if params else {})
    return get_strategy(head, **(parse_params(rest) if rest else {}))


def _imported(module_name: str, attr: str, params: dict[str, Any]) -> Strategy:
    spec = f"{module_name}:{attr}"
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot import strategy {spec!r}: {exc}") from exc
    if isinstance(target, Strategy) and not isinstance(target, type):
        if params:
            raise UsageError(f"{spec} is already a strategy; it takes no parameters")
        return target
    if isinstance(target, type):
        try:
            made = target(**params)
        except TypeError as exc:
            raise UsageError(f"bad parameters for strategy {spec!r}: {exc}") from exc
        if isinstance(made, Strategy):
            return made
    elif callable(target):
        from ctxlab.strategies.function import from_function

        return from_function(target, **params)
    raise UsageError(f"{spec} is not a strategy, a strategy class or a message function")


def run_record(
    conversations: Sequence[Conversation],
    strategies: Sequence[Strategy],
    budgets: Sequence[Budget],
    counter: TokenCounter,
    model: str | None,
    probes: Any,
    metrics: Iterable[Any],
    aggregates: Mapping[str, str],
) -> dict[str, Any]:
    """What a run needs to be reproduced: versions, data hashes, parameters."""
    from ctxlab import __version__

    return {
        "ctxlab_version": __version__,
        "data": _data_files(conversations),
        "strategies": [
            {
                "label": s.label,
                "class": f"{type(s).__module__}.{type(s).__qualname__}",
                "params": _params(s),
            }
            for s in strategies
        ],
        "budgets": [
            {"max_tokens": b.max_tokens, "reserve_output": b.reserve_output} for b in budgets
        ],
        "probes": probes if isinstance(probes, str) else [int(k) for k in probes],
        "encoding": counter.encoding,
        "token_counts": "exact" if counter.exact else "estimate",
        "model": model,
        "metrics": [m.name for m in metrics],
        "aggregates": dict(aggregates),
        "seed": 0,
    }


def _data_files(conversations: Sequence[Conversation]) -> list[dict[str, Any]]:
    counts: dict[str | None, int] = {}
    datasets: dict[str | None, str | None] = {}
    for c in conversations:
        counts[c.source.path] = counts.get(c.source.path, 0) + 1
        datasets[c.source.path] = c.dataset
    out = []
    for path, n in counts.items():
        digest = None
        if path and Path(path).is_file():
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        out.append({"path": path, "sha256": digest, "dataset": datasets[path], "conversations": n})
    return out


def _params(strategy: object) -> dict[str, Any]:
    if not dataclasses.is_dataclass(strategy):
        return {}
    return {
        f.name: _jsonable(getattr(strategy, f.name))
        for f in dataclasses.fields(strategy)
        if f.init and f.repr
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Strategy):
        return {"strategy": value.label}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if callable(value) and hasattr(value, "__name__"):
        return f"{getattr(value, '__module__', '?')}.{value.__name__}"
    return repr(value)
