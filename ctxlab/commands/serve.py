"""``ctxlab serve --config proxy.toml``: run the OpenAI-compatible proxy with session memory.

The configuration file is described in `ctxlab.live.proxy.config`. ``--host`` and ``--port``
override the file's ``[server]`` values. The process stops cleanly on Ctrl-C or SIGTERM.

The server process tunes Python's garbage collector: a full collection walks every object the
process holds (the session histories its store keeps decoded, all of them alive) and stops
every request while it runs: 35-105 ms each, 8 of them in 20 s at 200 requests/s. The
modules loaded at start are frozen out of those walks, and full collections run 100 times less
often (``gc.set_threshold(700, 10, 1000)``); young cyclic garbage is still collected as usual.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
from typing import Any

from ctxlab.errors import MissingDependencyError

HELP = "Run the OpenAI-compatible proxy that keeps conversation memory per session."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="proxy TOML file")
    parser.add_argument("--host", help="address to bind (default: the file's server.host)")
    parser.add_argument("--port", type=int, help="port to bind (default: the file's server.port)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level; 'debug' also logs message content (never keys)",
    )


def run(args: argparse.Namespace) -> int:
    from ctxlab.live.proxy.config import load_config

    config = load_config(args.config)
    server = dataclasses.replace(
        config.server,
        host=args.host or config.server.host,
        port=args.port if args.port is not None else config.server.port,
        debug=config.server.debug or args.log_level == "debug",
    )
    config = dataclasses.replace(config, server=server)
    uvicorn = _require("uvicorn")
    _require("fastapi")
    _require("prometheus_client")
    from ctxlab.live.proxy import log
    from ctxlab.live.proxy.app import create_app

    log.configure(getattr(logging, args.log_level.upper()))
    app = create_app(config)
    _tune_gc()
    uvicorn.run(
        app,
        host=server.host,
        port=server.port,
        log_level=args.log_level,
        access_log=False,  # ctxlab writes its own access line, without keys or content
        server_header=False,
    )
    return 0


def _tune_gc() -> None:
    """Keep full collections from pausing every request (see the module docstring)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.replace("_", "-"), "proxy", "ctxlab serve") from exc
