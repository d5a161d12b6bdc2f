"""HTML views of conversations and pruning results: content, escaping, folding, well-formedness."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from ctxlab import datasets
from ctxlab.budget import Budget
from ctxlab.messages import Conversation, Message, ToolCall
from ctxlab.strategies.base import Decision, Pruned
from ctxlab.tokens import get_counter
from ctxlab.widgets._html import (
    ACTION_COLOURS,
    ROLE_COLOURS,
    SYNTHETIC_COLOUR,
    conversation_html,
)

VOID = {"br", "hr", "img", "meta", "input", "wbr"}


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Balance:
    p = _Balance()
    p.feed(html)
    p.close()
    assert p.stack == [], p.stack
    assert not ({"script", "style", "link", "iframe"} & set(p.tags))  # self-contained, inert
    return p


def _conv() -> Conversation:
    return Conversation(
        id="c<1>",
        messages=(
            Message(role="system", content="Be <b>nice</b> & brief.", id="s"),
            Message(role="user", content="<script>alert(1)</script>", id="u"),
            Message(
                role="assistant",
                tool_calls=(ToolCall(id="call_1", name="lookup", arguments='{"q": "<x>"}'),),
                id="a",
            ),
            Message(role="tool", content="line\n" * 40, tool_call_id="call_1", id="t"),
            Message(role="user", content="thanks", id="u2"),
        ),
    )


def test_conversation_html_escapes_and_counts() -> None:
    conv = _conv()
    html = conv._repr_html_()
    p = parse(html)
    text = "".join(p.text)
    assert "<script>" in text and "<script>" not in html  # shown, but escaped
    assert "&lt;b&gt;nice&lt;/b&gt; &amp; brief." in html
    counter = get_counter()
    assert f"{counter.count_messages(conv.messages):,}" in text
    for m in conv:
        assert f"{counter.count(m):,} tok" in text
    assert '→ lookup({\n "q": "<x>"\n})  [call_1]' in text  # tool call readable
    assert "&lt;x&gt;" in html
    assert "result of call_1" in text
    assert html.count("<details>") == 1  # only the 40-line tool output is folded
    for role in ("system", "user", "assistant", "tool"):
        assert ROLE_COLOURS[role] in html
    assert "Conversation c&lt;1&gt;" in html


def test_big_conversations_are_cut_in_the_middle() -> None:
    conv = datasets.load("locomo")[0]
    html = conversation_html(conv, max_rows=50)
    parse(html)
    assert f"… {len(conv) - 50:,} rows not shown …" in html
    assert ">D1:1<" in html and f">{conv[-1].id}<" in html and ">D5:1<" not in html


@pytest.mark.parametrize("name", ["taubench", "sweagent", "mtbench101"])
def test_real_conversations_render(name: str) -> None:
    for conv in datasets.load(name)[:3]:
        parse(conversation_html(conv))


def _pruned() -> Pruned:
    conv = _conv()
    summary = Message(
        role="system", content="Summary: user said <hi>.", id="sum", meta={"synthetic": True}
    )
    masked = conv[3].replace(content="[tool output removed]")
    sent = (conv[0], summary, conv[2], masked, conv[4])
    decisions = [
        Decision(index=0, message_id="s", action="kept", reason="pinned: system"),
        Decision(index=1, message_id="u", action="summarized", reason="old", into="sum"),
        Decision(index=2, message_id="a", action="kept", reason="recent", score=0.5),
        Decision(index=3, message_id="t", action="masked", reason="old tool output", into="t"),
        Decision(index=4, message_id="u2", action="kept", reason="newest user message"),
    ]
    counter = get_counter()
    return Pruned(
        conversation=conv,
        messages=sent,
        tokens=counter.count_messages(sent),
        budget=Budget(max_tokens=60),
        strategy="demo(max=1)",
        given_decisions=decisions,
    )


def test_pruned_html_shows_decisions_synthetic_rows_and_legend() -> None:
    pruned = _pruned()
    html = pruned._repr_html_()
    p = parse(html)
    text = "".join(p.text)
    for action, colour in ACTION_COLOURS.items():
        assert action in text and colour in html  # legend lists every decision
    assert SYNTHETIC_COLOUR in html and "[synthetic]" in text
    assert "summarized: old" in text and "masked: old tool output" in text and "(score 0.5)" in text
    assert "Summary: user said &lt;hi&gt;." in html
    # The summary sits where it is sent: before the next message sent after it, so after the
    # turn it folds in.
    order = [m.start() for m in re.finditer(r">(s|sum|u|a|t|u2)<", html)]
    ids = [html[i + 1 : html.index("<", i + 1)] for i in order]
    assert ids == ["s", "u", "sum", "a", "t", "u2"]
    # A masked message shows what is sent and keeps the original folded.
    assert "[tool output removed]" in text and "original: line line" in text
    assert f"<b>{pruned.tokens:,}</b> tokens" in html and "budget 60" in text
    assert "kept 3 · summarized 1 · masked 1" in text
