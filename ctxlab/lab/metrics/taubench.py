"""``action_argument_recall`` (tau-bench): can the agent still see what its next action needs?"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ctxlab.lab.metrics.base import NAN, Cell, Facts, Probe, ProbeMetric
from ctxlab.lab.metrics.text import full_text
from ctxlab.messages import Conversation, thaw

__all__ = ["ActionArgumentRecall", "gold_action_needs"]

_MIN_LENGTH = 4


def _strings(value: Any) -> Iterator[str]:
    """String leaves of a JSON value (kwargs hold lists of dicts: flights, passengers...)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _issue_points(facts: Facts) -> list[tuple[int, dict[str, Any]]]:
    """(message index, kwargs) of each gold action the recorded agent issued.

    An action is issued by the first assistant tool call with its name and exactly its
    arguments, else by the first not yet used call with its name; never-issued actions
    are left out.
    """
    calls = [
        (i, c.name, _arguments(c.arguments), n)
        for i, m in enumerate(facts.conversation.messages)
        if m.role == "assistant"
        for n, c in enumerate(m.tool_calls)
    ]
    used: set[tuple[int, int]] = set()
    points = []
    for action in facts.conversation.annotations.get("gold_actions") or ():
        name, kwargs = action.get("name"), thaw(action.get("kwargs") or {})
        named = [
            (i, n, args) for i, cname, args, n in calls if cname == name and (i, n) not in used
        ]
        exact = [c for c in named if c[2] == kwargs]
        chosen = exact[0] if exact else named[0] if named else None
        if chosen is not None:
            used.add((chosen[0], chosen[1]))
            points.append((chosen[0], kwargs))
    return points


def gold_action_needs(facts: Facts) -> dict[int, list[str]]:
    """Probe index -> the argument strings the actions issued there need from the past.

    Those are the gold actions' string arguments of at least 4 characters that occur in
    the text of the messages before the issuing message (tool-call arguments included).
    """

    def build(f: Facts) -> dict[int, list[str]]:
        texts = [full_text(m) for m in f.conversation.messages]
        needs: dict[int, list[str]] = {}
        for k, kwargs in _issue_points(f):
            before = "\n".join(texts[:k])
            values = sorted({s for s in _strings(kwargs) if len(s) >= _MIN_LENGTH})
            needs.setdefault(k, []).extend(v for v in values if v in before)
        return needs

    return facts.memo("taubench.needs", build)


@dataclass(frozen=True)
class ActionArgumentRecall(ProbeMetric):
    """``action_argument_recall``: share of a gold action's known arguments still in context.

    For every gold action of a tau-bench task that the recorded agent issued (the assistant
    message calling it, matched by name and arguments), its string arguments of at least 4
    characters (nested lists and objects included) that appeared before that message are
    the ones the agent needs to remember. At the probe just before the issuing message
    (``probes="assistant_turns"``), recall = |needed strings occurring in the context text|
    / |needed strings|, pooled over the actions issued there. NaN at other probes.
    """

    name: ClassVar[str] = "action_argument_recall"
    by_context: ClassVar[bool] = True

    def applies(self, conversation: Conversation) -> bool:
        """Conversations with ``gold_actions`` annotations (tau-bench)."""
        return bool(conversation.annotations.get("gold_actions"))

    def value(self, cell: Cell, probe: Probe) -> float:
        """Share of the needed argument strings found in the context at this probe."""
        needed = gold_action_needs(cell.facts).get(probe.k)
        if not needed:
            return NAN
        assert probe.pruned is not None
        context = "\n".join(full_text(m) for m in probe.pruned.messages)
        return sum(1 for v in needed if v in context) / len(needed)
