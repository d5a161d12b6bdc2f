"""The extractive summarizer: the `summarize` strategy's offline default.

`ExtractiveSummarizer` needs no model. It splits the new messages into sentences, ranks them by
salience (BM25 similarity of each sentence to all of the new text, scored as `bm25s` scores
it, see `ctxlab.scoring.bm25_scores`, plus a bonus for key strings and names) and writes the
best ones, in their original order, as lines::

    (2023-05-08)
    [Caroline] I went to a LGBTQ support group yesterday and it was so powerful.
    [assistant] called edit_file({"path": "src/app.py"})
    [keys] src/app.py, 3f2a9c0b, 2023-05-08

It never rewrites what an earlier call wrote: old lines stay verbatim, and when the whole no
longer fits, the least salient old lines are dropped first (the new messages keep at least
`new_share` of the room). Results are cached, so replaying a conversation costs each fold once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ctxlab.errors import UsageError
from ctxlab.keys import key_strings
from ctxlab.messages import Message
from ctxlab.scoring import bm25_scores, terms
from ctxlab.summarizers.base import SummaryResult
from ctxlab.tokens import TokenCounter

__all__ = ["ExtractiveSummarizer"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_LINE = re.compile(r"^\[(?P<label>[^\]\n]{1,80})\] (?P<text>.*)$")
_DATE_LINE = re.compile(r"^\((?P<date>\d{4}-\d{2}-\d{2})\)$")
_PROPER = re.compile(r"(?<=[a-z,;:] )[A-Z][a-z]{2,}")  # capitalised, not sentence-initial
KEYS_LABEL = "keys"
_MIN_WORDS = 3  # distinct content words a sentence needs unless it holds a key string
_MAX_SENTENCES = 100  # per message: huge tool outputs would otherwise dominate the cost


@dataclass(frozen=True, slots=True)
class _Line:
    date: str | None
    label: str | None
    text: str
    order: tuple[int, int]

    def render(self) -> str:
        return f"[{self.label}] {self.text}" if self.label else self.text


@dataclass(frozen=True, kw_only=True)
class ExtractiveSummarizer:
    """Offline, deterministic summaries made of the most salient sentences.

    Guarantees:
        - the result has at most `max_tokens` tokens (by the counter it is given);
        - earlier summary lines are kept verbatim or dropped, never rewritten;
        - the same input always gives the same summary; usage is zero (no model is called).

    Attributes:
        new_share: share of `max_tokens` the new messages may always claim, dropping old lines.
        key_weight: salience bonus per key string (`ctxlab.keys`) in a sentence.
        max_line_tokens: longer sentences are cut (with "…") to this many tokens.
        keys_line: add a ``[keys]`` line with key strings of the new messages that the chosen
            sentences do not contain.
    """

    new_share: float = 0.5
    key_weight: float = 0.5
    max_line_tokens: int = 60
    keys_line: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.new_share <= 1:
            raise UsageError(f"new_share must be in (0, 1], got {self.new_share}")
        if self.max_line_tokens < 8:
            raise UsageError(f"max_line_tokens must be at least 8, got {self.max_line_tokens}")

    def summarize(
        self,
        previous_summary: str | None,
        new_messages: Sequence[Message],
        max_tokens: int,
        counter: TokenCounter,
    ) -> SummaryResult:
        """The previous summary plus the best sentences of `new_messages`, within `max_tokens`."""
        payload = tuple(_payload(m) for m in new_messages)
        key: Any = counter  # counters are shared objects: cached by identity
        text = _cached(self, previous_summary or "", payload, max(0, max_tokens), key)
        return SummaryResult(text=text)

    def _run(self, previous: str, payload: tuple[_Payload, ...], limit: int, count: _Count) -> str:
        old = _parse(previous)
        new = _candidates(payload, self.max_line_tokens, count)
        if limit <= 0 or not (old or new):
            return ""
        salience = self._salience([*old, *new], count)
        old_cost = sum(count.line(x) for x in old)
        new_room = max(limit - old_cost, math.ceil(self.new_share * limit))
        chosen_new = _fit(new, salience[len(old) :], min(new_room, limit), count)
        if self.keys_line:
            chosen_new += self._keys(payload, chosen_new, new_room, count)
        new_cost = sum(count.line(x) for x in chosen_new)
        chosen_old = _fit(old, salience[: len(old)], limit - new_cost, count)
        lines = chosen_old + chosen_new
        scores = {id(x): s for x, s in zip([*old, *new], salience, strict=True)}
        while lines and count.text(_render(lines)) > limit:
            # The [keys] line has no score of its own: it goes first.
            lines.remove(min(lines, key=lambda x: (scores.get(id(x), 0.0), x.order)))
        return _render(lines)

    def _salience(self, lines: Sequence[_Line], count: _Count) -> list[float]:
        """Informative sentences first: BM25 weight of their words, plus key strings and names.

        Each word of the summary input is a query term weighted 1 + ln(its document frequency),
        so a sentence scores by how many distinct, rare-ish words it holds, with a mild bonus
        for words the other sentences share (the topic).
        """
        speakers = frozenset(w for x in lines if x.label for w in terms(x.label))
        facts = [_line_facts(x.text, speakers) for x in lines]
        df: dict[str, int] = {}
        for d, _, _ in facts:
            for t in set(d):
                df[t] = df.get(t, 0) + 1
        bm25 = bm25_scores([d for d, _, _ in facts], {t: 1.0 + math.log(n) for t, n in df.items()})
        top = max(bm25, default=0.0) or 1.0
        out = []
        for x, (d, keys, names), b in zip(lines, facts, bm25, strict=True):
            if keys == 0 and len(set(d)) < _MIN_WORDS:
                out.append(0.0)  # small talk ("Thanks, Mel!") is never worth a line
                continue
            value = b / top + self.key_weight * (keys + 0.5 * names)
            # A mild length penalty: long sentences carry more, but cost more too.
            out.append(value / max(count.line(x), 1) ** 0.25)
        return out

    def _keys(
        self, payload: tuple[_Payload, ...], chosen: list[_Line], room: int, count: _Count
    ) -> list[_Line]:
        have = "\n".join(x.text for x in chosen)
        found: dict[str, int] = {}
        for p in payload:
            for k in sorted(key_strings(p.text + "\n" + p.calls)):
                if k not in have:
                    found[k] = found.get(k, 0) + 1
        if not found:
            return []
        spare = room - sum(count.line(x) for x in chosen)
        ranked = sorted(found, key=lambda k: (-found[k], k))
        keep: list[str] = []
        for k in ranked:
            line = _Line(None, KEYS_LABEL, ", ".join([*keep, k]), (len(payload), 0))
            if count.line(line) > spare:
                break
            keep.append(k)
        return [_Line(None, KEYS_LABEL, ", ".join(keep), (len(payload), 0))] if keep else []


@dataclass(frozen=True, slots=True)
class _Payload:
    label: str
    date: str | None
    text: str
    calls: str


def _payload(m: Message) -> _Payload:
    if m.is_tool_output:
        label = f"tool {m.name}" if m.name else "tool"
    else:
        speaker = m.meta.get("speaker")
        label = str(speaker) if speaker else (m.name or m.role)
    calls = "; ".join(f"called {c.name}({c.arguments})" for c in m.tool_calls)
    date = m.timestamp.date().isoformat() if m.timestamp is not None else None
    return _Payload(label=label, date=date, text=m.text, calls=calls)


class _Count:
    """Token counts of lines (memoised across calls: a running summary recounts its lines)."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self._lines: dict[_Line, int] = {}  # one call asks for the same lines many times

    def text(self, s: str) -> int:
        return _count_text(self.counter, s)

    def line(self, x: _Line) -> int:
        n = self._lines.get(x)
        if n is None:
            n = self._lines[x] = self.text(x.render()) + 1  # the newline that joins it
        return n


@lru_cache(maxsize=65536)
def _count_text(counter: Any, text: str) -> int:
    return int(counter.count_text(text))


@lru_cache(maxsize=512)
def _cached(
    summarizer: ExtractiveSummarizer,
    previous: str,
    payload: tuple[_Payload, ...],
    limit: int,
    counter: Any,
) -> str:
    return summarizer._run(previous, payload, limit, _Count(counter))


def _parse(summary: str) -> list[_Line]:
    lines, date = [], None
    for j, raw in enumerate(summary.splitlines()):
        raw = raw.strip()
        if not raw:
            continue
        if m := _DATE_LINE.match(raw):
            date = m["date"]
        elif m := _LINE.match(raw):
            lines.append(_Line(date, m["label"], m["text"], (-1, j)))
        else:
            lines.append(_Line(date, None, raw, (-1, j)))
    return lines


def _candidates(payload: Sequence[_Payload], max_tokens: int, count: _Count) -> list[_Line]:
    out = []
    for i, p in enumerate(payload):
        parts = _sentences(p.text)[:_MAX_SENTENCES]
        if p.calls:
            parts.append(p.calls)
        for j, sentence in enumerate(parts):
            out.append(_Line(p.date, p.label, _clip(sentence, max_tokens, count), (i, j)))
    return out


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    for para in text.splitlines():
        para = " ".join(para.split())
        if len(para) >= 3:
            out.extend(s for s in _SENTENCE_END.split(para) if len(s) >= 3)
    return out


def _clip(sentence: str, max_tokens: int, count: _Count) -> str:
    if count.text(sentence) <= max_tokens:
        return sentence
    words = sentence.split()
    keep = max(1, min(len(words), max_tokens * 2 // 3))
    while keep > 1 and count.text(" ".join(words[:keep]) + " …") > max_tokens:
        keep = keep * 3 // 4
    return " ".join(words[:keep]) + " …"


@lru_cache(maxsize=65536)
def _line_facts(text: str, speakers: frozenset[str]) -> tuple[tuple[str, ...], int, int]:
    """A line's content terms, number of key strings and of names (cached: lines recur)."""
    names = sum(1 for w in _PROPER.findall(text) if not _is_speaker(w, speakers))
    return _content_terms(text, speakers), len(key_strings(text)), names


@lru_cache(maxsize=65536)
def _content_terms(text: str, speakers: frozenset[str]) -> tuple[str, ...]:
    return tuple(t for t in terms(text) if not _is_speaker(t, speakers))


def _is_speaker(word: str, speakers: frozenset[str]) -> bool:
    """True for a speaker's name or a short form of it ("Mel" for "Melanie")."""
    w = word.lower()
    return any(s.startswith(w) for s in speakers) if len(w) >= 3 else w in speakers


def _fit(
    lines: Sequence[_Line], salience: Sequence[float], room: int, count: _Count
) -> list[_Line]:
    """The most salient lines whose total cost fits `room`, back in their original order."""
    ranked = sorted(range(len(lines)), key=lambda i: (-salience[i], lines[i].order))
    chosen, used = [], 0
    for i in ranked:
        if salience[i] <= 0:
            break
        cost = count.line(lines[i])
        if used + cost <= room:
            chosen.append(i)
            used += cost
    return [lines[i] for i in sorted(chosen)]


def _render(lines: Sequence[_Line]) -> str:
    out, date = [], None
    for x in lines:
        if x.date is not None and x.date != date:
            out.append(f"({x.date})")
            date = x.date
        out.append(x.render())
    return "\n".join(out)
