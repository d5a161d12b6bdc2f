"""Each strategy parameter's help, read from the ``Attributes:`` sections of the docstrings.

A strategy documents its fields once, in its class docstring (Google style), and a field it
inherits in the docstring of the class that declares it. The explorer's form and
``ctxlab strategies`` show that text; nothing keeps a second copy.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

__all__ = ["parameter_help"]

_SECTION = re.compile(r"^(\s*)Attributes:\s*$")
# ``name: text``, ``name (type): text`` or ``a, b, c: text`` (one text for several names).
_ENTRY = re.compile(r"^(\w+(?:,\s*\w+)*)(?:\s*\([^)]*\))?:\s*(.*)$")


def parameter_help(cls: type) -> dict[str, str]:
    """Parameter name -> help text, for every init field of the dataclass `cls` documented.

    The class's own ``Attributes:`` entry wins over one of a base class. Continuation lines
    of an entry are joined into one line.
    """
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        for name, text in _attributes(inspect.getdoc(klass) or "").items():
            found.setdefault(name, text)
    if not dataclasses.is_dataclass(cls):
        return {}
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    return {name: found[name] for name in fields if name in found}


def _attributes(doc: str) -> dict[str, str]:
    """The entries of a Google-style ``Attributes:`` section of `doc`."""
    lines = doc.splitlines()
    heads = [(i, m) for i, line in enumerate(lines) if (m := _SECTION.match(line))]
    if not heads:
        return {}
    start, head = heads[0]
    indent = len(head.group(1))
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    entry_indent: int | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth <= indent:
            break  # the next section
        entry_indent = depth if entry_indent is None else entry_indent
        match = _ENTRY.match(line.strip())
        if depth == entry_indent and match:
            current = [match.group(2).strip()]
            for name in match.group(1).split(","):
                entries[name.strip()] = current
        else:
            current.append(line.strip())
    return {name: " ".join(p for p in parts if p) for name, parts in entries.items()}
