"""Where a request's work runs and for how long: the heavy-work thread and the deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ctxlab.live.proxy.errors import deadline_exceeded
from ctxlab.live.proxy.state import ProxyState

__all__ = ["off_loop", "within"]

_T = TypeVar("_T")


async def within(work: Awaitable[_T], seconds: float) -> _T:
    """`work`, cancelled with a 504 after `seconds` (errors raised inside pass unchanged)."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise deadline_exceeded(seconds)
    return task.result()


async def off_loop(state: ProxyState, heavy: bool, fn: Callable[..., _T], *args: Any) -> _T:
    """`fn(*args)` on the proxy's one heavy-work thread when `heavy`, else right here.

    One thread, not a pool: several threads of Python work would take the interpreter lock
    from the event loop in turn, and light requests would wait behind all of them.
    """
    if not heavy:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(state.heavy, fn, *args)
