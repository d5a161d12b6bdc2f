"""`RemoteProvider`: what every HTTP provider shares, around three provider-specific hooks.

A subclass says how to build the request body (`_body`), how to read a whole reply (`_parse`)
and how to fold a stream of server-sent events into a reply (`_accumulator`). This class does
the rest the same way for all of them: API key resolution, the response cache, the rate
limiter, timing, local usage counting when a server reports none, and retrying a stream that
fails before its first text.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx

from ctxlab.errors import ConfigurationError, ProviderHTTPError, UsageError
from ctxlab.messages import Message
from ctxlab.providers._http import HTTPCaller, SSEEvent
from ctxlab.providers.base import (
    Completion,
    Provider,
    ResponseFormat,
    StreamEvent,
    TextDelta,
    Tool,
)
from ctxlab.providers.cache import ResponseCache, request_key
from ctxlab.providers.cassette import Cassette
from ctxlab.providers.ratelimit import RateLimiter
from ctxlab.providers.retry import RetryPolicy
from ctxlab.tokens import TokenCounter, get_counter
from ctxlab.usage import Usage

__all__ = ["Options", "RemoteProvider", "StreamAccumulator"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """The per-call parameters of `Provider.complete`, model resolved."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    tools: Sequence[Tool] | None = None
    response_format: ResponseFormat | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class StreamAccumulator(Protocol):
    """Folds a provider's server-sent events into a `Completion`."""

    done: bool

    def feed(self, event: SSEEvent) -> str | None:
        """Take one event; return new reply text, if any. Raises on an error event."""
        ...

    def result(self) -> Completion:
        """The assembled reply; raises `ProviderResponseError` when the stream ended early."""
        ...


class RemoteProvider(Provider):
    """An LLM reached over HTTP; see the module docstring."""

    default_base_url: ClassVar[str] = ""
    api_key_env: ClassVar[str | None] = None
    api_key_required: ClassVar[bool] = True
    path: ClassVar[str] = ""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        cache: ResponseCache | bool | None = None,
        cassette: Cassette | str | os.PathLike[str] | None = None,
        counter: TokenCounter | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the provider; nothing is sent until the first call.

        Args:
            model: the default model.
            api_key: the API key; default from the provider's environment variable.
            base_url: the API root; default the provider's public endpoint.
            client: an httpx client to use instead of building one (tests, proxies).
            async_client: the same for async calls.
            timeout: seconds (or an ``httpx.Timeout``) for clients ctxlab builds.
            max_retries: retries after the first attempt (default 2).
            retry: the full retry policy (waits, injectable sleep).
            rate_limiter: a shared `RateLimiter`, if any.
            cache: True for the default `ResponseCache`, or a cache; off by default.
            cassette: a `Cassette` or the path of one, to record or replay calls.
            counter: token counter for local estimates (rate limits, missing usage).
            headers: extra request headers.
        """
        self.model = model
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        env = os.environ.get(self.api_key_env) if self.api_key_env else None
        self._api_key = api_key if api_key is not None else env or None
        retry = retry or RetryPolicy()
        if max_retries is not None:
            retry = dataclasses.replace(retry, max_retries=max_retries)
        self._cassette = _cassette(cassette, self._api_key, client, async_client)
        self._http = HTTPCaller(
            provider=self.name,
            base_url=self.base_url,
            headers={**self._auth_headers(self._api_key), **(headers or {})},
            secrets=[self._api_key or ""],
            client=client,
            async_client=async_client,
            timeout=timeout,
            retry=retry,
            transport=self._cassette,
        )
        self._cache = cache if isinstance(cache, ResponseCache) else None
        if cache is True:
            self._cache = ResponseCache()
        self._limiter = rate_limiter
        self._counter = counter

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy in use."""
        return self._http.retry

    @property
    def counter(self) -> TokenCounter:
        """The counter used for local estimates."""
        if self._counter is None:
            self._counter = get_counter()
        return self._counter

    @abc.abstractmethod
    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        """Headers that authenticate (and version) every request."""

    @abc.abstractmethod
    def _body(self, messages: Sequence[Message], options: Options, *, stream: bool) -> Any:
        """The JSON request body."""

    @abc.abstractmethod
    def _parse(self, data: Any) -> Completion:
        """A `Completion` from a whole JSON reply (empty usage when the server sent none)."""

    @abc.abstractmethod
    def _accumulator(self) -> StreamAccumulator:
        """A fresh accumulator for one streamed reply."""

    def complete(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> Completion:
        """Send the messages and return the reply (see `Provider.complete`)."""
        sent, options = tuple(messages), self._options(locals(), extra)
        body, start = self._body(sent, options, stream=False), time.perf_counter()
        key = self._cached(body)
        if isinstance(key, Completion):
            return key
        if self._limiter is not None:
            self._limiter.acquire(self._estimate(sent, options))
        done = self._finish(self._parse(self._http.post(self.path, body)), sent, start)
        return self._store(key, done)

    async def acomplete(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> Completion:
        """Asynchronous `complete`."""
        sent, options = tuple(messages), self._options(locals(), extra)
        body, start = self._body(sent, options, stream=False), time.perf_counter()
        key = self._cached(body)
        if isinstance(key, Completion):
            return key
        if self._limiter is not None:
            await self._limiter.aacquire(self._estimate(sent, options))
        data = await self._http.apost(self.path, body)
        return self._store(key, self._finish(self._parse(data), sent, start))

    def stream(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> Iterator[StreamEvent]:
        """Yield text deltas, then the `Completion` (see `Provider.stream`)."""
        sent, options = tuple(messages), self._options(locals(), extra)
        body, start = self._body(sent, options, stream=True), time.perf_counter()
        self._require_key()
        if self._limiter is not None:
            self._limiter.acquire(self._estimate(sent, options))
        for attempt in range(self.retry.max_retries + 1):
            acc, yielded, failure = self._accumulator(), False, None
            events = self._http.stream(self.path, body)
            try:
                for event in events:
                    try:
                        delta = acc.feed(event)
                    except ProviderHTTPError as exc:  # an error event inside a 200 stream
                        failure = exc
                        break
                    if delta:
                        yielded = True
                        yield TextDelta(text=delta)
                    if acc.done:
                        break
            finally:
                events.close()
            if failure is not None:
                self.retry.sleep(self._stream_retry(failure, attempt, yielded))
                continue
            yield self._finish(acc.result(), sent, start)
            return

    async def astream(
        self,
        messages: Iterable[Message],
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[Tool] | None = None,
        response_format: ResponseFormat | None = None,
        **extra: Any,
    ) -> AsyncIterator[StreamEvent]:
        """Asynchronous `stream`."""
        sent, options = tuple(messages), self._options(locals(), extra)
        body, start = self._body(sent, options, stream=True), time.perf_counter()
        self._require_key()
        if self._limiter is not None:
            await self._limiter.aacquire(self._estimate(sent, options))
        for attempt in range(self.retry.max_retries + 1):
            acc, yielded, failure = self._accumulator(), False, None
            events = self._http.astream(self.path, body)
            try:
                async for event in events:
                    try:
                        delta = acc.feed(event)
                    except ProviderHTTPError as exc:  # an error event inside a 200 stream
                        failure = exc
                        break
                    if delta:
                        yielded = True
                        yield TextDelta(text=delta)
                    if acc.done:
                        break
            finally:
                await events.aclose()
            if failure is not None:
                await self.retry.asleep(self._stream_retry(failure, attempt, yielded))
                continue
            yield self._finish(acc.result(), sent, start)
            return

    def close(self) -> None:
        """Close the clients ctxlab built."""
        self._http.close()

    async def aclose(self) -> None:
        """Close the clients ctxlab built."""
        await self._http.aclose()

    def _options(self, call: dict[str, Any], extra: dict[str, Any]) -> Options:
        return Options(
            model=call["model"] or self.model,
            max_tokens=call["max_tokens"],
            temperature=call["temperature"],
            tools=call["tools"],
            response_format=call["response_format"],
            extra=extra,
        )

    def _require_key(self) -> None:
        # A cassette may answer without the network; a live miss gets the API's own 401.
        if self.api_key_required and not self._api_key and self._cassette is None:
            where = f"set {self.api_key_env} or " if self.api_key_env else ""
            raise ConfigurationError(f"{self.name} needs an API key: {where}pass api_key=")

    def _cached(self, body: Any) -> Completion | str | None:
        """The cached reply, or the cache key to store under (None without a cache)."""
        key = request_key(self.name, self.base_url, body) if self._cache is not None else None
        hit = self._cache.get(key) if self._cache is not None and key is not None else None
        if hit is None:
            self._require_key()
        return hit or key

    def _store(self, key: Completion | str | None, done: Completion) -> Completion:
        if self._cache is not None and isinstance(key, str):
            self._cache.put(key, done, provider=self.spec)
        return done

    def _estimate(self, sent: Sequence[Message], options: Options) -> int:
        if self._limiter is None or not self._limiter.counts_tokens:
            return 0
        return self.counter.count_messages(sent) + (options.max_tokens or 0)

    def _finish(self, done: Completion, sent: Sequence[Message], start: float) -> Completion:
        usage = done.usage
        if not usage:  # the server reported nothing: count locally and say so
            output = self.counter.count_text(done.text) + sum(
                self.counter.count_text(c.name + c.arguments) for c in done.tool_calls
            )
            usage = Usage(
                input_tokens=self.counter.count_messages(sent),
                output_tokens=output,
                requests=1,
                estimated=True,
            )
        return dataclasses.replace(
            done, usage=usage, model=done.model or self.model, latency_s=time.perf_counter() - start
        )

    def _stream_retry(self, exc: ProviderHTTPError, attempt: int, yielded: bool) -> float:
        """The wait before re-sending a stream that failed with an error event, or raise."""
        wait = None if yielded else self.retry.wait_before_retry(attempt, exc.status)
        if wait is None:
            raise exc
        return wait

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r})"


def _cassette(
    cassette: Cassette | str | os.PathLike[str] | None,
    api_key: str | None,
    client: httpx.Client | None,
    async_client: httpx.AsyncClient | None,
) -> Cassette | None:
    if cassette is None:
        return None
    if client is not None or async_client is not None:
        raise UsageError(
            "pass either a client or a cassette, not both: give the cassette the transport "
            "instead (Cassette(path, transport=...))"
        )
    tape = cassette if isinstance(cassette, Cassette) else Cassette(cassette)
    tape.add_secret(api_key)
    return tape
