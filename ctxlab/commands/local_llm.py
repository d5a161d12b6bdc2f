"""``ctxlab local-llm``: serve SmolLM2-135M on 127.0.0.1 for offline experiments.

The server runs in the foreground until Ctrl-C; it speaks the OpenAI chat API, so any
OpenAI-compatible client (ctxlab's providers, the proxy's routes, the ``openai`` package)
can use it with no network and no key.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from ctxlab.providers.local_llm import DEFAULT_N_CTX, LocalLLMServer

HELP = "Run the local SmolLM2 model behind an OpenAI-compatible server (offline; Ctrl-C stops)."

DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--n-ctx", type=int, default=DEFAULT_N_CTX, help=f"context size (default {DEFAULT_N_CTX})"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")


def run(args: argparse.Namespace) -> int:
    server = LocalLLMServer(
        port=args.port or None, host=args.host, n_ctx=args.n_ctx, n_threads=args.threads
    )
    print(f"starting the local LLM server (log: {server.log_path})...", file=sys.stderr)
    # SIGTERM (a plain `kill`) must stop the server too, not orphan it; SIGINT is set
    # explicitly because a process started in the background inherits it ignored.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    previous_int = signal.signal(signal.SIGINT, _interrupt)
    try:
        server.start()
        print(_banner(server), flush=True)
        status = server.wait()
    except KeyboardInterrupt:
        status = 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return status


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _banner(server: LocalLLMServer) -> str:
    return (
        f"Local LLM server: {server.base_url}  (model {server.model!r}, Ctrl-C stops it)\n"
        "Use it from Python:\n"
        "    from ctxlab.providers import get_provider\n"
        f'    provider = get_provider("{server.provider_spec}")'
    )
