"""``agents_tool_trim``: the OpenAI Agents SDK's ``ToolOutputTrimmer``, called as it is.

ctxlab messages become the SDK's Responses-style input items (`to_agents`): the first system
message, when it opens the conversation, becomes the agent's ``instructions``; user, assistant
and later system messages become ``message`` items; each tool call a ``function_call`` item
after its assistant message; each tool result a ``function_call_output`` item. The trimmer
gets them as ``CallModelData(model_data=ModelInputData(input=items, instructions=...))``,
exactly as ``RunConfig.call_model_input_filter`` receives them before a model call, and what
it returns is mapped back by position (it never adds, drops or reorders items): an original
whose items came back unchanged is kept, a tool result whose output it replaced by a preview
is truncated.

The trimmer knows no token budget: it shortens old tool outputs and nothing else, so the
``violations`` metric shows how far over the budget its output is (see
`ctxlab.strategies.peers`). Old means before the ``recent_turns``-th user message from the
end; a conversation with fewer user messages is sent unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ctxlab.budget import Budget
from ctxlab.errors import ConfigurationError, MissingDependencyError, UsageError
from ctxlab.messages import Conversation, Message, ToolCall
from ctxlab.strategies.base import Pruned
from ctxlab.strategies.peers._base import PeerStrategy
from ctxlab.tokens import TokenCounter

__all__ = ["AgentsItems", "AgentsToolTrim", "from_agents", "to_agents"]

PACKAGE = "openai-agents"


def _sdk() -> tuple[Any, Any, Any]:
    """``ToolOutputTrimmer``, ``CallModelData`` and ``ModelInputData`` from the SDK."""
    try:
        from agents.extensions import ToolOutputTrimmer
        from agents.run_config import CallModelData, ModelInputData
    except ImportError as exc:
        raise MissingDependencyError(PACKAGE, "peers", "the agents_tool_trim strategy") from exc
    return ToolOutputTrimmer, CallModelData, ModelInputData


@dataclass(frozen=True, kw_only=True)
class AgentsItems:
    """A conversation as the Agents SDK sees it.

    Attributes:
        instructions: the opening system message's text, or None.
        items: the input items, Responses-API style dicts.
        owners: for each item, the index of the ctxlab message it came from.
    """

    instructions: str | None
    items: list[dict[str, Any]]
    owners: list[int]


@dataclass(frozen=True, kw_only=True)
class AgentsToolTrim(PeerStrategy):
    """The Agents SDK's ``ToolOutputTrimmer`` on the conversation (needs the peers extra).

    Attributes:
        recent_turns: user messages from the end whose turns are never trimmed.
        max_output_chars: tool outputs longer than this (in characters) are trimmed.
        preview_chars: characters of a trimmed output kept as its preview.
        trimmable_tools: tool names whose outputs may be trimmed (None: every tool).
    """

    name: ClassVar[str] = "agents_tool_trim"
    package: ClassVar[str] = PACKAGE
    recent_turns: int = 2
    max_output_chars: int = 500
    preview_chars: int = 200
    trimmable_tools: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.trimmable_tools is not None:  # a spec string gives a list
            object.__setattr__(self, "trimmable_tools", tuple(self.trimmable_tools))
        self._trimmer()  # without the extra: says which to install; bad values: UsageError

    def _trimmer(self) -> Any:
        trimmer_class = _sdk()[0]
        try:
            return trimmer_class(
                recent_turns=self.recent_turns,
                max_output_chars=self.max_output_chars,
                preview_chars=self.preview_chars,
                trimmable_tools=self.trimmable_tools,
            )
        except ValueError as exc:
            raise UsageError(f"bad parameter for strategy {self.name!r}: {exc}") from exc

    def _prune(self, conversation: Conversation, budget: Budget, counter: TokenCounter) -> Pruned:
        originals = conversation.messages
        returned = call_trimmer(self._trimmer(), to_agents(originals))
        return self.sent(conversation, from_agents(returned, originals), budget, counter, "trimmed")


def call_trimmer(trimmer: Any, converted: AgentsItems) -> AgentsItems:
    """What the trimmer returns for these items, as a ``call_model_input_filter`` would get it.

    Raises:
        ConfigurationError: the SDK returned a different number of items (a version that
            trims differently); the adapter cannot map them back.
    """
    _, call_model_data, model_input_data = _sdk()
    model_data = model_input_data(input=converted.items, instructions=converted.instructions)
    out = trimmer(call_model_data(model_data=model_data, agent=None, context=None))
    if len(out.input) != len(converted.items):
        raise ConfigurationError(
            f"agents_tool_trim: ToolOutputTrimmer returned {len(out.input)} items for "
            f"{len(converted.items)}; this version of openai-agents is not supported"
        )
    return AgentsItems(
        instructions=out.instructions, items=list(out.input), owners=converted.owners
    )


def to_agents(messages: Sequence[Message]) -> AgentsItems:
    """The SDK's input items (and instructions) for ctxlab messages."""
    instructions = messages[0].text if messages and messages[0].role == "system" else None
    items: list[dict[str, Any]] = []
    owners: list[int] = []
    for i, m in enumerate(messages):
        if i == 0 and instructions is not None:
            continue
        for item in _items(m):
            items.append(item)
            owners.append(i)
    return AgentsItems(instructions=instructions, items=items, owners=owners)


def _items(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        return [{"type": "function_call_output", "call_id": m.tool_call_id, "output": m.text}]
    out: list[dict[str, Any]] = []
    if m.role != "assistant" or m.text or not m.tool_calls:
        out.append({"type": "message", "role": m.role, "content": m.text})
    for c in m.tool_calls:
        call = {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
        out.append(call)
    return out


def from_agents(converted: AgentsItems, originals: Sequence[Message]) -> list[Message]:
    """The originals behind the SDK's items, with the content the SDK left them.

    An original comes back as the same object when its text and tool calls are unchanged.
    """
    parts: dict[int, list[dict[str, Any]]] = {}
    for owner, item in zip(converted.owners, converted.items, strict=True):
        parts.setdefault(owner, []).append(item)
    out: list[Message] = []
    if converted.instructions is not None:
        first = originals[0]
        same = converted.instructions == first.text
        out.append(first if same else first.replace(content=converted.instructions))
    for i, items in parts.items():
        out.append(_message(originals[i], items))
    return out


def _message(m: Message, items: list[dict[str, Any]]) -> Message:
    text = "".join(_text(item) for item in items if item.get("type") != "function_call")
    calls = tuple(
        ToolCall(id=str(it["call_id"]), name=str(it["name"]), arguments=str(it["arguments"]))
        for it in items
        if it.get("type") == "function_call"
    )
    if text == m.text and calls == m.tool_calls:
        return m
    return m.replace(content=text, tool_calls=calls)


def _text(item: dict[str, Any]) -> str:
    value = (
        item.get("output") if item.get("type") == "function_call_output" else item.get("content")
    )
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(p.get("text", "")) for p in value if isinstance(p, dict))
    return "" if value is None else str(value)
