"""``litellm_trim``: LiteLLM's ``litellm.utils.trim_messages``, called as it is.

ctxlab messages become OpenAI chat dicts (`ctxlab.formats.openai_chat.to_openai`), LiteLLM
trims them to ``max_tokens`` = the budget, and what comes back is mapped to the originals by
position: LiteLLM merges the system messages into one (sent under the first system message's
id) and keeps a tail of the others, the oldest of which it may shorten. Unchanged originals
are kept, shortened ones truncated, the rest dropped. The output is not repaired (see
`ctxlab.strategies.peers`).

LiteLLM reads its price map from the network on import unless told otherwise, and rewrites
``TIKTOKEN_CACHE_DIR`` for the whole process when it counts tokens: the adapter imports it
offline and restores that variable after every call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import ConfigurationError, MissingDependencyError
from ctxlab.formats.openai_chat import to_openai
from ctxlab.messages import Conversation, Message
from ctxlab.strategies.base import Pruned
from ctxlab.strategies.peers._base import PeerStrategy
from ctxlab.tokens import TokenCounter

__all__ = ["LitellmTrim", "litellm_trim_messages"]

PACKAGE = "litellm"


def litellm_trim_messages() -> Any:
    """``litellm.utils.trim_messages``, imported offline (no price-map download)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    with _tiktoken_cache_kept():
        try:
            from litellm.utils import trim_messages
        except ImportError as exc:
            raise MissingDependencyError(PACKAGE, "peers", "the litellm_trim strategy") from exc
    return trim_messages


@contextmanager
def _tiktoken_cache_kept() -> Iterator[None]:
    before = os.environ.get("TIKTOKEN_CACHE_DIR")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = before


@dataclass(frozen=True, kw_only=True)
class LitellmTrim(PeerStrategy):
    """LiteLLM's ``trim_messages`` with ``max_tokens`` = the budget (needs the peers extra)."""

    name: ClassVar[str] = "litellm_trim"
    package: ClassVar[str] = PACKAGE

    def __post_init__(self) -> None:
        litellm_trim_messages()  # naming the strategy without the extra says which to install

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        originals = conversation.messages
        trim = litellm_trim_messages()
        with _tiktoken_cache_kept():
            returned = trim(to_openai(originals), max_tokens=budget.available)
        return self.sent(
            conversation, from_litellm(returned, originals), budget, counter, "shortened"
        )


def from_litellm(returned: Sequence[dict[str, Any]], originals: Sequence[Message]) -> list[Message]:
    """The originals behind LiteLLM's output, with the content LiteLLM left them.

    Its system messages stand for the originals' in order (when it trims, it returns one that
    merges them, taken for the first system message). Its other messages are
    originals in order (LiteLLM keeps what fits walking back from the newest, skipping what
    does not, and may shorten a message to ``start..end``): each is matched, from the newest
    back, to the nearest earlier original with the same role and tool call id whose text it
    equals or is a shortening of.

    Raises:
        ConfigurationError: a message matches no original (a LiteLLM version that trims
            differently); the message lists the roles LiteLLM returned.
    """
    systems = [m for m in originals if m.role == "system"]
    others = [m for m in originals if m.role != "system"]
    head = [d for d in returned if d.get("role") == "system"]
    tail = [d for d in returned if d.get("role") != "system"]
    if len(head) > len(systems):
        raise ConfigurationError(f"litellm_trim: cannot map LiteLLM's output {_roles(returned)}")
    matched: list[Message] = []
    j = len(others)
    for d in reversed(tail):
        j -= 1
        while j >= 0 and not _matches(d, others[j]):
            j -= 1
        if j < 0:
            raise ConfigurationError(
                f"litellm_trim: cannot map LiteLLM's output {_roles(returned)}"
            )
        matched.append(_with_content(others[j], d))
    # untrimmed, LiteLLM returns the system messages as they were; trimmed, merged into one
    # (which stands for the first); each is taken for the original at its place
    out = [_with_content(m, d) for m, d in zip(systems, head, strict=False)]
    return out + matched[::-1]


def _matches(d: dict[str, Any], m: Message) -> bool:
    if d.get("role") != m.role or d.get("tool_call_id") != m.tool_call_id:
        return False
    text = _text(d)
    return text == m.text or (
        len(text) <= len(m.text) + 2 and m.text.startswith(text.split("..")[0])
    )


def _roles(returned: Sequence[dict[str, Any]]) -> list[str]:
    return [str(d.get("role")) for d in returned]


def _text(d: dict[str, Any]) -> str:
    content = d.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))


def _with_content(m: Message, d: dict[str, Any]) -> Message:
    text = _text(d)
    return m if text == m.text else m.replace(content=text)
