"""What the LLM summarizer and the QA metric share: resolving a provider, cached calls.

Both accept a `Provider` object or a `get_provider` spec string. A spec string keeps the
object that holds it picklable (process pools, Dask): the provider is built on first use in
each process, once per spec. A provider object is used as given; it holds sockets and locks,
so whatever holds it runs in threads only.

`complete` and `acomplete` put ctxlab's `ResponseCache` in front of any provider (scripted
ones too) when asked, keyed by the provider kind, the model, the messages and the call
options, so a re-run costs no call. The base URL is left out of the key on purpose: a local
server gets a new port at each start, and its replies should still be reused. A cached reply
keeps the usage of the call that produced it: reports show what the work costs, not what a
warm cache saved.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from ctxlab.formats.openai_chat import to_openai
from ctxlab.messages import Message
from ctxlab.providers import Completion, Provider, get_provider
from ctxlab.providers.cache import ResponseCache, request_key

__all__ = [
    "ProviderLike",
    "acomplete",
    "complete",
    "opened",
    "opened_async",
    "provider_label",
    "resolve",
]

#: A provider object, or a `get_provider` spec such as ``openai-compatible:smollm2@http://...``.
ProviderLike = Provider | str

_BUILT: dict[str, Provider] = {}
_CACHES: dict[str, ResponseCache] = {}
_LOCK = threading.Lock()


def resolve(provider: ProviderLike) -> Provider:
    """The provider object for synchronous calls (built once per process from a spec).

    Providers built here are closed when the interpreter exits.
    """
    if isinstance(provider, Provider):
        return provider
    with _LOCK:
        built = _BUILT.get(provider)
        if built is None:
            if not _BUILT:
                atexit.register(_close_all)
            built = _BUILT[provider] = get_provider(provider)
        return built


def _close_all() -> None:
    with _LOCK:
        built = list(_BUILT.values())
        _BUILT.clear()
    for provider in built:
        provider.close()


@contextlib.contextmanager
def opened(provider: ProviderLike) -> Iterator[Provider]:
    """A provider for the duration of a block: a spec is built for it and closed after it."""
    if isinstance(provider, Provider):
        yield provider
        return
    built = get_provider(provider)
    try:
        yield built
    finally:
        built.close()


@contextlib.asynccontextmanager
async def opened_async(provider: ProviderLike) -> AsyncIterator[Provider]:
    """`opened` for async calls.

    An async client belongs to one event loop, so a spec gets a fresh provider in each block
    rather than one shared across loops.
    """
    if isinstance(provider, Provider):
        yield provider
        return
    built = get_provider(provider)
    try:
        yield built
    finally:
        await built.aclose()


def provider_label(provider: ProviderLike, model: str | None) -> str:
    """A short, stable name for reports: ``kind:model`` (no URL, no key)."""
    if isinstance(provider, str):
        kind, _, rest = provider.partition(":")
        name = model or rest.rsplit("@http", 1)[0]
        return f"{kind}:{name}" if name else kind
    return f"{provider.name}:{model or provider.model}"


def _cache() -> ResponseCache:
    from ctxlab._config import home_dir

    path = str(home_dir() / "cache" / "responses.sqlite3")
    with _LOCK:
        cache = _CACHES.get(path)
        if cache is None:
            cache = _CACHES[path] = ResponseCache(path)
        return cache


def _key(provider: Provider, messages: Sequence[Message], options: Mapping[str, Any]) -> str:
    body = {"messages": to_openai(messages), **{k: v for k, v in options.items() if v is not None}}
    body["model"] = options.get("model") or provider.model
    return request_key(f"{provider.name}:ctxlab-llm", "", body)


def complete(
    provider: Provider, messages: Sequence[Message], *, cache: bool, **options: Any
) -> Completion:
    """``provider.complete(messages, **options)`` behind the response cache when `cache`."""
    if not cache:
        return provider.complete(messages, **options)
    store, key = _cache(), _key(provider, messages, options)
    hit = store.get(key)
    if hit is not None:
        return hit
    done = provider.complete(messages, **options)
    store.put(key, done, provider=provider.spec)
    return done


async def acomplete(
    provider: Provider, messages: Sequence[Message], *, cache: bool, **options: Any
) -> Completion:
    """Asynchronous `complete`."""
    if not cache:
        return await provider.acomplete(messages, **options)
    store, key = _cache(), _key(provider, messages, options)
    hit = store.get(key)
    if hit is not None:
        return hit
    done = await provider.acomplete(messages, **options)
    store.put(key, done, provider=provider.spec)
    return done
