"""Failures as OpenAI-style error responses, and how upstream faults map to statuses.

Every error the proxy returns has the body OpenAI's API uses, so official clients raise their
usual exceptions::

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": "..."}}

Upstream faults, after the adapter's own retries: an upstream 5xx becomes 502, a timeout 504,
a connection failure or unreadable reply 502, and an upstream 4xx keeps its status and message.
A store or limits backend that cannot be reached (Redis down) gives 503.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import httpx
from starlette.responses import Response

from ctxlab.errors import (
    BudgetUnreachableError,
    CtxlabError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
)
from ctxlab.live.stores import SessionBusyError

__all__ = [
    "ProxyHTTPError",
    "deadline_exceeded",
    "error_body",
    "from_exception",
    "is_backend_down",
    "is_timeout",
]


class ProxyHTTPError(CtxlabError):
    """A request the proxy answers with an error status.

    Attributes:
        status: the HTTP status.
        message: what went wrong and what to do (sent to the client).
        type: the OpenAI error type (``invalid_request_error``, ``rate_limit_error``...).
        code: a short machine-readable code, or None.
        headers: extra response headers (``retry-after``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        """The OpenAI-style error object."""
        return error_body(self.message, type=self.type, code=self.code, param=self.param)

    def response(self) -> Response:
        """The error as an HTTP response."""
        return Response(
            json.dumps(self.body()).encode(),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, object]:
    """``{"error": {...}}`` in OpenAI's shape."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def rate_limited(reason: str, retry_after: float) -> ProxyHTTPError:
    """The 429 for a refused request; ``retry-after`` in whole seconds (at least 1)."""
    what = {
        "requests": "requests per minute",
        "tokens": "tokens per minute",
        "spend": "daily spend cap (resets at 00:00 UTC)",
    }.get(reason, reason)
    seconds = max(1, math.ceil(retry_after))
    return ProxyHTTPError(
        429,
        f"rate limit reached for this key: {what}; retry after {seconds} s",
        type="rate_limit_error" if reason != "spend" else "insufficient_quota",
        code="rate_limit_exceeded" if reason != "spend" else "insufficient_quota",
        headers={"retry-after": str(seconds), "retry-after-ms": str(int(retry_after * 1000))},
    )


def is_timeout(exc: BaseException) -> bool:
    """True when an error was caused by an upstream timeout (anywhere in its chain)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (httpx.TimeoutException, TimeoutError)) and not isinstance(
            current, SessionBusyError
        ):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def deadline_exceeded(seconds: float) -> ProxyHTTPError:
    """The 504 for a request that outlived its route's ``timeout``."""
    return ProxyHTTPError(
        504,
        f"upstream timed out: no complete reply within the route's timeout of {seconds:g} s "
        "(the whole request, streams included)",
        type="api_error",
        code="timeout",
    )


def is_backend_down(exc: BaseException) -> bool:
    """True when `exc` (or its cause) is a Redis connection or timeout error."""
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        kind = type(current)
        if kind.__module__.startswith("redis") and any(
            c.__name__ in ("ConnectionError", "TimeoutError", "BusyLoadingError")
            for c in kind.__mro__
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def from_exception(exc: BaseException) -> ProxyHTTPError:
    """The response status and body for an error raised while serving a request."""
    if isinstance(exc, ProxyHTTPError):
        return exc
    if is_backend_down(exc):
        return ProxyHTTPError(
            503,
            "the proxy's store is unreachable (Redis down?); retry shortly",
            type="api_error",
            code="store_unavailable",
            headers={"retry-after": "1"},
        )
    if isinstance(exc, ProviderHTTPError):
        return _upstream_status(exc)
    if isinstance(exc, ProviderConnectionError) and is_timeout(exc):
        return ProxyHTTPError(504, f"upstream timed out: {exc}", type="api_error", code="timeout")
    if isinstance(exc, ProviderError):
        return ProxyHTTPError(502, f"upstream failed: {exc}", type="api_error", code="bad_gateway")
    if isinstance(exc, BudgetUnreachableError):
        return ProxyHTTPError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, SessionBusyError):
        return ProxyHTTPError(
            503, str(exc), type="api_error", code="session_busy", headers={"retry-after": "1"}
        )
    if isinstance(exc, CtxlabError) and isinstance(exc, ValueError):  # UsageError, DataFormat...
        return ProxyHTTPError(400, str(exc), param="messages")
    if isinstance(exc, CtxlabError):
        return ProxyHTTPError(500, f"{type(exc).__name__}: {exc}", type="server_error")
    # Not an error ctxlab raises on purpose: say nothing of its content (it may quote input).
    return ProxyHTTPError(
        500, f"internal error ({type(exc).__name__}); see the proxy's log", type="server_error"
    )


def _upstream_status(exc: ProviderHTTPError) -> ProxyHTTPError:
    message = exc.message or exc.body[:500] or f"HTTP {exc.status}"
    if exc.status >= 500:
        return ProxyHTTPError(
            502,
            f"upstream {exc.provider} returned HTTP {exc.status}: {message}",
            type="api_error",
            code="upstream_error",
        )
    return ProxyHTTPError(exc.status, message, type="upstream_error", code=f"upstream_{exc.status}")
