"""A streamed reply: opened upstream before the response starts, relayed as server-sent events.

A failure before the first token still gets its proper status (502, 504, 4xx); a failure after
it ends the stream with an error event. The producer runs in its own task under the route's
deadline, so a client that disconnects cancels the upstream call and the turn is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from ctxlab.live._turns import Turn
from ctxlab.live.proxy.exchange import (
    Exchange,
    billed,
    finish,
    headers,
    pruned_header,
    upstream_failure,
)
from ctxlab.live.proxy.memory import prune_request, session_of
from ctxlab.live.proxy.state import ProxyState
from ctxlab.live.proxy.wire import ChatRequest, Reply
from ctxlab.live.proxy.work import off_loop, within
from ctxlab.providers.base import TextDelta
from ctxlab.strategies.base import Pruned

__all__ = ["stream"]

_END = object()


async def stream(state: ProxyState, ex: Exchange, req: ChatRequest, large: bool) -> Response:
    """Open the upstream stream and answer with its events (see the module docstring)."""
    assert ex.route is not None
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    if ex.session is not None:
        events: AsyncIterator[Any] = session_of(state, ex).astream_turn(
            req.messages, **req.call_options()
        )
    else:
        pruned = await off_loop(state, large, prune_request, state, req.messages)
        ex.pruned = pruned_header(pruned, len(req.messages))
        sent = pruned.messages if pruned is not None else req.messages
        events = _plain(
            ex.route.provider.astream(sent, model=ex.upstream_model, **req.call_options()), pruned
        )
    producer = asyncio.create_task(_produce(queue, events, ex.route.config.timeout))
    try:
        first = await queue.get()
    except asyncio.CancelledError:  # the client left before the first token: store nothing
        producer.cancel()
        raise
    if isinstance(first, BaseException):
        await producer
        raise first
    body = _sse(state, ex, req, first, queue, producer)
    return StreamingResponse(body, media_type="text/event-stream", headers=headers(ex))


async def _produce(queue: asyncio.Queue[Any], events: AsyncIterator[Any], seconds: float) -> None:
    """Move upstream events into `queue` within `seconds`; an error ends the queue as itself."""
    try:
        await within(_pump(queue, events), seconds)
        await queue.put(_END)
    except Exception as exc:  # handed to the consumer, which maps it to a status or event
        await queue.put(exc)


async def _pump(queue: asyncio.Queue[Any], events: AsyncIterator[Any]) -> None:
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for item in events:
            await queue.put(item)


async def _plain(events: AsyncIterator[Any], pruned: Pruned | None) -> AsyncIterator[Any]:
    """Provider stream events as text, then ``(Completion, Pruned)``."""
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            yield event.text if isinstance(event, TextDelta) else (event, pruned)


async def _sse(
    state: ProxyState,
    ex: Exchange,
    req: ChatRequest,
    item: Any,
    queue: asyncio.Queue[Any],
    producer: asyncio.Task[None],
) -> AsyncIterator[bytes]:
    reply = Reply(model=req.model)
    try:
        yield _event(reply.chunk({"role": "assistant", "content": ""}))
        while item is not _END:
            if isinstance(item, BaseException):
                failure = ex.fail(upstream_failure(state, ex, item))
                yield _event(failure.body())
                return
            if isinstance(item, str):
                yield _event(reply.chunk({"content": item}))
            else:
                done, pruned = (item.completion, item.pruned) if isinstance(item, Turn) else item
                billed(state, ex, done, pruned, len(req.messages))
                for chunk in reply.final_chunks(done, req.include_usage):
                    yield _event(chunk)
            item = await queue.get()
        yield b"data: [DONE]\n\n"
    finally:
        # No awaiting here: a disconnected client's stream is being cancelled.
        if not producer.done():
            producer.cancel()
            ex.status, ex.error, ex.charge_reserve = 499, "client_closed", True
        state.spawn(finish(state, ex))


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"
