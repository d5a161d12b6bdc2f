"""How stores write a message: one compact JSON object in ctxlab's lossless OpenAI chat form."""

from __future__ import annotations

import functools
import json

from ctxlab.formats.openai_chat import message_from_openai, to_openai
from ctxlab.messages import Message

__all__ = ["decode", "encode"]


def encode(message: Message) -> str:
    """The message as JSON text (id, timestamp and meta included)."""
    (body,) = to_openai([message], extras=True)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=16384)
def decode(text: str) -> Message:
    """The message `encode` wrote.

    Cached by the stored text: each turn reloads a session's whole history, and decoding
    (JSON, validation, deep-freezing ``meta``) would otherwise dominate a turn. Messages are
    frozen, so every reader can share one.
    """
    return message_from_openai(json.loads(text), where="stored message")
