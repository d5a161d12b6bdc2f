"""``POST /v1/chat/completions``: limits, memory, forwarding, accounting.

With ``X-Session-Id`` the request's messages are the new turn of a `Session` owned by the
caller's key: the stored history plus the turn is pruned, sent, and the turn stored once the
reply is complete (a failed or abandoned call stores nothing). Without it the messages are
forwarded as they are, pruned only when they exceed the budget (`memory`).

The order keeps one client from stalling the others: a large body is checked against the
key's limits before anything expensive, then decoded, checked and token-counted in a worker
thread. Admission then reserves the request's tokens and worst-case cost (`admission`) in one
atomic step of the limits store, and `exchange.finish` settles both to what was billed. The
route's ``timeout`` bounds the whole request, retries and streams included (504 past it;
`work`). Streams are relayed by `streaming`.
"""

from __future__ import annotations

import json

from starlette.responses import Response

from ctxlab.live.proxy.admission import admit, read_request, refused, resolve
from ctxlab.live.proxy.exchange import (
    Exchange,
    billed,
    failure_of,
    finish,
    headers,
    upstream_failure,
)
from ctxlab.live.proxy.intake import LARGE_BODY
from ctxlab.live.proxy.memory import prune_request, session_of
from ctxlab.live.proxy.state import ProxyState
from ctxlab.live.proxy.streaming import stream
from ctxlab.live.proxy.wire import ChatRequest, Reply
from ctxlab.live.proxy.work import off_loop, within
from ctxlab.providers.base import Completion
from ctxlab.strategies.base import Pruned

__all__ = ["Exchange", "chat_completion", "failure_of", "finish"]


async def chat_completion(state: ProxyState, ex: Exchange, body: bytes) -> Response:
    """Serve the raw body of a request from an authenticated client (`ex.client` is set)."""
    assert ex.client is not None
    large = len(body) > LARGE_BODY
    if large:  # refuse a limited key before the expensive work, not after
        verdict = await state.limits.check(ex.client.config)
        if not verdict.allowed:
            raise refused(state, ex, verdict.reason, verdict.retry_after)
    req, prompt = await off_loop(state, large, read_request, state, body)
    ex.route, ex.upstream_model = resolve(state, req.model)
    ex.stream, ex.messages = req.stream, req.messages
    req = await admit(state, ex, req, prompt)
    try:
        if req.stream:
            return await stream(state, ex, req, large)
        return await within(_complete(state, ex, req, large), ex.route.config.timeout)
    except Exception as exc:  # every failure gets an OpenAI-style answer and a log line
        raise ex.fail(upstream_failure(state, ex, exc)) from exc


async def _complete(state: ProxyState, ex: Exchange, req: ChatRequest, large: bool) -> Response:
    assert ex.route is not None
    pruned: Pruned | None
    done: Completion
    if ex.session is not None:
        turn = await session_of(state, ex).aturn(req.messages, **req.call_options())
        done, pruned = turn.completion, turn.pruned
    else:
        pruned = await off_loop(state, large, prune_request, state, req.messages)
        sent = pruned.messages if pruned is not None else req.messages
        done = await ex.route.provider.acomplete(
            sent, model=ex.upstream_model, **req.call_options()
        )
    billed(state, ex, done, pruned, len(req.messages))
    body = json.dumps(Reply(model=req.model).completion(done)).encode()
    return Response(body, media_type="application/json", headers=headers(ex))
