"""From a point of the comparison to the explorer: the conversation, strategy and budget.

The comparison's rows name a strategy by its label and a conversation by its id; this
module rebuilds both from the report's run record (the strategy's class and parameters,
the data files) so the explorer opens on exactly what produced the point.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from ctxlab.errors import UsageError
from ctxlab.lab.report import Report
from ctxlab.messages import Conversation
from ctxlab.strategies.base import Strategy

__all__ = ["conversations_of", "strategy_of"]


def strategy_of(report: Report, label: str) -> Strategy:
    """The strategy behind `label`, rebuilt from the run record.

    Raises:
        UsageError: the run record does not describe it in a way that can be rebuilt.
    """
    from ctxlab.lab._specs import strategy_from

    entry = next((s for s in report.meta.get("strategies", ()) if s.get("label") == label), None)
    if entry is None:
        return strategy_from(label)  # a registry name with default parameters
    module, _, name = str(entry["class"]).rpartition(".")
    params: Mapping[str, Any] = entry.get("params", {})
    try:
        made = getattr(importlib.import_module(module), name)(**params)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot rebuild {label!r} from the run record: {exc}") from exc
    if not isinstance(made, Strategy):
        raise UsageError(f"{label!r} in the run record is not a strategy")
    return made


def conversations_of(
    report: Report, given: Sequence[Conversation] | None = None
) -> dict[tuple[str, str], Conversation]:
    """(dataset, id) -> conversation: `given`, else the run record's data files."""
    from ctxlab.lab._specs import conversations_from

    convs = list(given or ())
    if not convs:
        paths = [d["path"] for d in report.meta.get("data", ()) if d.get("path")]
        convs = conversations_from(paths) if paths else []
    return {(c.dataset or "custom", c.id): c for c in convs}
