"""HTML views of a `Conversation` and a `Pruned`, for notebooks (``_repr_html_``).

Self-contained: inline styles only (no ``<style>`` block, no script), so the output looks the
same in JupyterLab, classic Notebook, VS Code and static renderers, on light and dark themes
(colours are borders and translucent backgrounds; text keeps the theme's colour). Every piece
of message text is escaped. Long contents are folded in ``<details>``. Every view carries
the class `NO_MATH`, so notebook front ends do not typeset ``$...$`` in messages as maths.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ctxlab.messages import Conversation, Message
from ctxlab.tokens import TokenCounter, get_counter

if TYPE_CHECKING:
    from ctxlab.pruned import Decision, Pruned

__all__ = [
    "anchor_id",
    "conversation_html",
    "pruned_html",
    "question_html",
    "token_bar_html",
    "token_parts",
]

ROLE_COLOURS = {"system": "#7f8c8d", "user": "#2f6fdb", "assistant": "#2e9d5b", "tool": "#c07a12"}
ACTION_COLOURS = {
    "kept": "#2e9d5b",
    "dropped": "#9e9e9e",
    "summarized": "#8a5cd1",
    "masked": "#c07a12",
    "truncated": "#d04a4a",
}
SYNTHETIC_COLOUR = "#8a5cd1"
HIGHLIGHT_COLOUR = "#e0a800"
#: Segments of the token bar: what the sent tokens are made of, then the room left.
PART_COLOURS = {
    "pinned": "#34495e",
    "kept": ACTION_COLOURS["kept"],
    "rewritten": ACTION_COLOURS["masked"],
    "summary": SYNTHETIC_COLOUR,
    "free": "#9e9e9e",
}
#: Class that tells JupyterLab's and Notebook's MathJax to leave the text alone, so that
#: two prices ("$121 ... $100") never become one italic formula.
NO_MATH = "tex2jax_ignore mathjax_ignore"
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


def pruned_html(
    pruned: Pruned,
    *,
    counter: TokenCounter | None = None,
    max_rows: int = 400,
    highlight: Collection[str] = (),
    anchors: str = "",
) -> str:
    """A pruning result as HTML: every original message coloured by its decision.

    Summaries and other messages the strategy created are shown as synthetic rows where they
    are sent; masked and truncated messages show what is sent, with the original folded.

    Args:
        pruned: the result of ``strategy.prune``.
        counter: counter for the per-message numbers (default: ``get_counter()``).
        max_rows: show at most this many rows (the first and last halves).
        highlight: ids of original messages to outline and tag (e.g. a question's evidence).
        anchors: when set, each original message's row gets the element id
            ``anchor_id(anchors, message id)``, the target of `question_html`'s links.
    """
    counter = counter or get_counter()
    originals = pruned.conversation.messages
    before = counter.count_messages(originals)
    counts = dict(zip((m.id for m in originals), counter.count_many(originals), strict=True))
    sent = {m.id: m for m in pruned.messages}
    rows = _synthetic_rows(pruned.messages, {m.id for m in originals}, counter)
    marked = frozenset(highlight)
    ids = [anchor_id(anchors, m.id) if anchors else "" for m in originals]
    decided = [
        _decision_row(m, d, counts[m.id], sent.get(m.id), counter, m.id in marked, anchor)
        for m, d, anchor in zip(originals, pruned.decisions, ids, strict=True)
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
    m: Message,
    d: Decision,
    tokens: int,
    sent: Message | None,
    counter: TokenCounter,
    marked: bool = False,
    anchor: str = "",
) -> str:
    reason = f"{d.action}: {d.reason}" + (f" (score {d.score:.3g})" if d.score is not None else "")
    tags = [*_role_tags(m), reason, *(["evidence"] if marked else [])]
    colour = ACTION_COLOURS.get(d.action, "#9e9e9e")
    if d.action in ("masked", "truncated") and sent is not None:
        extra = _fold("original", m.text, force=True)
        tags = [*tags, f"was {tokens:,}"]
        return _row(sent, counter.count(sent), colour, tags, extra, marked=marked, anchor=anchor)
    faded = d.action in ("dropped", "summarized")
    return _row(m, tokens, colour, tags, faded=faded, marked=marked, anchor=anchor)


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
    marked: bool = False,
    anchor: str = "",
) -> str:
    border = f"3px {'dashed' if dashed else 'solid'} {colour}"
    style = f"border-left:{border};background:{colour}14;padding:3px 8px;margin:2px 0;" + (
        "opacity:0.55;" if faded else ""
    )
    if marked:
        # An outline rather than a colour: the decision colour must stay readable.
        style += f"outline:2px solid {HIGHLIGHT_COLOUR};outline-offset:-1px;"
    tag_html = "".join(
        f" <span style='font-size:11px;opacity:0.8'>[{escape(t)}]</span>" for t in tags
    )
    header = (
        f"<div><b style='color:{colour}'>{escape(m.role)}</b> "
        f"<span style='{_MONO};opacity:0.7'>{escape(m.id)}</span> · {tokens:,} tok{tag_html}</div>"
    )
    body = _fold("", m.text) if m.text else ""
    where = f" id='{escape(anchor)}'" if anchor else ""
    return f"<div{where} style='{style}'>{header}{body}{_calls(m)}{extra}</div>"


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
    return f"<div class='{NO_MATH}' style='{_BOX}'><div>{head}</div>{legend}{''.join(rows)}</div>"


def token_parts(pruned: Pruned, counter: TokenCounter | None = None) -> dict[str, int]:
    """What the tokens sent are made of, and the room left in the budget.

    Keys, in bar order: ``pinned`` (messages kept because they must be: the first system
    message, the newest user message, explicit pins; plus the request's reply priming),
    ``kept`` (other originals sent verbatim), ``rewritten`` (masked or truncated originals),
    ``summary`` (messages the strategy created), ``free`` (budget left, 0 when over).
    The first four add up to ``pruned.tokens``.
    """
    counter = counter or get_counter()
    by_id = {d.message_id: d for d in pruned.decisions}
    parts = dict.fromkeys(PART_COLOURS, 0)
    parts["pinned"] = counter.count_messages(())
    for m, n in zip(pruned.messages, counter.count_many(pruned.messages), strict=True):
        d = by_id.get(m.id)
        if d is None:
            parts["summary"] += n
        elif d.action in ("masked", "truncated"):
            parts["rewritten"] += n
        elif d.reason.startswith("pinned"):
            parts["pinned"] += n
        else:
            parts["kept"] += n
    parts["free"] = max(0, pruned.budget.available - pruned.tokens)
    return parts


def token_bar_html(pruned: Pruned, counter: TokenCounter | None = None) -> str:
    """A stacked bar of `token_parts` over the budget, with the numbers written out."""
    parts = token_parts(pruned, counter)
    available = pruned.budget.available
    scale = max(available, pruned.tokens, 1)
    segments = "".join(
        f"<div title='{name}: {n:,} tokens' style='width:{100 * n / scale:.3f}%;"
        f"background:{PART_COLOURS[name]}{'55' if name == 'free' else ''}'></div>"
        for name, n in parts.items()
        if n
    )
    frame = "display:flex;height:14px;border:1px solid #8886;margin:3px 0"
    bar = f"<div style='{frame}'>{segments}</div>"
    over = pruned.tokens - available
    status = f"<b style='color:#d04a4a'>{over:,} over</b>" if over > 0 else "within budget"
    numbers = " · ".join(f"{name} {n:,}" for name, n in parts.items())
    head = (
        f"<b class='ctxlab-sent'>{pruned.tokens:,}</b> of {available:,} tokens sent "
        f"({status}) · {escape(numbers)}"
    )
    return (
        f"<div class='{NO_MATH}' style='{_BOX}'><div>{head}</div>{bar}{_legend(PART_COLOURS)}</div>"
    )


_DECISION_WORDS = {
    "kept": "kept verbatim",
    "dropped": "dropped",
    "summarized": "folded into the summary",
    "masked": "masked",
    "truncated": "truncated",
}


def anchor_id(anchors: str, message_id: str) -> str:
    """The element id of a message's row in a view drawn with ``anchors``."""
    return f"{anchors}-{message_id}"


def _jump(anchors: str, message_id: str) -> str:
    """A link that scrolls the row of `message_id` to the top third of its scrolling box.

    Only that box scrolls (and the page, as little as shows the row, when the row is still
    out of sight), so the controls above it stay where they are; without a scrolling box, or
    with scripts stripped, the link is a plain fragment link.
    """
    target = escape(anchor_id(anchors, message_id))
    script = (
        "var e=document.getElementById(this.getAttribute('href').slice(1)),b=e&&e.parentElement;"
        "while(b&&!(b.scrollHeight>b.clientHeight&&"
        "/auto|scroll/.test(getComputedStyle(b).overflowY)))b=b.parentElement;"
        "if(!b||b===document.scrollingElement)return true;"
        "b.scrollTop+=e.getBoundingClientRect().top-b.getBoundingClientRect().top"
        "-b.clientHeight/3;var r=e.getBoundingClientRect();"
        "if(r.top<0||r.bottom>innerHeight)e.scrollIntoView({block:'nearest'});return false;"
    )
    return (
        f"<a class='ctxlab-jump' href='#{target}' onclick=\"{script}\" "
        f"title='scroll the view to this turn' style='{_MONO}'>{escape(message_id)} ↓</a>"
    )


def question_html(pruned: Pruned, question: Mapping[str, Any], *, anchors: str = "") -> str:
    """A LoCoMo question, its gold answer, and what became of each of its evidence turns.

    With `anchors` (the value given to `pruned_html` for the view beside it), each evidence
    turn that is in the conversation is a link that scrolls the view to it.
    """
    by_id = {d.message_id: d for d in pruned.decisions}
    evidence = [str(e) for e in question.get("evidence") or ()]
    rows = []
    for e in evidence:
        d = by_id.get(e)
        if d is None:
            word, colour = "not in this conversation (prefix)", "#9e9e9e"
        else:
            word, colour = _DECISION_WORDS.get(d.action, d.action), ACTION_COLOURS[d.action]
        mark = "✓" if d is not None and d.action == "kept" else "✗"
        # The reason carries a retrieval score and rank where the strategy ranked the turn.
        why = f" <span style='color:#666'>({escape(d.reason)})</span>" if d and d.reason else ""
        name = _jump(anchors, e) if anchors and d is not None else (
            f"<span style='{_MONO}'>{escape(e)}</span>")  # fmt: skip
        rows.append(f"<li>{name} <b style='color:{colour}'>{mark} {escape(word)}</b>{why}</li>")
    kept = sum(1 for e in evidence if e in by_id and by_id[e].action == "kept")
    text, answer = str(question.get("question", "")), str(question.get("answer", ""))
    head = (
        f"<b>Q</b> {escape(text)}<br><b>A</b> {escape(answer)} · category "
        f"{escape(str(question.get('category')))} · evidence kept verbatim: "
        f"<b>{kept} of {len(evidence)}</b>"
    )
    items = f"<ul style='margin:2px 0'>{''.join(rows)}</ul>"
    return f"<div class='{NO_MATH}' style='{_BOX}'><div>{head}</div>{items}</div>"
