"""``ctxlab strategies``: every registered strategy with its parameters and what it does.

One block per registry name: the name and the first line of the class docstring, for a peer
the library it calls with its version, then one line per parameter with its type and default,
and under it what the parameter does (the class docstring's ``Attributes:`` entry).
``--json`` prints the same as a JSON list.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ctxlab import strategies
from ctxlab.strategies._params import parameter_help
from ctxlab.strategies.base import BaseStrategy

HELP = "List the pruning strategies, their parameters and defaults."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="only these strategies (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def describe(name: str) -> dict[str, Any]:
    """Name, one-line description and parameters (name, type, default) of one strategy."""
    cls = strategies.strategy_class(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    helps = parameter_help(cls)
    params = [
        {"name": f.name, "type": str(f.type), "default": _default(f), "help": helps.get(f.name, "")}
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.init
    ]
    info: dict[str, Any] = {"name": name, "description": doc[0] if doc else ""}
    library = getattr(cls, "library", None)
    if library is not None:  # a peer: the library it calls, with its version
        info["library"] = library()
    info["parameters"] = params
    return info


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value: Any = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if isinstance(value, BaseStrategy):
        return value.label
    if isinstance(value, tuple) and all(isinstance(v, BaseStrategy) for v in value):
        return "[" + ", ".join(v.label for v in value) + "]"
    return repr(value)


def run(args: argparse.Namespace) -> int:
    infos = [describe(name) for name in (args.names or strategies.names())]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        print(f"{info['name']:<18} {info['description']}")
        if "library" in info:
            print(f"    library: {info['library']}")
        for p in info["parameters"]:
            print(f"    {p['name']}: {p['type']} = {p['default']}")
            if p["help"]:
                print(f"        {p['help']}")
        if not info["parameters"]:
            print("    (no parameters)")
    return 0
