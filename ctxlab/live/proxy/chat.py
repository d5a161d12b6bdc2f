"""``POST /v1/chat/completions``: limits, memory, forwarding, accounting.

With ``X-Session-Id`` the request's messages are the new turn of a `Session` owned by the
caller's key: the stored history plus the turn is pruned, sent, and the turn stored once the
reply is complete (a failed or abandoned call stores nothing). Without it the messages are
forwarded as they are, pruned only when they exceed the budget.

The order keeps one client from stalling the others: a large body is checked against the
key's limits before anything expensive, then decoded, checked and token-counted in a worker
thread. Admission then reserves the request's tokens and worst-case cost (`spend`) in one
atomic step of the limits store, and `finish` settles both to what was billed. The route's
``timeout`` bounds the whole request, retries and streams included (504 past it).

A stream is opened upstream before the response starts, so a failure before the first token
still gets its proper status (502, 504, 4xx); a failure after it ends the stream with an error
event. The producer runs in its own task, so a client that disconnects cancels the upstream
call and the turn is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.responses import Response, StreamingResponse

from ctxlab.errors import CtxlabError, ProviderResponseError
from ctxlab.live._turns import Turn
from ctxlab.live.proxy import log
from ctxlab.live.proxy.auth import ClientKey
from ctxlab.live.proxy.errors import (
    ProxyHTTPError,
    deadline_exceeded,
    from_exception,
    is_backend_down,
    rate_limited,
)
from ctxlab.live.proxy.intake import LARGE_BODY, check_params, decode
from ctxlab.live.proxy.routes import Route
from ctxlab.live.proxy.spend import worst_case
from ctxlab.live.proxy.state import ProxyState
from ctxlab.live.proxy.wire import OWN, ChatRequest, Reply
from ctxlab.live.session import Session
from ctxlab.messages import Conversation, Message
from ctxlab.providers.base import Completion, TextDelta
from ctxlab.strategies.base import Pruned
from ctxlab.usage import Usage

__all__ = ["Exchange", "chat_completion", "finish"]

_END = object()
_T = TypeVar("_T")
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
    reserved_usd: float = 0.0
    day: int = 0
    admitted: bool = False
    status: int = 200
    usage: Usage | None = None
    cost_usd: float = math.nan
    pruned: str | None = None
    stream: bool = False
    error: str | None = None
    charge_reserve: bool = False  # usage unknown but the upstream may have billed
    messages: tuple[Message, ...] = ()

    def fail(self, exc: ProxyHTTPError) -> ProxyHTTPError:
        """Record a failure and return it."""
        self.status, self.error = exc.status, exc.code or exc.type
        return exc


async def chat_completion(state: ProxyState, ex: Exchange, body: bytes) -> Response:
    """Serve the raw body of a request from an authenticated client (`ex.client` is set)."""
    assert ex.client is not None
    large = len(body) > LARGE_BODY
    if large:  # refuse a limited key before the expensive work, not after
        verdict = await state.limits.check(ex.client.config)
        if not verdict.allowed:
            raise _refused(state, ex, verdict.reason, verdict.retry_after)
    req, prompt = await _off_loop(state, large, _read_request, state, body)
    ex.route, ex.upstream_model = _resolve(state, req.model)
    ex.stream, ex.messages = req.stream, req.messages
    req = await _admit(state, ex, req, prompt)
    try:
        if req.stream:
            return await _stream(state, ex, req, large)
        return await _within(_complete(state, ex, req, large), ex.route.config.timeout)
    except Exception as exc:  # every failure gets an OpenAI-style answer and a log line
        raise ex.fail(_upstream_failure(state, ex, exc)) from exc


def _read_request(state: ProxyState, body: bytes) -> tuple[ChatRequest, int]:
    data = decode(body)
    if isinstance(data, dict):
        check_params(data, OWN)
    req = ChatRequest.parse(data)
    return req, state.counter.count_messages(req.messages)


def _resolve(state: ProxyState, model: str) -> tuple[Route, str]:
    found = state.router.resolve(model)
    if found is None:
        known = ", ".join(state.router.prefixes)
        raise ProxyHTTPError(
            404,
            f"no route for model {model!r}; known prefixes: {known}",
            code="model_not_found",
            param="model",
        )
    return found


async def _admit(state: ProxyState, ex: Exchange, req: ChatRequest, prompt: int) -> ChatRequest:
    """Reserve the request's tokens and worst-case cost; the request as it will be sent."""
    assert ex.client is not None and ex.route is not None
    key = ex.client.config
    if key.usd_per_day is not None:
        price = state.prices.price(ex.route, ex.upstream_model or "")
        if price is None:
            raise _unpriced(ex)
        if req.max_tokens is None:  # the reply limit is what makes the worst case finite
            req = dataclasses.replace(req, max_tokens=state.config.server.default_max_tokens)
        sent = state.budget.max_tokens if ex.session else min(prompt, state.budget.max_tokens)
        ex.reserved_usd = worst_case(price, sent, req.max_tokens or 0)
    ex.estimate = prompt + (req.max_tokens or 0)
    verdict = await state.limits.admit(key, ex.estimate, ex.reserved_usd)
    if not verdict.allowed:
        raise _refused(state, ex, verdict.reason, verdict.retry_after)
    ex.admitted, ex.day = True, verdict.day
    return req


def _refused(state: ProxyState, ex: Exchange, reason: str, retry_after: float) -> ProxyHTTPError:
    assert ex.client is not None
    state.metrics.rate_limited.labels(ex.client.name, reason).inc()
    return rate_limited(reason, retry_after)


def _unpriced(ex: Exchange) -> ProxyHTTPError:
    assert ex.client is not None and ex.route is not None
    return ProxyHTTPError(
        400,
        f"model {ex.upstream_model!r} on route {ex.route.prefix!r} has no known price, and key "
        f"{ex.client.name!r} has a daily spend cap (usd_per_day) that must count it: give the "
        "route input_usd_per_mtok and output_usd_per_mtok in the proxy config, or use a priced "
        "model",
        code="model_not_priced",
        param="model",
    )


async def _within(work: Awaitable[_T], seconds: float) -> _T:
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


async def _off_loop(state: ProxyState, heavy: bool, fn: Any, *args: Any) -> Any:
    """`fn(*args)` on the proxy's one heavy-work thread when `heavy`, else right here.

    One thread, not a pool: several threads of Python work would take the interpreter lock
    from the event loop in turn, and light requests would wait behind all of them.
    """
    if not heavy:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(state.heavy, fn, *args)


async def _complete(state: ProxyState, ex: Exchange, req: ChatRequest, large: bool) -> Response:
    assert ex.route is not None
    pruned: Pruned | None
    if ex.session is not None:
        turn = await _session(state, ex).aturn(req.messages, **req.call_options())
        done, pruned = turn.completion, turn.pruned
    else:
        pruned = await _off_loop(state, large, _prune, state, req.messages)
        sent = pruned.messages if pruned is not None else req.messages
        done = await ex.route.provider.acomplete(
            sent, model=ex.upstream_model, **req.call_options()
        )
    _billed(state, ex, done, pruned, len(req.messages))
    body = json.dumps(Reply(model=req.model).completion(done)).encode()
    return Response(body, media_type="application/json", headers=_headers(ex))


async def _stream(state: ProxyState, ex: Exchange, req: ChatRequest, large: bool) -> Response:
    assert ex.route is not None
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    if ex.session is not None:
        events: AsyncIterator[Any] = _session(state, ex).astream_turn(
            req.messages, **req.call_options()
        )
    else:
        pruned = await _off_loop(state, large, _prune, state, req.messages)
        ex.pruned = _pruned_header(pruned, len(req.messages))
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
    return StreamingResponse(body, media_type="text/event-stream", headers=_headers(ex))


async def _produce(queue: asyncio.Queue[Any], events: AsyncIterator[Any], seconds: float) -> None:
    """Move upstream events into `queue` within `seconds`; an error ends the queue as itself."""
    try:
        await _within(_pump(queue, events), seconds)
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
            ex.status, ex.error, ex.charge_reserve = 499, "client_closed", True
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
    assert ex.route is not None
    ex.usage = done.usage
    ex.cost_usd = state.prices.cost(done.usage, ex.route, ex.upstream_model or "")
    if math.isnan(ex.cost_usd):
        state.warn_once(
            f"no price known for model {ex.upstream_model!r} on route {ex.route.prefix!r}: "
            "its cost is not counted (metrics)"
        )
    ex.pruned = _pruned_header(pruned, sent)


def _headers(ex: Exchange) -> dict[str, str]:
    headers = {}
    if ex.pruned is not None:
        headers["x-ctxlab-pruned"] = ex.pruned
    if ex.session is not None:
        headers["x-session-id"] = ex.session
    return headers


def _upstream_failure(state: ProxyState, ex: Exchange, exc: BaseException) -> ProxyHTTPError:
    if not isinstance(exc, CtxlabError) and not is_backend_down(exc):
        logger.error("unexpected error serving a request", exc_info=exc)
    failure = from_exception(exc)
    # A reply that came back unreadable, or a request cut off at its deadline, may have been
    # billed upstream: its reservation stays charged.
    if isinstance(exc, ProviderResponseError) or failure.code == "timeout":
        ex.charge_reserve = True
    if failure.status in (502, 504) or (failure.code or "").startswith("upstream_"):
        route = ex.route.prefix if ex.route is not None else "-"
        state.metrics.upstream_errors.labels(route, str(failure.status)).inc()
    return failure


def failure_of(state: ProxyState, ex: Exchange, exc: BaseException) -> ProxyHTTPError:
    """The answer to a request that failed outside the upstream call (parsing, limits...)."""
    if isinstance(exc, ProxyHTTPError):
        return ex.fail(exc)
    return ex.fail(_upstream_failure(state, ex, exc))


async def finish(state: ProxyState, ex: Exchange) -> None:
    """Settle the limits, count the metrics and write the access log line of one request."""
    name = ex.client.name if ex.client is not None else "-"
    route = ex.route.prefix if ex.route is not None else "-"
    seconds = time.perf_counter() - ex.started
    if ex.client is not None and ex.admitted:
        try:
            await state.limits.settle(ex.client.config, *_settlement(ex), ex.day)
        except Exception as exc:  # limits are best effort once the reply is out
            logger.warning("could not settle the limits of key %s: %s", name, exc)
    try:
        state.metrics.observe(name, route, ex.status, seconds)
        if ex.usage is not None:
            state.metrics.billed(name, route, ex.usage, ex.cost_usd)
    finally:
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


def _settlement(ex: Exchange) -> tuple[int, float]:
    """(extra tokens, extra USD) that turn the reservation into what was billed."""
    billed = ex.usage.total_tokens if ex.usage is not None else 0
    if math.isfinite(ex.cost_usd):
        cost = ex.cost_usd
    else:
        cost = ex.reserved_usd if ex.charge_reserve else 0.0
    return billed - ex.estimate, cost - ex.reserved_usd
