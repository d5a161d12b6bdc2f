"""Turns per second through `Session` with each store, the scripted provider answering at once.

Run: python benchmarks/bench_session.py [--turns N] [--sessions N] [--budget N]

Each store runs the same workload: `--sessions` sessions of `--turns` turns each, the user
lines and replies of LoCoMo's first sample, pruned by `token_window`. Reported per store:
turns/s through `send` (sync) and `asend` (async, sessions run concurrently), and the store's
own share: `append_turn` + `load` per turn with no provider and no pruning. Redis is a real
``redis-server`` started here on 127.0.0.1 (skipped when the binary is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ctxlab._config import data_dir
from ctxlab.live.session import Session
from ctxlab.live.stores import SessionKey, Store, open_store
from ctxlab.messages import Message
from ctxlab.providers.scripted import ScriptedProvider
from ctxlab.tokens import get_counter


def locomo_lines() -> list[str]:
    root = data_dir()
    assert root is not None, "run from a source checkout (or set CTXLAB_DATA)"
    sample = json.loads((root / "locomo" / "locomo7.json").read_text())[0]["conversation"]
    return [t["text"] for n in range(1, 40) for t in sample.get(f"session_{n}", [])]


@contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


def sync_run(store: Store, lines: list[str], args: argparse.Namespace, tag: str) -> float:
    provider = ScriptedProvider(lines, cycle=True)
    start = time.perf_counter()
    for s in range(args.sessions):
        session = Session(
            provider, "token_window", args.budget, store=store, session_id=f"{tag}{s}"
        )
        for t in range(args.turns):
            session.send(lines[(s + t) % len(lines)])
    return args.sessions * args.turns / (time.perf_counter() - start)


def async_run(store: Store, lines: list[str], args: argparse.Namespace, tag: str) -> float:
    provider = ScriptedProvider(lines, cycle=True)

    async def one(s: int) -> None:
        session = Session(
            provider, "token_window", args.budget, store=store, session_id=f"{tag}{s}"
        )
        for t in range(args.turns):
            await session.asend(lines[(s + t) % len(lines)])

    async def run() -> None:
        await asyncio.gather(*(one(s) for s in range(args.sessions)))

    start = time.perf_counter()
    asyncio.run(run())
    return args.sessions * args.turns / (time.perf_counter() - start)


def store_only(store: Store, lines: list[str], args: argparse.Namespace, tag: str) -> float:
    start = time.perf_counter()
    for s in range(args.sessions):
        key = SessionKey(id=f"{tag}{s}")
        for t in range(args.turns):
            store.load(key)
            text = lines[(s + t) % len(lines)]
            turn = [Message(role="user", content=text), Message(role="assistant", content=text)]
            store.append_turn(key, turn)
    return args.sessions * args.turns / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100, help="turns per session")
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--budget", type=int, default=2000)
    args = parser.parse_args()
    lines = locomo_lines()
    get_counter().count_text("load the encoding before timing anything")
    runs: list[tuple[str, Callable[..., float]]] = [
        ("send", sync_run),
        ("asend", async_run),
        ("store only", store_only),
    ]
    print(f"{args.sessions} sessions x {args.turns} turns, token_window budget {args.budget}")
    print(f"{'store':<22}" + "".join(f"{name + ' turns/s':>22}" for name, _ in runs))
    with tempfile.TemporaryDirectory() as tmp, redis_server() as redis_url:
        urls = {
            "memory": "memory",
            "sqlite (NORMAL)": f"sqlite:///{Path(tmp) / 'normal.db'}",
            "sqlite (FULL)": f"sqlite:///{Path(tmp) / 'full.db'}",
            "redis": redis_url,
        }
        for label, url in urls.items():
            if url is None:
                print(f"{label:<22}redis-server not installed: skipped")
                continue
            options = {"synchronous": "FULL"} if "FULL" in label else {}
            store = open_store(url, **options)
            rates = [fn(store, lines, args, name) for name, fn in runs]
            print(f"{label:<22}" + "".join(f"{r:>22,.0f}" for r in rates))
            store.close()


if __name__ == "__main__":
    main()
