"""The HTTP client of a route: ctxlab's usual client, with a size limit on every reply.

A reply (whole or streamed) larger than ``server.max_reply_bytes`` is cut off where it crosses
the limit, so a runaway upstream can neither fill the proxy's memory nor hold its event loop
parsing it; the request fails with a 502 naming the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from ctxlab.errors import ProviderResponseError
from ctxlab.providers._http import build_async_client

__all__ = ["ReplyTooLargeError", "limited_client"]


class ReplyTooLargeError(ProviderResponseError):
    """An upstream reply went over the proxy's size limit."""


class _LimitedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._inner:
            size += len(chunk)
            if size > self._limit:
                raise ReplyTooLargeError(
                    f"the upstream reply is larger than {self._limit} bytes "
                    "(server.max_reply_bytes); it was cut off"
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _LimitedTransport(httpx.AsyncBaseTransport):
    def __init__(self, limit: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            await response.aclose()
            raise ReplyTooLargeError(
                f"the upstream reply declares {declared} bytes, more than {self._limit} "
                "(server.max_reply_bytes)"
            )
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _LimitedStream(stream, self._limit)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def limited_client(timeout: float, max_reply_bytes: int) -> httpx.AsyncClient:
    """An async client whose replies are cut off beyond `max_reply_bytes`."""
    return build_async_client(timeout, transport=_LimitedTransport(max_reply_bytes))
