"""The values a conversation is made of: `Message`, `ToolCall`, `Conversation`.

All three are frozen. Token counts are not stored on them: a `TokenCounter` caches counts by
content. `meta` and `annotations` are deep-frozen (`FrozenDict`, tuples) so a strategy can never
change its input by accident; `thaw()` turns them back into plain JSON values.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal, TypeAlias, overload

from ctxlab.errors import UsageError

__all__ = [
    "ROLES",
    "Content",
    "ContentPart",
    "Conversation",
    "FrozenDict",
    "ImagePart",
    "Message",
    "Role",
    "Source",
    "TextPart",
    "ToolCall",
    "freeze",
    "new_id",
    "thaw",
]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")


def new_id(prefix: str = "msg") -> str:
    """A fresh random id, e.g. ``msg_3f2a9c0b1d4e5f60``."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class FrozenDict(Mapping[str, Any]):
    """An immutable, hashable, picklable mapping (values are frozen too, see `freeze`)."""

    __slots__ = ("_data", "_hash")
    _data: dict[str, Any]
    _hash: int | None

    def __init__(self, data: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        merged = dict(data or {}, **kwargs)
        object.__setattr__(self, "_data", {str(k): freeze(v) for k, v in merged.items()})
        object.__setattr__(self, "_hash", None)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(tuple(sorted(self._data.items(), key=_k0)))
            object.__setattr__(self, "_hash", h)
        return h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == {k: freeze(v) for k, v in other.items()}
        return NotImplemented

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenDict is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (self._data,))

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"


def _k0(item: tuple[str, Any]) -> str:
    return item[0]


def freeze(value: Any) -> Any:
    """Deep-freeze JSON-like data: dicts become `FrozenDict`, lists and sets become tuples."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return tuple(sorted(freeze(v) for v in value))
    return value


def thaw(value: Any) -> Any:
    """Inverse of `freeze`: plain dicts and lists, ready for `json.dumps`."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    """One function call requested by an assistant message.

    Attributes:
        id: the call id a tool result refers to (`Message.tool_call_id`).
        name: the function name.
        arguments: the arguments as JSON text, exactly as the model wrote them.
    """

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, kw_only=True, slots=True)
class TextPart:
    """A text part of a multi-part message (OpenAI ``{"type": "text"}``)."""

    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ImagePart:
    """An image part (OpenAI ``{"type": "image_url"}``); `url` may be a ``data:`` URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


ContentPart: TypeAlias = TextPart | ImagePart
Content: TypeAlias = str | tuple[ContentPart, ...]


@dataclass(frozen=True, kw_only=True)
class Message:
    """One chat message.

    Attributes:
        role: system, user, assistant or tool.
        content: a string, or a tuple of `TextPart`/`ImagePart` (metrics read the text parts).
        name: optional participant name (counts toward tokens).
        tool_calls: calls an assistant message requests.
        tool_call_id: for role ``tool``, the id of the call this message answers.
        id: unique within a conversation; generated when omitted.
        timestamp: when the message was written, if known.
        meta: free-form data: ``speaker``, ``dia_id``, ``session``, ``tool_output`` (an
            observation that a format sends as a user message), ``synthetic`` (made by a
            strategy), source fields.
    """

    role: Role
    content: Content = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    id: str = field(default_factory=new_id)
    timestamp: datetime | None = None
    meta: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise UsageError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")
        # Runtime coercion of loosely typed input (lists from JSON, plain dicts).
        content: Any = self.content
        if isinstance(content, list):
            object.__setattr__(self, "content", tuple(content))
        elif not isinstance(content, (str, tuple)):
            raise UsageError(
                f"message content must be a str or a tuple of parts, not {type(content).__name__}"
            )
        calls: Any = self.tool_calls
        if not isinstance(calls, tuple):
            object.__setattr__(self, "tool_calls", tuple(calls))
        meta: Any = self.meta
        if not isinstance(meta, FrozenDict):
            object.__setattr__(self, "meta", FrozenDict(self.meta))

    __hash__ = None  # type: ignore[assignment]  # messages compare by value; use `id` as a key

    @property
    def text(self) -> str:
        """The text of the message: the content string, or its text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def is_tool_output(self) -> bool:
        """True for tool results: role ``tool``, or a user message tagged ``tool_output``."""
        return self.role == "tool" or bool(self.meta.get("tool_output"))

    @property
    def is_user_turn(self) -> bool:
        """True for what the user said: role ``user`` and not tagged ``tool_output``."""
        return self.role == "user" and not self.is_tool_output

    @property
    def is_synthetic(self) -> bool:
        """True for messages a strategy created (summaries, placeholders)."""
        return bool(self.meta.get("synthetic"))

    def replace(self, **changes: Any) -> Message:
        """A copy with some fields changed (the id is kept unless given)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        text = self.text.replace("\n", " ")
        short = text if len(text) <= 60 else text[:57] + "..."
        calls = f", tool_calls={len(self.tool_calls)}" if self.tool_calls else ""
        return f"Message(role={self.role!r}, id={self.id!r}, content={short!r}{calls})"


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """Where a conversation was read from.

    Attributes:
        dataset: a short dataset name (``locomo``, ``taubench``...), used to group reports.
        path: the file it was read from.
        record: its 0-based index in that file.
    """

    dataset: str | None = None
    path: str | None = None
    record: int | None = None

    def __str__(self) -> str:
        # The file name, not the whole path: short, and the same on every machine.
        parts = [self.dataset or "?"]
        if self.path:
            parts.append(self.path.replace("\\", "/").rsplit("/", 1)[-1])
        return ":".join(parts) + (f"#{self.record}" if self.record is not None else "")


@dataclass(frozen=True, kw_only=True)
class Conversation:
    """An ordered, immutable list of messages plus what evaluation needs to know about it.

    Attributes:
        id: the conversation id (LoCoMo sample_id, tau-bench task/trial, file stem...).
        messages: the messages, in order; ids are unique.
        source: where it was read from.
        annotations: what retention metrics need, as frozen JSON data. Known keys:
            ``questions`` (LoCoMo: question, answer, category, evidence message ids),
            ``gold_actions`` (tau-bench), ``patch``/``patch_paths`` (SWE-agent),
            ``task``/``reference_answer`` (MT-Bench-101).
    """

    id: str
    messages: tuple[Message, ...] = ()
    source: Source = field(default_factory=Source)
    annotations: Mapping[str, Any] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        messages: Any = self.messages
        if not isinstance(messages, tuple):
            object.__setattr__(self, "messages", tuple(messages))
        annotations: Any = self.annotations
        if not isinstance(annotations, FrozenDict):
            object.__setattr__(self, "annotations", FrozenDict(self.annotations))
        seen: set[str] = set()
        for m in self.messages:
            if m.id in seen:
                raise UsageError(f"conversation {self.id!r}: duplicate message id {m.id!r}")
            seen.add(m.id)

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    @overload
    def __getitem__(self, index: int) -> Message: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Message, ...]: ...
    def __getitem__(self, index: int | slice) -> Message | tuple[Message, ...]:
        return self.messages[index]

    @property
    def dataset(self) -> str | None:
        """Shortcut for ``source.dataset``."""
        return self.source.dataset

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {m.id: i for i, m in enumerate(self.messages)}

    def index_of(self, message_id: str) -> int:
        """Position of the message with this id; raises KeyError when absent."""
        return self._positions[message_id]

    def prefix(self, k: int) -> Conversation:
        """The first `k` messages as a conversation (same id, source and annotations)."""
        return dataclasses.replace(self, messages=self.messages[:k])

    def with_messages(self, messages: Sequence[Message]) -> Conversation:
        """A copy holding other messages (same id, source and annotations)."""
        return dataclasses.replace(self, messages=tuple(messages))

    def __repr__(self) -> str:
        return (
            f"Conversation(id={self.id!r}, messages={len(self.messages)}, "
            f"source={str(self.source)!r})"
        )

    def _repr_html_(self) -> str:
        from ctxlab.widgets._html import conversation_html

        return conversation_html(self)
