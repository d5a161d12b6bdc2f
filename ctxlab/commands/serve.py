"""``ctxlab serve --config proxy.toml``: run the OpenAI-compatible proxy with session memory.

The configuration file is described in `ctxlab.live.proxy.config`. ``--host`` and ``--port``
override the file's ``[server]`` values. The process stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    uvicorn.run(
        app,
        host=server.host,
        port=server.port,
        log_level=args.log_level,
        access_log=False,  # ctxlab writes its own access line, without keys or content
        server_header=False,
    )
    return 0


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.replace("_", "-"), "proxy", "ctxlab serve") from exc
