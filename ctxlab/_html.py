"""HTML views of a `Conversation` and a `Pruned`, for notebooks (``_repr_html_``).

Self-contained: inline styles only (no ``<style>`` block, no script), so the output looks the
same in JupyterLab, classic Notebook, VS Code and static renderers, on light and dark themes
(colours are borders and translucent backgrounds; text keeps the theme's colour). Every piece
of message text is escaped. Long contents are folded in ``<details>``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING

from ctxlab.messages import Conversation, Message
from ctxlab.tokens import TokenCounter, get_counter

if TYPE_CHECKING:
    from ctxlab.strategies.base import Decision, Pruned

__all__ = ["conversation_html", "pruned_html"]

ROLE_COLOURS = {"system": "#7f8c8d", "user": "#2f6fdb", "assistant": "#2e9d5b", "tool": "#c07a12"}
ACTION_COLOURS = {
    "kept": "#2e9d5b",
    "dropped": "#9e9e9e",
    "summarized": "#8a5cd1",
    "masked": "#c07a12",
    "truncated": "#d04a4a",
}
SYNTHETIC_COLOUR = "#8a5cd1"
FOLD_CHARS = 800
FOLD_LINES = 15
PREVIEW_CHARS = 200

_BOX = "font-family:system-ui,sans-serif;font-size:13px;line-height:1.4;max-width:1100px"
_MONO = "font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px"
_PRE = f"white-space:pre-wrap;word-break:break-word;margin:2px 0;{_MONO}"


def conversation_html(
    conv: Conversation, *, counter: TokenCounter | None = None, max_rows: int = 400
) -> str:
    """A conversation as HTML: one row per message coloured by role, with token counts.

    Args:
        conv: the conversation.
        counter: token counter (default: ``get_counter()``, o200k_base).
        max_rows: show at most this many messages (the first and last halves).
    """
    counter = counter or get_counter()
    counts = counter.count_many(conv.messages)
    total = counter.count_messages(conv.messages)
    head = (
        f"<b>Conversation {escape(conv.id)}</b> · {len(conv.messages)} messages · "
        f"<b>{total:,}</b> tokens ({escape(counter.encoding)}, incl. reply priming)"
        f" · source {escape(str(conv.source))}"
    )
    rows = [
        _row(m, n, ROLE_COLOURS[m.role], _role_tags(m))
        for m, n in zip(conv.messages, counts, strict=True)
    ]
    legend = _legend(ROLE_COLOURS)
    return _frame(head, legend, _limit(rows, max_rows))


def pruned_html(pruned: Pruned, *, counter: TokenCounter | None = None, max_rows: int = 400) -> str:
    """A pruning result as HTML: every original message coloured by its decision.

    Summaries and other messages the strategy created are shown as synthetic rows where they
    are sent; masked and truncated messages show what is sent, with the original folded.

    Args:
        pruned: the result of ``strategy.prune``.
        counter: counter for the per-message numbers (default: ``get_counter()``).
        max_rows: show at most this many rows (the first and last halves).
    """
    counter = counter or get_counter()
    originals = pruned.conversation.messages
    before = counter.count_messages(originals)
    counts = dict(zip((m.id for m in originals), counter.count_many(originals), strict=True))
    sent = {m.id: m for m in pruned.messages}
    rows = _synthetic_rows(pruned.messages, {m.id for m in originals}, counter)
    decided = [
        _decision_row(m, d, counts[m.id], sent.get(m.id), counter)
        for m, d in zip(originals, pruned.decisions, strict=True)
    ]
    rows_ordered = _interleave(originals, decided, rows, pruned.messages)
    actions: Counter[str] = Counter(d.action for d in pruned.decisions)
    tally = " · ".join(f"{a} {actions[a]}" for a in ACTION_COLOURS if actions[a])
    ok = "within" if pruned.budget_ok else "<b>over</b>"
    head = (
        f"<b>{escape(pruned.strategy)}</b> on {escape(pruned.conversation.id)} · sends "
        f"{len(pruned.messages)} of {len(originals)} messages · <b>{pruned.tokens:,}</b> tokens "
        f"{ok} budget {pruned.budget.available:,} (was {before:,}) · {escape(tally)}"
    )
    legend = _legend({**ACTION_COLOURS, "synthetic": SYNTHETIC_COLOUR})
    return _frame(head, legend, _limit(rows_ordered, max_rows))


def _decision_row(
    m: Message, d: Decision, tokens: int, sent: Message | None, counter: TokenCounter
) -> str:
    reason = f"{d.action}: {d.reason}" + (f" (score {d.score:.3g})" if d.score is not None else "")
    tags = [*_role_tags(m), reason]
    colour = ACTION_COLOURS.get(d.action, "#9e9e9e")
    if d.action in ("masked", "truncated") and sent is not None:
        extra = _fold("original", m.text, force=True)
        return _row(sent, counter.count(sent), colour, [*tags, f"was {tokens:,}"], extra)
    faded = d.action in ("dropped", "summarized")
    return _row(m, tokens, colour, tags, faded=faded)


def _synthetic_rows(
    sent: Sequence[Message], original_ids: set[str], counter: TokenCounter
) -> dict[str, str]:
    return {
        m.id: _row(
            m, counter.count(m), SYNTHETIC_COLOUR, ["synthetic", *_role_tags(m)], dashed=True
        )
        for m in sent
        if m.id not in original_ids
    }


def _interleave(
    originals: Sequence[Message],
    decided: list[str],
    synthetic: dict[str, str],
    sent: Sequence[Message],
) -> list[str]:
    """Original rows in order, each synthetic row placed before the next original it precedes."""
    position = {m.id: i for i, m in enumerate(originals)}
    before: dict[int, list[str]] = {}
    pending: list[str] = []
    for m in sent:
        if m.id in synthetic:
            pending.append(synthetic[m.id])
        elif pending and m.id in position:
            before.setdefault(position[m.id], []).extend(pending)
            pending = []
    out: list[str] = []
    for i, row in enumerate(decided):
        out += before.get(i, [])
        out.append(row)
    return out + pending


def _role_tags(m: Message) -> list[str]:
    tags = []
    if m.role == "user" and m.is_tool_output:
        tags.append("tool output")
    if m.tool_call_id:
        tags.append(f"result of {m.tool_call_id}")
    if m.name:
        tags.append(f"name={m.name}")
    return tags


def _row(
    m: Message,
    tokens: int,
    colour: str,
    tags: Iterable[str],
    extra: str = "",
    *,
    faded: bool = False,
    dashed: bool = False,
) -> str:
    border = f"3px {'dashed' if dashed else 'solid'} {colour}"
    style = f"border-left:{border};background:{colour}14;padding:3px 8px;margin:2px 0;" + (
        "opacity:0.55;" if faded else ""
    )
    tag_html = "".join(
        f" <span style='font-size:11px;opacity:0.8'>[{escape(t)}]</span>" for t in tags
    )
    header = (
        f"<div><b style='color:{colour}'>{escape(m.role)}</b> "
        f"<span style='{_MONO};opacity:0.7'>{escape(m.id)}</span> · {tokens:,} tok{tag_html}</div>"
    )
    body = _fold("", m.text) if m.text else ""
    return f"<div style='{style}'>{header}{body}{_calls(m)}{extra}</div>"


def _calls(m: Message) -> str:
    out = []
    for call in m.tool_calls:
        try:
            args = json.dumps(json.loads(call.arguments), indent=1, ensure_ascii=False)
        except json.JSONDecodeError:
            args = call.arguments
        text = f"→ {call.name}({args})  [{call.id}]"
        out.append(_fold("", text))
    return "".join(out)


def _fold(label: str, text: str, *, force: bool = False) -> str:
    lines = text.count("\n") + 1
    if not force and len(text) <= FOLD_CHARS and lines <= FOLD_LINES:
        return f"<div style='{_PRE}'>{escape(text)}</div>"
    preview = text[:PREVIEW_CHARS].replace("\n", " ")
    summary = f"{label + ': ' if label else ''}{preview}… ({len(text):,} chars, {lines} lines)"
    return (
        f"<details><summary style='cursor:pointer;{_MONO}'>{escape(summary)}</summary>"
        f"<div style='{_PRE}'>{escape(text)}</div></details>"
    )


def _legend(colours: dict[str, str]) -> str:
    items = "".join(
        f"<span style='border-left:10px solid {c};padding:0 8px 0 4px;margin-right:6px'>"
        f"{escape(name)}</span>"
        for name, c in colours.items()
    )
    return f"<div style='margin:4px 0;font-size:12px'>{items}</div>"


def _limit(rows: list[str], max_rows: int) -> list[str]:
    if len(rows) <= max_rows:
        return rows
    half = max_rows // 2
    hidden = len(rows) - 2 * half
    gap = f"<div style='padding:4px 8px;opacity:0.7'>… {hidden:,} rows not shown …</div>"
    return [*rows[:half], gap, *rows[-half:]]


def _frame(head: str, legend: str, rows: list[str]) -> str:
    return f"<div style='{_BOX}'><div>{head}</div>{legend}{''.join(rows)}</div>"
