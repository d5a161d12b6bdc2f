"""Two strategies side by side on one conversation: what each sends, and where they differ.

`diff_html` is the static view (it works without widgets, e.g. in a saved notebook); `Diff`
is the widget behind `ctxlab.widgets.diff`: two strategy pickers and a budget, the view
redrawn on change. Rows are the conversation's original messages; by default only those
whose decision differs between the two strategies are listed, each with both decisions,
and a summary line gives the totals.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ctxlab.errors import CtxlabError
from ctxlab.messages import Conversation
from ctxlab.pruned import Pruned
from ctxlab.strategies.base import Strategy
from ctxlab.tokens import TokenCounter
from ctxlab.widgets._html import ACTION_COLOURS, NO_MATH
from ctxlab.widgets._snapshot import snapshot_box, snapshot_frame

__all__ = ["Diff", "diff_html", "differences"]

_PREVIEW = 160
_BOX = "font-family:system-ui,sans-serif;font-size:13px;line-height:1.4;max-width:1100px"


def differences(a: Pruned, b: Pruned) -> list[int]:
    """Indices of the original messages whose decision differs between `a` and `b`."""
    return [
        i
        for i, (da, db) in enumerate(zip(a.decisions, b.decisions, strict=True))
        if da.action != db.action
    ]


def diff_html(a: Pruned, b: Pruned, counter: TokenCounter, *, only_differences: bool = True) -> str:
    """`a` and `b` (two prunings of one conversation) as one table, differences outlined."""
    originals = a.conversation.messages
    differ = set(differences(a, b))
    counts = counter.count_many(originals)
    rows = []
    for i, (m, n) in enumerate(zip(originals, counts, strict=True)):
        if only_differences and i not in differ:
            continue
        cells = "".join(_cell(p.decisions[i].action) for p in (a, b))
        text = html.escape(m.text[:_PREVIEW] + ("…" if len(m.text) > _PREVIEW else ""))
        mark = "outline:2px solid #e0a800;" if i in differ else ""
        rows.append(
            f"<tr style='{mark}'><td style='font-family:monospace'>{html.escape(m.id)}</td>"
            f"<td>{html.escape(m.role)}</td><td style='text-align:right'>{n:,}</td>{cells}"
            f"<td style='opacity:0.85'>{text}</td></tr>"
        )
    head = (
        f"<b>{html.escape(a.strategy)}</b> sends {len(a.messages)} messages, {a.tokens:,} "
        f"tokens · <b>{html.escape(b.strategy)}</b> sends {len(b.messages)} messages, "
        f"{b.tokens:,} tokens · they decide differently on <b>{len(differ)}</b> of "
        f"{len(originals)} messages" + (" (only those are listed)" if only_differences else "")
    )
    columns = "".join(
        f"<th>{html.escape(t)}</th>"
        for t in ("id", "role", "tokens", a.strategy, b.strategy, "text")
    )
    table = f"<table><tr>{columns}</tr>{''.join(rows)}</table>" if rows else ""
    return f"<div class='{NO_MATH}' style='{_BOX}'><div>{head}</div>{table}</div>"


def _cell(action: str) -> str:
    colour = ACTION_COLOURS.get(action, "#9e9e9e")
    return f"<td><b style='color:{colour}'>{html.escape(action)}</b></td>"


class Diff:
    """The widgets of `diff` and the callback that redraws the view."""

    def __init__(
        self,
        w: Any,
        conversation: Conversation,
        strategies: Sequence[Strategy],
        budget: int,
        counter: TokenCounter,
    ) -> None:
        self.conv, self.counter = conversation, counter
        self.choices = {s.label: s for s in strategies}
        labels = list(self.choices)
        self.a = w.Dropdown(options=labels, value=labels[0], description="strategy A")
        self.b = w.Dropdown(options=labels, value=labels[min(1, len(labels) - 1)],
                            description="strategy B")  # fmt: skip
        self.budget = w.IntText(value=budget, description="budget", step=100)
        self.all = w.Checkbox(value=False, description="list every message", indent=False)
        self.view = w.HTML(layout=w.Layout(max_height="70vh", overflow="auto"))
        for name in ("a", "b", "budget", "all", "view"):
            getattr(self, name).add_class(f"ctxlab-diff-{name}")
            getattr(self, name).observe(self.refresh, names="value")
        controls = w.HBox([self.a, self.b, self.budget, self.all])
        self.box = snapshot_box(w, [controls, self.view], self.snapshot, self.describe)
        self.box.add_class("ctxlab-diff")
        self.refresh()

    def describe(self) -> str:
        """One line naming what is shown: the two strategies, the conversation, the budget."""
        return (
            f"ctxlab diff: {self.a.value} against {self.b.value} on {self.conv.id} at budget "
            f"{self.budget.value:,}"
        )

    def snapshot(self) -> str:
        """The view as static HTML."""
        view = f"<div style='max-height:600px;overflow:auto'>{self.view.value}</div>"
        return snapshot_frame(self.describe(), [view])

    def refresh(self, _change: object = None) -> None:
        """Prune with both strategies at the budget and redraw."""
        try:
            a, b = (self.choices[s.value].prune(self.conv, self.budget.value, self.counter)
                    for s in (self.a, self.b))  # fmt: skip
        except CtxlabError as exc:
            self.view.value = f"<b style='color:#d04a4a'>{html.escape(str(exc))}</b>"
            return
        self.view.value = diff_html(a, b, self.counter, only_differences=not self.all.value)
