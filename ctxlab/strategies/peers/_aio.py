"""Running a library's coroutine from ctxlab's synchronous strategies.

`prune` is synchronous (notebook users never need ``await``), but some libraries only offer
``async`` methods (Semantic Kernel's ``reduce()``). With no event loop running in this thread
the coroutine runs under `asyncio.run`; inside a running loop (a Jupyter cell, `acompare`'s
event loop, a FastAPI handler), where `asyncio.run` refuses to start, it runs on a fresh loop
in a worker thread and this thread waits for it. Either way it gets a loop of its own, which
no other task shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The result of the coroutine ``make()`` returns, run to completion (see the module)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1, thread_name_prefix="ctxlab-peer-async") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
