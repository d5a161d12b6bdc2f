"""How stores write a message: one compact JSON object in ctxlab's lossless OpenAI chat form."""

from __future__ import annotations

import json

from ctxlab.formats.openai_chat import message_from_openai, to_openai
from ctxlab.messages import Message

__all__ = ["decode", "encode"]


def encode(message: Message) -> str:
    """The message as JSON text (id, timestamp and meta included)."""
    (body,) = to_openai([message], extras=True)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> Message:
    """The message `encode` wrote."""
    return message_from_openai(json.loads(text), where="stored message")
