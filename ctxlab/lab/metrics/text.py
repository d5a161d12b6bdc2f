"""Text helpers the retention metrics share: what a message says, normalised words.

`full_text` is everything a model reads in a message: its text plus the name and arguments of
each tool call (identifiers and paths often live only there). `normalise` is the answer
normalisation of LoCoMo's evaluation: lowercase, punctuation removed, the words a/an/the/and
removed, whitespace collapsed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ctxlab.messages import Message

if TYPE_CHECKING:
    from ctxlab.lab.metrics.base import Facts

__all__ = [
    "STOPWORDS",
    "content_words",
    "full_text",
    "message_words",
    "normalise",
    "words_of",
]

# Anything that is neither a letter/digit nor whitespace, plus "_": Unicode punctuation and
# symbols, so curly quotes and dashes go the same way as their ASCII forms.
_PUNCT = re.compile(r"[^\w\s]|_")
_ARTICLES = re.compile(r"\b(?:a|an|the|and)\b")

# Function words left out of `content_words` (the usual English list, plus contractions
# as `normalise` leaves them: "don't" -> "dont").
_STOPWORD_TEXT = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
she her hers herself it its itself they them their theirs themselves what which who whom
this that these those am is are was were be been being have has had having do does did
doing a an the and but if or because as until while of at by for with about against
between into through during before after above below to from up down in out on off over
under again further then once here there when where why how all any both each few more
most other some such no nor not only own same so than too very s t can will just don
should now d ll m o re ve y im dont thats ive youre id ill also yes ok okay oh
"""
#: Function words left out of `content_words`.
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


def full_text(message: Message) -> str:
    """The message's text followed by the name and arguments of each tool call."""
    if not message.tool_calls:
        return message.text
    calls = (f"{c.name} {c.arguments}" for c in message.tool_calls)
    return "\n".join((message.text, *calls))


def normalise(text: str) -> str:
    """Lowercase, drop punctuation, drop a/an/the/and, collapse whitespace (LoCoMo's rule)."""
    text = _PUNCT.sub("", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def content_words(text: str) -> set[str]:
    """Distinct normalised words of `text` that are not `STOPWORDS`."""
    return {w for w in normalise(text).split() if w not in STOPWORDS}


def message_words(facts: Facts) -> tuple[tuple[str, ...], ...]:
    """Normalised words of each message of the conversation (computed once per conversation)."""
    return facts.memo(
        "text.words",
        lambda f: tuple(tuple(normalise(full_text(m)).split()) for m in f.conversation.messages),
    )


def words_of(facts: Facts, message: Message) -> tuple[str, ...]:
    """Normalised words of any message, e.g. a summary (cached per conversation by text)."""
    return facts.per_text("text.words", full_text(message), lambda t: tuple(normalise(t).split()))
