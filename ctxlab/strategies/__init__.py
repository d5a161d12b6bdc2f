"""Pruning strategies and their registry.

``get_strategy("token_window")`` gives a working offline default; parameters are keywords:
``get_strategy("sliding_window", max_messages=20)``. ``names()`` lists what is registered.
Each strategy lives in its own module; the registry imports it on first use, and so does
attribute access (``strategies.TokenWindow``, ``strategies.from_function``...).

May import the core values, `formats`, `scoring`, `summarizers` and `providers`; never `lab`,
`live` or `widgets`.
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ctxlab.errors import UsageError
from ctxlab.strategies.base import BaseStrategy, Decision, Pruned, Strategy

if TYPE_CHECKING:
    from ctxlab.strategies.evidence_oracle import EvidenceOracle
    from ctxlab.strategies.function import FunctionStrategy, from_function
    from ctxlab.strategies.head_tail import HeadTail
    from ctxlab.strategies.importance import Importance
    from ctxlab.strategies.keep_all import KeepAll
    from ctxlab.strategies.mask_tool_outputs import MaskToolOutputs
    from ctxlab.strategies.pipeline import Pipeline
    from ctxlab.strategies.retrieve import Retrieve
    from ctxlab.strategies.sliding_window import SlidingWindow
    from ctxlab.strategies.summarize import Summarize, SummaryWindow
    from ctxlab.strategies.token_window import TokenWindow
    from ctxlab.strategies.truncate_long import TruncateLong
    from ctxlab.summarizers import ExtractiveSummarizer, Summarizer, SummaryResult
    from ctxlab.summarizers.llm import LLMSummarizer

__all__ = [
    "BaseStrategy",
    "Decision",
    "EvidenceOracle",
    "ExtractiveSummarizer",
    "FunctionStrategy",
    "HeadTail",
    "Importance",
    "KeepAll",
    "LLMSummarizer",
    "MaskToolOutputs",
    "Pipeline",
    "Pruned",
    "Retrieve",
    "SlidingWindow",
    "Strategy",
    "Summarize",
    "Summarizer",
    "SummaryResult",
    "SummaryWindow",
    "TokenWindow",
    "TruncateLong",
    "default_names",
    "from_function",
    "get_strategy",
    "names",
    "peer_names",
    "register",
]

# Public names that live in their own modules, imported on first access.
_LAZY: dict[str, str] = {
    "ExtractiveSummarizer": "ctxlab.summarizers",
    "FunctionStrategy": "ctxlab.strategies.function",
    "EvidenceOracle": "ctxlab.strategies.evidence_oracle",
    "HeadTail": "ctxlab.strategies.head_tail",
    "Importance": "ctxlab.strategies.importance",
    "KeepAll": "ctxlab.strategies.keep_all",
    "LLMSummarizer": "ctxlab.summarizers.llm",
    "MaskToolOutputs": "ctxlab.strategies.mask_tool_outputs",
    "Pipeline": "ctxlab.strategies.pipeline",
    "Retrieve": "ctxlab.strategies.retrieve",
    "SlidingWindow": "ctxlab.strategies.sliding_window",
    "Summarize": "ctxlab.strategies.summarize",
    "Summarizer": "ctxlab.summarizers",
    "SummaryResult": "ctxlab.summarizers",
    "SummaryWindow": "ctxlab.strategies.summarize",
    "TokenWindow": "ctxlab.strategies.token_window",
    "TruncateLong": "ctxlab.strategies.truncate_long",
    "from_function": "ctxlab.strategies.function",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxlab.strategies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# name -> "module:attribute"; kept explicit so `names()` needs no imports.
_REGISTRY: dict[str, str] = {
    "agents_tool_trim": "ctxlab.strategies.peers.agents_tool_trim:AgentsToolTrim",
    "evidence_oracle": "ctxlab.strategies.evidence_oracle:EvidenceOracle",
    "head_tail": "ctxlab.strategies.head_tail:HeadTail",
    "importance": "ctxlab.strategies.importance:Importance",
    "keep_all": "ctxlab.strategies.keep_all:KeepAll",
    "langchain_summarize": "ctxlab.strategies.peers.langchain_summarize:LangchainSummarize",
    "langchain_trim": "ctxlab.strategies.peers.langchain_trim:LangchainTrim",
    "litellm_trim": "ctxlab.strategies.peers.litellm_trim:LitellmTrim",
    "llamaindex_buffer": "ctxlab.strategies.peers.llamaindex_buffer:LlamaindexBuffer",
    "llamaindex_summary": "ctxlab.strategies.peers.llamaindex_summary:LlamaindexSummary",
    "mask_tool_outputs": "ctxlab.strategies.mask_tool_outputs:MaskToolOutputs",
    "pipeline": "ctxlab.strategies.pipeline:Pipeline",
    "retrieve": "ctxlab.strategies.retrieve:Retrieve",
    "sk_summarize": "ctxlab.strategies.peers.sk_summarize:SkSummarize",
    "sk_truncate": "ctxlab.strategies.peers.sk_truncate:SkTruncate",
    "sliding_window": "ctxlab.strategies.sliding_window:SlidingWindow",
    "summarize": "ctxlab.strategies.summarize:Summarize",
    "summary_window": "ctxlab.strategies.summarize:SummaryWindow",
    "token_window": "ctxlab.strategies.token_window:TokenWindow",
    "truncate_long": "ctxlab.strategies.truncate_long:TruncateLong",
}


def register(name: str, target: str) -> None:
    """Register a strategy class under `name` (``target`` is ``"package.module:Class"``)."""
    _REGISTRY[name] = target


# Registered, but run only when named: upper bounds that read the answer key.
_ORACLES = frozenset({"evidence_oracle"})
# Registered, but run only when named: other libraries' trimmers (`ctxlab.strategies.peers`,
# the peers extra), which do not promise the rules of `ctxlab.invariants`.
_PEERS = frozenset({
    "agents_tool_trim",
    "langchain_summarize",
    "langchain_trim",
    "litellm_trim",
    "llamaindex_buffer",
    "llamaindex_summary",
    "sk_summarize",
    "sk_truncate",
})  # fmt: skip


def names() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def default_names() -> list[str]:
    """The strategies `ctxlab compare` runs when none is named: no oracles or peers, sorted."""
    return [n for n in names() if n not in _ORACLES | _PEERS]


def peer_names() -> list[str]:
    """The registered strategies that call another library (`ctxlab.strategies.peers`)."""
    return sorted(_PEERS)


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
        UsageError: unknown name, a parameter the strategy does not take, or a value of the
            wrong type for a simple parameter (number, flag, text, choice).
    """
    cls = strategy_class(name)
    _check_types(name, cls, params)
    try:
        return cls(**params)
    except TypeError as exc:
        raise UsageError(f"bad parameters for strategy {name!r}: {exc}") from exc


_SIMPLE: dict[Any, str] = {int: "a whole number", float: "a number", bool: "true or false",
                           str: "text"}  # fmt: skip


def _check_types(name: str, cls: type[BaseStrategy], params: Mapping[str, Any]) -> None:
    """Reject a value whose type a simple parameter cannot take, naming the parameter."""
    hints = _hints(cls)
    if hints is None:  # a hint that cannot be resolved: leave it to the class
        return
    for key, value in params.items():
        allowed = _allowed(hints.get(key))
        if allowed is not None and not any(_fits(value, a) for a in allowed):
            wanted = " or ".join(_describe(a) for a in allowed)
            raise UsageError(
                f"bad parameter for strategy {name!r}: {key} must be {wanted}, got {value!r}"
            )


_HINTS: dict[type[BaseStrategy], dict[str, Any] | None] = {}


def _hints(cls: type[BaseStrategy]) -> dict[str, Any] | None:
    """The resolved type hints of a strategy class (None when one cannot be resolved)."""
    if cls not in _HINTS:
        try:
            _HINTS[cls] = typing.get_type_hints(cls)
        except (NameError, TypeError):
            _HINTS[cls] = None
    return _HINTS[cls]


def _allowed(hint: Any) -> list[Any] | None:
    """The simple alternatives a hint admits, or None when it is not a simple hint."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_allowed(a) for a in typing.get_args(hint)]
        if any(p is None for p in parts):
            return None
        return [a for p in parts if p is not None for a in p]
    if origin is typing.Literal:
        return [("literal", v) for v in typing.get_args(hint)]
    if hint in _SIMPLE or hint is type(None):
        return [hint]
    return None


def _fits(value: Any, allowed: Any) -> bool:
    if isinstance(allowed, tuple):
        return bool(value == allowed[1] and type(value) is type(allowed[1]))
    if allowed is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if allowed is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if allowed is type(None):
        return value is None
    return isinstance(value, allowed)


def _describe(allowed: Any) -> str:
    if isinstance(allowed, tuple):
        return repr(allowed[1])
    return "none" if allowed is type(None) else _SIMPLE[allowed]
