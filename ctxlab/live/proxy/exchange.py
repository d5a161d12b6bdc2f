"""`Exchange`: what one chat request did, and how it is answered, accounted and logged.

`billed` records a completed reply's usage and cost; `failure_of` turns an error into the
OpenAI-style answer (and notes when an upstream may have billed a failed call); `finish`
settles the key's reservation to what was billed, counts the metrics and writes the request's
access log line, once the reply (or stream) is over.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from ctxlab.errors import CtxlabError, ProviderResponseError
from ctxlab.live.proxy import log
from ctxlab.live.proxy.auth import ClientKey
from ctxlab.live.proxy.errors import ProxyHTTPError, from_exception, is_backend_down
from ctxlab.live.proxy.routes import Route
from ctxlab.live.proxy.state import ProxyState
from ctxlab.messages import Message
from ctxlab.providers.base import Completion
from ctxlab.strategies.base import Pruned
from ctxlab.usage import Usage

__all__ = ["Exchange", "billed", "failure_of", "finish", "headers", "upstream_failure"]

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


def pruned_header(pruned: Pruned | None, sent: int) -> str:
    """The ``x-ctxlab-pruned`` value: messages kept / messages given."""
    if pruned is None:
        return f"{sent}/{sent}"
    return f"{pruned.count('kept')}/{len(pruned.conversation.messages)}"


def billed(
    state: ProxyState, ex: Exchange, done: Completion, pruned: Pruned | None, sent: int
) -> None:
    """Record a completed reply: its usage, its cost and what the pruning kept."""
    assert ex.route is not None
    ex.usage = done.usage
    ex.cost_usd = state.prices.cost(done.usage, ex.route, ex.upstream_model or "")
    if math.isnan(ex.cost_usd):
        state.warn_once(
            f"no price known for model {ex.upstream_model!r} on route {ex.route.prefix!r}: "
            "its cost is not counted (metrics)"
        )
    ex.pruned = pruned_header(pruned, sent)


def headers(ex: Exchange) -> dict[str, str]:
    """The response headers that tell the client what the proxy did."""
    out = {}
    if ex.pruned is not None:
        out["x-ctxlab-pruned"] = ex.pruned
    if ex.session is not None:
        out["x-session-id"] = ex.session
    return out


def upstream_failure(state: ProxyState, ex: Exchange, exc: BaseException) -> ProxyHTTPError:
    """The answer to a failure while serving (upstream errors, deadlines, surprises)."""
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
    return ex.fail(upstream_failure(state, ex, exc))


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
    used = ex.usage.total_tokens if ex.usage is not None else 0
    if math.isfinite(ex.cost_usd):
        cost = ex.cost_usd
    else:
        cost = ex.reserved_usd if ex.charge_reserve else 0.0
    return used - ex.estimate, cost - ex.reserved_usd
