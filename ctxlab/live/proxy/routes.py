"""Routing by model prefix: ``"local/smollm2"`` goes to the route ``local/`` as ``"smollm2"``.

Each route owns one provider adapter (with its retries, timeout and HTTP connection pool),
built once at start-up and shared by every request. Its async HTTP client cuts off replies
larger than ``server.max_reply_bytes`` (`ctxlab.live.proxy.upstream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from ctxlab.live.proxy.auth import resolve_secret
from ctxlab.live.proxy.config import RouteConfig
from ctxlab.live.proxy.upstream import limited_client
from ctxlab.providers import get_provider
from ctxlab.providers.base import Provider

__all__ = ["Route", "Router"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """A configured route and its provider."""

    config: RouteConfig
    provider: Provider
    client: httpx.AsyncClient

    @property
    def prefix(self) -> str:
        """The model prefix this route serves."""
        return self.config.prefix


class Router:
    """Finds the route of a model name; the longest matching prefix wins."""

    def __init__(self, routes: Sequence[RouteConfig], max_reply_bytes: int) -> None:
        self.routes = tuple(_route(r, i, max_reply_bytes) for i, r in enumerate(routes))
        self._by_length = sorted(self.routes, key=lambda r: -len(r.prefix))

    @property
    def prefixes(self) -> list[str]:
        """Every configured prefix, in configuration order."""
        return [r.prefix for r in self.routes]

    def resolve(self, model: str) -> tuple[Route, str] | None:
        """The route for `model` and the model name to send upstream, or None."""
        for route in self._by_length:
            if model.startswith(route.prefix) and len(model) > len(route.prefix):
                return route, model[len(route.prefix) :]
        return None

    async def aclose(self) -> None:
        """Close every provider's HTTP clients."""
        for route in self.routes:
            await route.provider.aclose()
            await route.client.aclose()


def _route(route: RouteConfig, index: int, max_reply_bytes: int) -> Route:
    client = limited_client(route.timeout, max_reply_bytes)
    return Route(config=route, provider=_provider(route, index, client), client=client)


def _provider(route: RouteConfig, index: int, client: httpx.AsyncClient) -> Provider:
    kwargs: dict[str, object] = {
        "model": "default",  # every call names its model; this one is never sent
        "timeout": route.timeout,
        "max_retries": route.max_retries,
        "async_client": client,
    }
    if route.base_url:
        kwargs["base_url"] = route.base_url
    if route.api_key:
        kwargs["api_key"] = resolve_secret(route.api_key, f"routes[{index}].api_key")
    return get_provider(route.provider, **kwargs)
