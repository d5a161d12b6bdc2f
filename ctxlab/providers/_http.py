"""The one place ctxlab builds HTTP clients, sends requests with retries, and reads SSE streams.

`HTTPCaller` posts JSON to one provider: it builds its clients lazily (default timeout 600 s,
5 s to connect, user agent ``ctxlab/<version>``) unless clients are injected, retries by a
`RetryPolicy`, turns failures into the `ProviderError` tree, and keeps the API key out of every
message it writes (`redact`). A stream is retried only until the response headers arrive: once
a 2xx stream is open nothing is sent again, so a reply is never duplicated.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ctxlab.errors import (
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
)
from ctxlab.providers.retry import RetryPolicy

__all__ = [
    "DEFAULT_TIMEOUT",
    "HTTPCaller",
    "SSEEvent",
    "build_async_client",
    "build_client",
    "redact",
    "user_agent",
]

logger = logging.getLogger("ctxlab.providers")

#: The SDKs' default: ten minutes for a reply, five seconds to connect.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)

# Values that look like credentials: OpenAI/Anthropic style keys and bearer tokens.
_KEY_LIKE = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*)")


def user_agent() -> str:
    """``ctxlab/<version>``."""
    from ctxlab import __version__

    return f"ctxlab/{__version__}"


def _timeout(value: float | httpx.Timeout | None) -> httpx.Timeout:
    if value is None:
        return DEFAULT_TIMEOUT
    return value if isinstance(value, httpx.Timeout) else httpx.Timeout(value, connect=5.0)


def build_client(
    timeout: float | httpx.Timeout | None = None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """A synchronous client with ctxlab's timeout and user agent."""
    headers = {"user-agent": user_agent()}
    return httpx.Client(timeout=_timeout(timeout), transport=transport, headers=headers)


def build_async_client(
    timeout: float | httpx.Timeout | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An asynchronous client with ctxlab's timeout and user agent."""
    headers = {"user-agent": user_agent()}
    return httpx.AsyncClient(timeout=_timeout(timeout), transport=transport, headers=headers)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and anything key-like replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return _KEY_LIKE.sub("[REDACTED]", text)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its ``event:`` name (None when absent) and joined ``data:``."""

    event: str | None
    data: str


class _SSEParser:
    """Incremental parser for the text/event-stream format (one line at a time)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> SSEEvent | None:
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # a comment, used as keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def flush(self) -> SSEEvent | None:
        if not self._data and self._event is None:
            return None
        event = SSEEvent(self._event, "\n".join(self._data))
        self._event, self._data = None, []
        return event


class HTTPCaller:
    """Posts JSON to one provider with retries; see the module docstring."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Iterable[str] = (),
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        transport: Any = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._headers = dict(headers)
        self._secrets = tuple(s for s in secrets if s)
        self._client, self._async_client = client, async_client
        self._owns = (client is None, async_client is None)
        self._timeout = timeout
        self._transport = transport

    @property
    def client(self) -> httpx.Client:
        """The synchronous client (built on first use unless injected)."""
        if self._client is None:
            self._client = build_client(self._timeout, self._transport)
        return self._client

    @property
    def async_client(self) -> httpx.AsyncClient:
        """The asynchronous client (built on first use unless injected)."""
        if self._async_client is None:
            self._async_client = build_async_client(self._timeout, self._transport)
        return self._async_client

    def close(self) -> None:
        """Close the synchronous client if ctxlab built it."""
        if self._owns[0] and self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close both clients if ctxlab built them."""
        self.close()
        if self._owns[1] and self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST `body` as JSON and return the parsed JSON reply."""
        response = self._send(path, body, stream=False)
        return self._json(response)

    async def apost(self, path: str, body: Mapping[str, Any]) -> Any:
        """Asynchronous `post`."""
        response = await self._asend(path, body, stream=False)
        return self._json(response)

    def stream(self, path: str, body: Mapping[str, Any]) -> Generator[SSEEvent, None, None]:
        """POST `body` and yield the server-sent events of the reply."""
        response = self._send(path, body, stream=True)
        parser = _SSEParser()
        try:
            for line in response.iter_lines():
                if (event := parser.feed(line)) is not None:
                    yield event
            if (event := parser.flush()) is not None:
                yield event
        except httpx.TransportError as exc:
            raise self._cut(exc) from exc
        finally:
            response.close()

    async def astream(self, path: str, body: Mapping[str, Any]) -> AsyncGenerator[SSEEvent, None]:
        """Asynchronous `stream`."""
        response = await self._asend(path, body, stream=True)
        parser = _SSEParser()
        try:
            async for line in response.aiter_lines():
                if (event := parser.feed(line)) is not None:
                    yield event
            if (event := parser.flush()) is not None:
                yield event
        except httpx.TransportError as exc:
            raise self._cut(exc) from exc
        finally:
            await response.aclose()

    def _request(self, client: httpx.Client | httpx.AsyncClient, path: str, body: Any) -> Any:
        headers = {"user-agent": user_agent(), **self._headers}
        return client.build_request("POST", self.base_url + path, json=body, headers=headers)

    def _send(self, path: str, body: Mapping[str, Any], *, stream: bool) -> httpx.Response:
        for attempt in range(self.retry.max_retries + 1):
            try:
                response = self.client.send(self._request(self.client, path, body), stream=stream)
            except httpx.TransportError as exc:
                wait = self._give_up_or_wait(attempt, None, exc)
            else:
                if response.is_success:
                    return response
                response.read()
                response.close()
                wait = self._give_up_or_wait(attempt, response, None)
            self.retry.sleep(wait)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def _asend(self, path: str, body: Mapping[str, Any], *, stream: bool) -> httpx.Response:
        client = self.async_client
        for attempt in range(self.retry.max_retries + 1):
            try:
                response = await client.send(self._request(client, path, body), stream=stream)
            except httpx.TransportError as exc:
                wait = self._give_up_or_wait(attempt, None, exc)
            else:
                if response.is_success:
                    return response
                await response.aread()
                await response.aclose()
                wait = self._give_up_or_wait(attempt, response, None)
            await self.retry.asleep(wait)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _give_up_or_wait(
        self,
        attempt: int,
        response: httpx.Response | None,
        exc: httpx.TransportError | None,
    ) -> float:
        """The wait before the next attempt; raises the final error when there is none."""
        status = response.status_code if response is not None else None
        headers = response.headers if response is not None else None
        wait = self.retry.wait_before_retry(attempt, status, headers)
        what = f"HTTP {status}" if status is not None else type(exc).__name__
        if wait is None:
            logger.debug("%s: %s on attempt %d, giving up", self.provider, what, attempt + 1)
            if response is not None:
                raise self._http_error(response)
            raise self._connection_error(exc, attempt + 1)
        logger.info("%s: %s, retrying in %.2f s", self.provider, what, wait)
        return wait

    def _http_error(self, response: httpx.Response) -> ProviderHTTPError:
        body = redact(response.text, self._secrets)
        message: str | None = None
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            error = data.get("error", data)
            if isinstance(error, Mapping):
                message = error.get("message") or error.get("detail")
            elif isinstance(error, str):
                message = error
        return ProviderHTTPError(self.provider, response.status_code, body, message)

    def _connection_error(
        self, exc: httpx.TransportError | None, attempts: int
    ) -> ProviderConnectionError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not connect"
        detail = redact(str(exc), self._secrets) if exc is not None else ""
        return ProviderConnectionError(
            f"{self.provider} at {self.base_url} {kind} after {attempts} attempt(s): {detail}. "
            "Check the server and network, or raise timeout= / max_retries="
        )

    def _cut(self, exc: httpx.TransportError) -> ProviderConnectionError:
        detail = redact(str(exc), self._secrets)
        return ProviderConnectionError(
            f"{self.provider} stream was cut before it finished ({type(exc).__name__}: "
            f"{detail}); a started stream is not retried: send the request again"
        )

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            snippet = redact(response.text[:200], self._secrets)
            raise ProviderResponseError(
                f"{self.provider} answered HTTP {response.status_code} with a body that is not "
                f"JSON: {snippet!r}"
            ) from exc

    def __repr__(self) -> str:
        return f"HTTPCaller(provider={self.provider!r}, base_url={self.base_url!r})"
