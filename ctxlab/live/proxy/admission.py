"""Admission of a chat request: read it, route its model, reserve its tokens and worst-case cost.

Reading (JSON decoding, parameter checks, token counting) may run on the heavy-work thread for
a large body; `admit` then reserves the request's tokens and, under a daily spend cap, its
worst-case cost in one atomic step of the limits store (`spend`), or refuses it.
"""

from __future__ import annotations

import dataclasses

from ctxlab.live.proxy.errors import ProxyHTTPError, rate_limited
from ctxlab.live.proxy.exchange import Exchange
from ctxlab.live.proxy.intake import check_params, decode
from ctxlab.live.proxy.routes import Route
from ctxlab.live.proxy.spend import worst_case
from ctxlab.live.proxy.state import ProxyState
from ctxlab.live.proxy.wire import OWN, ChatRequest

__all__ = ["admit", "read_request", "refused", "resolve"]


def read_request(state: ProxyState, body: bytes) -> tuple[ChatRequest, int]:
    """The parsed request and its prompt tokens."""
    data = decode(body)
    if isinstance(data, dict):
        check_params(data, OWN)
    req = ChatRequest.parse(data)
    return req, state.counter.count_messages(req.messages)


def resolve(state: ProxyState, model: str) -> tuple[Route, str]:
    """The route of a model name and the model to ask upstream, or a 404."""
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


async def admit(state: ProxyState, ex: Exchange, req: ChatRequest, prompt: int) -> ChatRequest:
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
        raise refused(state, ex, verdict.reason, verdict.retry_after)
    ex.admitted, ex.day = True, verdict.day
    return req


def refused(state: ProxyState, ex: Exchange, reason: str, retry_after: float) -> ProxyHTTPError:
    """The 429 for a key over one of its limits (counted in the metrics)."""
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
