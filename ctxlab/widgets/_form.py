"""The explorer's parameter form: which strategy fields are editable, their controls, help.

A strategy's simple parameters (numbers, flags, texts, choices, optional ints) get a control
each; the help beside them is the strategy's own ``Attributes:`` docstring entry
(`ctxlab.strategies._params.parameter_help`).
"""

from __future__ import annotations

import dataclasses
import html
import types
import typing
from collections.abc import Mapping
from typing import Any

from ctxlab.errors import UsageError
from ctxlab.strategies.base import Strategy

__all__ = ["editable_fields", "editor", "help_html", "read", "rebuild"]


def editable_fields(strategy: Strategy) -> dict[str, tuple[Any, tuple[Any, ...] | None]]:
    """The parameters a form can edit: name -> (current value, choices or None).

    Numbers, booleans, texts, choices (``Literal``) and optional ints are editable; nested
    strategies, scorers and callables are left to code.
    """
    target: Any = strategy
    if not dataclasses.is_dataclass(target):
        return {}
    try:
        hints = typing.get_type_hints(type(target))
    except (NameError, TypeError):
        hints = {}
    out: dict[str, tuple[Any, tuple[Any, ...] | None]] = {}
    for f in dataclasses.fields(target):
        if not (f.init and f.repr):
            continue
        value, hint = getattr(strategy, f.name), hints.get(f.name)
        if typing.get_origin(hint) is typing.Literal:
            out[f.name] = (value, typing.get_args(hint))
        elif hint in (bool, int, float, str) or _optional_int(hint):
            out[f.name] = (value, None)
    return out


def _optional_int(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    union = origin is typing.Union or origin is types.UnionType
    return union and set(typing.get_args(hint)) == {int, type(None)}


def editor(w: Any, name: str, value: Any, choices: tuple[Any, ...] | None) -> Any:
    """One form control for a parameter (an optional int is a text box: empty means None)."""
    if choices is not None:
        return w.Dropdown(options=list(choices), value=value, description=name)
    if isinstance(value, bool):
        return w.Checkbox(value=value, description=name, indent=False)
    if isinstance(value, int):
        return w.IntText(value=value, description=name)
    if isinstance(value, float):
        return w.FloatText(value=value, description=name)
    text = "" if value is None else str(value)
    return w.Text(value=text, description=name, placeholder="none")


def read(control: Any, current: Any) -> Any:
    if not isinstance(control.value, str) or isinstance(current, str):
        return control.value
    text = control.value.strip()
    if not text or text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{control.description} must be a whole number or empty") from None


def rebuild(strategy: Strategy, values: Mapping[str, Any]) -> Strategy:
    """The strategy with some parameters changed.

    Raises:
        UsageError: a value the strategy rejects (the message says which).
    """
    if not values:
        return strategy
    try:
        return typing.cast(Strategy, dataclasses.replace(typing.cast(Any, strategy), **values))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad parameters for {strategy.label}: {exc}") from exc


def help_html(strategy: Strategy, helps: Mapping[str, str]) -> str:
    """What each parameter of `strategy` does (editable or not), from its docstring."""
    if not helps:
        return ""
    items = "".join(
        f"<li><code>{html.escape(name)}</code>: {html.escape(text)}</li>"
        for name, text in helps.items()
    )
    name = html.escape(getattr(strategy, "name", "") or strategy.label)
    return (
        f"<details style='font-size:12px'><summary style='cursor:pointer'>what the parameters "
        f"of {name} do</summary><ul style='margin:2px 0'>{items}</ul></details>"
    )
