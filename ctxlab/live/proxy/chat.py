"""``POST /v1/chat/completions``: limits, memory, forwarding, accounting.

With ``X-Session-Id`` the request's messages are the new turn of a `Session` owned by the
caller's key: the stored history plus the turn is pruned, sent, and the turn stored once the
reply is complete (a failed or abandoned call stores nothing). Without it the messages are
forwarded as they are, pruned only when they exceed the budget.

A stream is opened upstream before the response starts, so a failure before the first token
still gets its proper status (502, 504, 4xx); a failure after it ends the stream with an error
event. The producer runs in its own task, so a client that disconnects cancels the upstream
call and the turn is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response, StreamingResponse

from ctxlab.errors import CtxlabError
from ctxlab.live._turns import Turn
from ctxlab.live.proxy import log
from ctxlab.live.proxy.auth import ClientKey
from ctxlab.live.proxy.errors import ProxyHTTPError, from_exception, rate_limited
from ctxlab.live.proxy.routes import Route
from ctxlab.live.proxy.state import ProxyState
from ctxlab.live.proxy.wire import ChatRequest, Reply
from ctxlab.live.session import Session
from ctxlab.messages import Conversation, Message
from ctxlab.providers.base import Completion, TextDelta
from ctxlab.strategies.base import Pruned
from ctxlab.usage import Usage

__all__ = ["Exchange", "chat_completion"]

_END = object()
logger = logging.getLogger("ctxlab.live.proxy")


@dataclass(kw_only=True)
class Exchange:
    """What one request did, for the access log, the metrics and the limits."""

    started: float = field(default_factory=time.perf_counter)
    client: ClientKey | None = None
    session: str | None = None
    route: Route | None = None
    upstream_model: str | None = None
    estimate: int = 0
    status: int = 200
    usage: Usage | None = None
    cost_usd: float = math.nan
    pruned: str | None = None
    stream: bool = False
    error: str | None = None
    messages: tuple[Message, ...] = ()

    def fail(self, exc: ProxyHTTPError) -> ProxyHTTPError:
        """Record a failure and return it."""
        self.status, self.error = exc.status, exc.code or exc.type
        return exc


async def chat_completion(state: ProxyState, ex: Exchange, req: ChatRequest) -> Response:
    """Serve a checked request for an authenticated client (`ex.client` is set)."""
    assert ex.client is not None
    found = state.router.resolve(req.model)
    if found is None:
        known = ", ".join(state.router.prefixes)
        raise ex.fail(
            ProxyHTTPError(
                404,
                f"no route for model {req.model!r}; known prefixes: {known}",
                code="model_not_found",
                param="model",
            )
        )
    ex.route, ex.upstream_model = found
    ex.stream, ex.messages = req.stream, req.messages
    ex.estimate = state.counter.count_messages(req.messages) + (req.max_tokens or 0)
    verdict = await state.limits.admit(ex.client.config, ex.estimate)
    if not verdict.allowed:
        ex.estimate = 0
        state.metrics.rate_limited.labels(ex.client.name, verdict.reason).inc()
        raise ex.fail(rate_limited(verdict.reason, verdict.retry_after))
    try:
        if req.stream:
            return await _stream(state, ex, req)
        return await _complete(state, ex, req)
    except Exception as exc:  # every failure gets an OpenAI-style answer and a log line
        raise ex.fail(_upstream_failure(state, ex, exc)) from exc


async def _complete(state: ProxyState, ex: Exchange, req: ChatRequest) -> Response:
    assert ex.route is not None
    pruned: Pruned | None
    if ex.session is not None:
        turn = await _session(state, ex).aturn(req.messages, **req.call_options())
        done, pruned = turn.completion, turn.pruned
    else:
        pruned = _prune(state, req.messages)
        sent = pruned.messages if pruned is not None else req.messages
        done = await ex.route.provider.acomplete(
            sent, model=ex.upstream_model, **req.call_options()
        )
    _billed(state, ex, done, pruned, len(req.messages))
    body = json.dumps(Reply(model=req.model).completion(done)).encode()
    return Response(body, media_type="application/json", headers=_headers(ex))


async def _stream(state: ProxyState, ex: Exchange, req: ChatRequest) -> Response:
    assert ex.route is not None
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    if ex.session is not None:
        events: AsyncIterator[Any] = _session(state, ex).astream_turn(
            req.messages, **req.call_options()
        )
    else:
        pruned = _prune(state, req.messages)
        ex.pruned = _pruned_header(pruned, len(req.messages))
        sent = pruned.messages if pruned is not None else req.messages
        events = _plain(
            ex.route.provider.astream(sent, model=ex.upstream_model, **req.call_options()), pruned
        )
    producer = asyncio.create_task(_produce(queue, events))
    try:
        first = await queue.get()
    except asyncio.CancelledError:  # the client left before the first token: store nothing
        producer.cancel()
        raise
    if isinstance(first, BaseException):
        await producer
        raise first
    body = _sse(state, ex, req, first, queue, producer)
    return StreamingResponse(body, media_type="text/event-stream", headers=_headers(ex))


async def _produce(queue: asyncio.Queue[Any], events: AsyncIterator[Any]) -> None:
    """Move upstream events into `queue`; an error ends the queue as that error."""
    try:
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for item in events:
                await queue.put(item)
        await queue.put(_END)
    except Exception as exc:  # handed to the consumer, which maps it to a status or event
        await queue.put(exc)


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
                failure = ex.fail(_upstream_failure(state, ex, item))
                yield _event(failure.body())
                return
            if isinstance(item, str):
                yield _event(reply.chunk({"content": item}))
            else:
                done, pruned = (item.completion, item.pruned) if isinstance(item, Turn) else item
                _billed(state, ex, done, pruned, len(req.messages))
                for chunk in reply.final_chunks(done, req.include_usage):
                    yield _event(chunk)
            item = await queue.get()
        yield b"data: [DONE]\n\n"
    finally:
        # No awaiting here: a disconnected client's stream is being cancelled.
        if not producer.done():
            producer.cancel()
            ex.status, ex.error = 499, "client_closed"
        state.spawn(finish(state, ex))


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _session(state: ProxyState, ex: Exchange) -> Session:
    assert ex.client is not None and ex.route is not None and ex.session is not None
    return Session(
        ex.route.provider,
        state.strategy,
        state.budget,
        store=state.store,
        session_id=ex.session,
        owner=ex.client.name,
        model=ex.upstream_model,
        counter=state.counter,
    )


def _prune(state: ProxyState, messages: tuple[Message, ...]) -> Pruned | None:
    """The strategy's result when the messages exceed the budget, else None (sent as is)."""
    if state.counter.count_messages(messages) <= state.budget.available:
        return None
    conversation = Conversation(id="request", messages=messages)
    return state.strategy.prune(conversation, state.budget, state.counter)


def _pruned_header(pruned: Pruned | None, sent: int) -> str:
    if pruned is None:
        return f"{sent}/{sent}"
    return f"{pruned.count('kept')}/{len(pruned.conversation.messages)}"


def _billed(
    state: ProxyState, ex: Exchange, done: Completion, pruned: Pruned | None, sent: int
) -> None:
    ex.usage = done.usage
    ex.cost_usd = state.cost_usd(done.usage, ex.upstream_model or "")
    ex.pruned = _pruned_header(pruned, sent)


def _headers(ex: Exchange) -> dict[str, str]:
    headers = {}
    if ex.pruned is not None:
        headers["x-ctxlab-pruned"] = ex.pruned
    if ex.session is not None:
        headers["x-session-id"] = ex.session
    return headers


def _upstream_failure(state: ProxyState, ex: Exchange, exc: BaseException) -> ProxyHTTPError:
    if not isinstance(exc, CtxlabError):
        logger.error("unexpected error serving a request", exc_info=exc)
    failure = from_exception(exc)
    if failure.status in (502, 504) or (failure.code or "").startswith("upstream_"):
        route = ex.route.prefix if ex.route is not None else "-"
        state.metrics.upstream_errors.labels(route, str(failure.status)).inc()
    return failure


async def finish(state: ProxyState, ex: Exchange) -> None:
    """Settle the limits, count the metrics and write the access log line of one request."""
    name = ex.client.name if ex.client is not None else "-"
    route = ex.route.prefix if ex.route is not None else "-"
    seconds = time.perf_counter() - ex.started
    if ex.client is not None and ex.estimate:
        billed = ex.usage.total_tokens if ex.usage is not None else 0
        with contextlib.suppress(Exception):  # limits are best effort once the reply is out
            await state.limits.settle(ex.client.config, billed - ex.estimate, ex.cost_usd)
    state.metrics.observe(name, route, ex.status, seconds)
    if ex.usage is not None:
        state.metrics.billed(name, route, ex.usage, ex.cost_usd)
    record = log.request_record(
        key=name,
        session=ex.session,
        route=route,
        model=ex.upstream_model,
        status=ex.status,
        latency_s=seconds,
        usage=ex.usage,
        cost_usd=ex.cost_usd,
        pruned=ex.pruned,
        stream=ex.stream,
        error=ex.error,
    )
    log.emit(record, debug_messages=ex.messages if state.config.server.debug else None)
