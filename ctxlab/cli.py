"""The ``ctxlab`` command: a thin dispatcher over ``ctxlab.commands.<name>`` modules.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Usage errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ctxlab.errors import CtxlabError, DataFormatError, UsageError

__all__ = ["main"]

# Command name -> module under ctxlab.commands (imported only when that command runs).
COMMANDS: dict[str, str] = {}


def _register(name: str) -> None:
    COMMANDS[name] = f"ctxlab.commands.{name.replace('-', '_')}"


for _name in ("compare", "inspect", "strategies", "serve", "local-llm"):
    _register(_name)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per available command."""
    from ctxlab import __version__

    parser = argparse.ArgumentParser(
        prog="ctxlab", description="Measure what context-pruning strategies cost and forget."
    )
    parser.add_argument("--version", action="version", version=f"ctxlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command not built yet
            raise
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ctxlab`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        status: int = args._run(args)
    except (UsageError, DataFormatError) as exc:
        print(f"ctxlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CtxlabError as exc:
        print(f"ctxlab {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
