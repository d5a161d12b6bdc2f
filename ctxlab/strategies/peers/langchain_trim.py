"""``langchain_trim``: LangChain's ``trim_messages``, called as it is.

ctxlab messages become LangChain messages (system, human, AI with its tool calls, tool results)
carrying the original id, `trim_messages` picks what to send, and each message it returns is
mapped back by id: unchanged originals are kept, changed ones (``allow_partial``) truncated,
the rest dropped. The output is not repaired (see `ctxlab.strategies.peers`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ctxlab.budget import Budget
from ctxlab.errors import MissingDependencyError, UsageError
from ctxlab.messages import Conversation, Message
from ctxlab.strategies.base import Pruned
from ctxlab.strategies.peers._base import PeerStrategy
from ctxlab.tokens import TokenCounter

__all__ = ["SPLITTERS", "LangchainTrim", "from_langchain", "to_langchain"]

PACKAGE = "langchain-core"


def _sentences(text: str) -> list[str]:
    """Pieces ending after ``.``, ``!`` or ``?``; joined, they give `text` back."""
    return [p for p in re.split(r"(?<=[.!?])(?=\s)", text) if p]


def _words(text: str) -> list[str]:
    """Pieces starting at each word; joined, they give `text` back."""
    return [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]


#: Splitters a spec string can name (``text_splitter="sentences"``); ``"lines"`` is
#: LangChain's own default (split after each newline).
SPLITTERS: dict[str, Callable[[str], list[str]] | None] = {
    "lines": None,
    "sentences": _sentences,
    "words": _words,
}


def _langchain() -> Any:
    try:
        from langchain_core.messages import utils
    except ImportError as exc:
        raise MissingDependencyError(PACKAGE, "peers", "the langchain_trim strategy") from exc
    return utils


@dataclass(frozen=True, kw_only=True)
class LangchainTrim(PeerStrategy):
    """LangChain's ``trim_messages`` with ``max_tokens`` = the budget (needs the peers extra).

    Attributes:
        counter: ``"approximate"`` (LangChain's ``count_tokens_approximately``, its default)
            or ``"exact"`` (the run's ctxlab counter over the whole list, reply priming
            included).
        strategy, include_system, start_on, end_on, allow_partial: passed to
            ``trim_messages`` as they are.
        text_splitter: how ``allow_partial`` splits a message's text: a name in `SPLITTERS`
            (``"lines"``, ``"sentences"``, ``"words"``), a function ``str -> list[str]`` or a
            LangChain ``TextSplitter``; None: LangChain's default (lines).
    """

    name: ClassVar[str] = "langchain_trim"
    package: ClassVar[str] = PACKAGE
    counter: Literal["approximate", "exact"] = "approximate"
    strategy: Literal["last", "first"] = "last"
    include_system: bool = True
    start_on: str | None = "human"
    end_on: str | None = None
    allow_partial: bool = False
    text_splitter: str | Callable[[str], list[str]] | Any | None = None

    def __post_init__(self) -> None:
        _langchain()  # naming the strategy without the extra says which one to install
        if isinstance(self.text_splitter, str) and self.text_splitter not in SPLITTERS:
            raise UsageError(
                f"unknown text_splitter {self.text_splitter!r} for strategy {self.name!r}; "
                f"use one of {', '.join(SPLITTERS)}, or pass a function from Python"
            )

    def trim_kwargs(self, counter: TokenCounter, originals: Sequence[Message]) -> dict[str, Any]:
        """Keywords for ``trim_messages`` but ``max_tokens`` (the token counter included)."""
        utils = _langchain()
        token_counter: Any = utils.count_tokens_approximately
        if self.counter == "exact":
            by_id = {m.id: m for m in originals}

            def token_counter(messages: list[Any]) -> int:
                return counter.count_messages(from_langchain(messages, by_id))

        kwargs: dict[str, Any] = {
            "token_counter": token_counter,
            "strategy": self.strategy,
            "include_system": self.include_system,
            "start_on": self.start_on,
            "end_on": self.end_on,
            "allow_partial": self.allow_partial,
        }
        splitter = self.text_splitter
        splitter = SPLITTERS[splitter] if isinstance(splitter, str) else splitter
        if splitter is not None:
            kwargs["text_splitter"] = splitter
        return kwargs

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        originals = conversation.messages
        trimmed = _langchain().trim_messages(
            to_langchain(originals),
            max_tokens=budget.available,
            **self.trim_kwargs(counter, originals),
        )
        return self.sent(
            conversation,
            from_langchain(trimmed, {m.id: m for m in originals}),
            budget,
            counter,
            "cut",
        )


def to_langchain(messages: Sequence[Message]) -> list[Any]:
    """LangChain messages for ctxlab ones, each carrying the original's id."""
    lc = _langchain()
    out: list[Any] = []
    for m in messages:
        if m.role == "system":
            out.append(lc.SystemMessage(content=m.text, id=m.id))
        elif m.role == "user":
            out.append(lc.HumanMessage(content=m.text, id=m.id))
        elif m.role == "tool":
            out.append(lc.ToolMessage(content=m.text, id=m.id, tool_call_id=m.tool_call_id))
        else:
            calls = [{"name": c.name, "args": _args(c.arguments), "id": c.id} for c in m.tool_calls]
            out.append(lc.AIMessage(content=m.text, id=m.id, tool_calls=calls))
    return out


def _args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def from_langchain(messages: Sequence[Any], by_id: dict[str, Message]) -> list[Message]:
    """The originals behind LangChain messages, with the content LangChain left them."""
    out = []
    for lm in messages:
        m = by_id[lm.id]
        text = lm.content if isinstance(lm.content, str) else _join(lm.content)
        out.append(m if text == m.text else m.replace(content=text))
    return out


def _join(parts: Sequence[Any]) -> str:
    return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in parts)
