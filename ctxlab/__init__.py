"""ctxlab: measure what LLM context-window pruning strategies cost and what they forget.

Load recorded conversations (`load`, `datasets`), prune them to a token budget with the
strategies in `strategies`, compare strategies over budgets with `compare` (a `Report` of
pandas tables and plots), and run the chosen strategy live with `Session` or the proxy.

Heavy parts (pandas, providers, widgets) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ctxlab.budget import Budget
from ctxlab.errors import BudgetUnreachableError, CtxlabError, DataFormatError
from ctxlab.messages import Conversation, Message, ToolCall
from ctxlab.tokens import get_counter

if TYPE_CHECKING:
    from ctxlab import datasets, providers, strategies, widgets
    from ctxlab.formats import load, save
    from ctxlab.lab.harness import Report, acompare, compare
    from ctxlab.live.session import Session

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "BudgetUnreachableError",
    "Conversation",
    "CtxlabError",
    "DataFormatError",
    "Message",
    "Report",
    "Session",
    "ToolCall",
    "acompare",
    "compare",
    "datasets",
    "get_counter",
    "load",
    "providers",
    "save",
    "strategies",
    "widgets",
]

# name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "Report": ("ctxlab.lab.harness", "Report"),
    "Session": ("ctxlab.live.session", "Session"),
    "acompare": ("ctxlab.lab.harness", "acompare"),
    "compare": ("ctxlab.lab.harness", "compare"),
    "datasets": ("ctxlab.datasets", None),
    "load": ("ctxlab.formats", "load"),
    "providers": ("ctxlab.providers", None),
    "save": ("ctxlab.formats", "save"),
    "strategies": ("ctxlab.strategies", None),
    "widgets": ("ctxlab.widgets", None),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ctxlab' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
