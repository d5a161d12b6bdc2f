"""`mask_tool_outputs`: observation masking; old tool outputs become short placeholders."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ctxlab.errors import UsageError
from ctxlab.messages import Message
from ctxlab.strategies._chunked import ChunkedWindow, check_shares
from ctxlab.strategies._rewrite import Changes, RewriteStrategy
from ctxlab.strategies.base import Action, BaseStrategy
from ctxlab.strategies.token_window import TokenWindow
from ctxlab.tokens import TokenCounter

__all__ = ["MaskToolOutputs", "placeholder_text"]


def placeholder_text(tool: str, tokens: int, lines: int) -> str:
    """The text that replaces a masked tool output."""
    return f"[{tool} output omitted to save context: {tokens} tokens, {lines} lines]"


@dataclass(frozen=True, kw_only=True)
class MaskToolOutputs(RewriteStrategy):
    """Replace tool outputs older than the last `keep_last` by a placeholder, then fit the budget.

    - Tool outputs are role ``tool`` messages and user messages tagged ``tool_output``; the
      newest `keep_last` of them stay verbatim.
    - An older output is replaced by a placeholder naming the tool and the size removed, and
      only when the placeholder is shorter; it keeps its id, role and tool-call id (decision
      ``masked``), so calls and results stay paired.
    - Assistant messages (reasoning and tool calls), system and user turns are never changed.
    - Then `fallback` (default `token_window`) enforces the budget and the other invariants;
      with ``fallback=None`` nothing is dropped and the budget is not enforced (for pipelines).
    - `trigger` and `target` are handed to a window fallback (`token_window`,
      `sliding_window`): with ``target < trigger`` it evicts in chunks, so between cuts the
      sent prefix changes only where an output is newly masked.

    Attributes:
        keep_last: how many of the newest tool outputs stay verbatim.
        fallback: the strategy that enforces the budget after masking.
        trigger: share of the budget at which the fallback window is cut, in (0, 1].
        target: share of the budget it is cut down to, in (0, trigger]; None: trigger.
    """

    name: ClassVar[str] = "mask_tool_outputs"
    keep_last: int = 3
    fallback: BaseStrategy | None = field(default_factory=TokenWindow)
    trigger: float = 1.0
    target: float | None = None

    def __post_init__(self) -> None:
        check_shares(self.name, self.trigger, self.target)
        if (self.trigger, self.target) != (1.0, None) and not isinstance(
            self.fallback, ChunkedWindow
        ):
            raise UsageError(
                "mask_tool_outputs trigger/target need a window fallback (token_window or "
                f"sliding_window), got {self.fallback!r}"
            )
        if isinstance(self.keep_last, bool) or self.keep_last < 0:
            raise UsageError(f"mask_tool_outputs keep_last must be >= 0, got {self.keep_last!r}")

    def _step(self) -> BaseStrategy | None:
        if (self.trigger, self.target) == (1.0, None) or self.fallback is None:
            return self.fallback
        assert isinstance(self.fallback, ChunkedWindow)  # checked in __post_init__
        step: BaseStrategy = dataclasses.replace(
            self.fallback,  # type: ignore[type-var]
            trigger=self.trigger,
            target=self.target,
        )
        return step

    def _rewrite(
        self, messages: Sequence[Message], counter: TokenCounter, cache: dict[str, Any]
    ) -> tuple[tuple[Message, ...], Changes]:
        outputs = _outputs(messages, cache)
        old = outputs[: max(0, len(outputs) - self.keep_last)]
        out = list(messages)
        changes: dict[int, tuple[Action, str]] = {}
        names: dict[str, str] = cache.setdefault("call_names", {})
        masks: dict[str, Message | None] = cache.setdefault("masks", {})
        for i in old:
            m = messages[i]
            if m.id not in masks:
                masks[m.id] = _mask(m, _tool_name(messages, i, names), counter)
            masked = masks[m.id]
            if masked is not None:
                out[i] = masked
                changes[i] = ("masked", f"tool output older than the last {self.keep_last}")
        return tuple(out), changes


def _outputs(messages: Sequence[Message], cache: dict[str, Any]) -> list[int]:
    """Indices of the tool outputs among `messages`.

    A replay rewrites growing prefixes of one conversation with one `cache`: only the messages
    added since the last call are scanned.
    """
    found: list[int] = cache.setdefault("outputs", [])
    scanned: int = cache.get("scanned", 0)
    if scanned > len(messages):  # not a longer prefix: start over
        found.clear()
        scanned = 0
    found.extend(i for i in range(scanned, len(messages)) if messages[i].is_tool_output)
    cache["scanned"] = len(messages)
    return found


def _tool_name(messages: Sequence[Message], i: int, names: dict[str, str]) -> str:
    """The tool that produced message i (its name, or the name of the call it answers).

    Observations sent as user messages name the command in the last assistant's
    ``meta["action"]`` (SWE-agent records the shell command there), else "tool".
    """
    m = messages[i]
    if m.name:
        return m.name
    if m.role != "tool":
        before = next((p for p in reversed(messages[:i]) if p.role == "assistant"), None)
        action = str(before.meta.get("action") or "").split() if before else []
        return action[0] if action else "tool"
    if m.tool_call_id and m.tool_call_id not in names:
        for j in range(i - 1, -1, -1):
            for call in messages[j].tool_calls:
                names.setdefault(call.id, call.name)
            if m.tool_call_id in names:
                break
    return names.get(m.tool_call_id or "", "tool")


def _mask(m: Message, tool: str, counter: TokenCounter) -> Message | None:
    size = counter.count(m) - counter.count(m.replace(content=""))
    text = placeholder_text(tool, size, m.text.count("\n") + 1 if m.text else 0)
    masked = m.replace(content=text)
    return masked if counter.count(masked) < counter.count(m) else None
