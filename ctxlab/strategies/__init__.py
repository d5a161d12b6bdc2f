"""Pruning strategies and their registry.

``get_strategy("token_window")`` gives a working offline default; parameters are keywords:
``get_strategy("sliding_window", max_messages=20)``. ``names()`` lists what is registered.
Each strategy lives in its own module; the registry imports it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ctxlab.errors import UsageError
from ctxlab.strategies.base import BaseStrategy, Decision, Pruned, Strategy

__all__ = [
    "BaseStrategy",
    "Decision",
    "Pruned",
    "Strategy",
    "get_strategy",
    "names",
    "register",
]

# name -> "module:attribute"; kept explicit so `names()` needs no imports.
_REGISTRY: dict[str, str] = {
    "head_tail": "ctxlab.strategies.head_tail:HeadTail",
    "importance": "ctxlab.strategies.importance:Importance",
    "keep_all": "ctxlab.strategies.keep_all:KeepAll",
    "mask_tool_outputs": "ctxlab.strategies.mask_tool_outputs:MaskToolOutputs",
    "pipeline": "ctxlab.strategies.pipeline:Pipeline",
    "sliding_window": "ctxlab.strategies.sliding_window:SlidingWindow",
    "summarize": "ctxlab.strategies.summarize:Summarize",
    "summary_window": "ctxlab.strategies.summarize:SummaryWindow",
    "token_window": "ctxlab.strategies.token_window:TokenWindow",
    "truncate_long": "ctxlab.strategies.truncate_long:TruncateLong",
}


def register(name: str, target: str) -> None:
    """Register a strategy class under `name` (``target`` is ``"package.module:Class"``)."""
    _REGISTRY[name] = target


def names() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type[BaseStrategy]:
    """The class registered under `name`.

    Raises:
        UsageError: unknown name; the message lists the known ones.
    """
    target = _REGISTRY.get(name)
    if target is None:
        raise UsageError(f"unknown strategy {name!r}; known strategies: {', '.join(names())}")
    module, _, attr = target.partition(":")
    cls: type[BaseStrategy] = getattr(importlib.import_module(module), attr)
    return cls


def get_strategy(name: str, **params: Any) -> BaseStrategy:
    """Build the strategy registered under `name` with these parameters.

    Raises:
        UsageError: unknown name, or a parameter the strategy does not take.
    """
    cls = strategy_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise UsageError(f"bad parameters for strategy {name!r}: {exc}") from exc
