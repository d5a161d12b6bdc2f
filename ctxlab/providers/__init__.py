"""LLM providers behind one interface, and their registry.

``get_provider(spec, **kwargs)`` builds a provider from a short spec::

    get_provider("openai:gpt-4o-mini")                     # key from OPENAI_API_KEY or api_key=
    get_provider("anthropic:claude-sonnet-4-5")            # key from ANTHROPIC_API_KEY
    get_provider("openai-compatible:smollm2@http://127.0.0.1:8765/v1", api_key=None)
    get_provider("openai-compatible", model="smollm2", base_url="http://127.0.0.1:8765/v1")
    get_provider("scripted", replies=["Hello!"])           # offline, deterministic

Keyword arguments go to the provider's constructor (``api_key``, ``client``, ``timeout``,
``max_retries``, ``retry``, ``rate_limiter``, ``cache``, ``cassette``...). Each provider
module is imported on first use, so ``import ctxlab.providers`` stays cheap.

May import the core values and `formats` (wire conversions); never the strategies, the lab,
the live side or the widgets.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Any

from ctxlab.errors import UsageError
from ctxlab.providers.base import Completion, Provider, StreamEvent, TextDelta

if TYPE_CHECKING:
    from ctxlab.providers.anthropic import AnthropicProvider
    from ctxlab.providers.cache import ResponseCache
    from ctxlab.providers.cassette import Cassette
    from ctxlab.providers.openai import OpenAIProvider
    from ctxlab.providers.openai_compatible import OpenAICompatibleProvider
    from ctxlab.providers.pricing import (
        CostUnknownWarning,
        context_window,
        cost_usd,
        price_table,
        prompt_caching_cost,
    )
    from ctxlab.providers.ratelimit import RateLimiter
    from ctxlab.providers.retry import RetryPolicy
    from ctxlab.providers.scripted import ScriptedProvider

__all__ = [
    "AnthropicProvider",
    "Cassette",
    "Completion",
    "CostUnknownWarning",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "Provider",
    "RateLimiter",
    "ResponseCache",
    "RetryPolicy",
    "ScriptedProvider",
    "StreamEvent",
    "TextDelta",
    "context_window",
    "cost_usd",
    "get_provider",
    "names",
    "price_table",
    "prompt_caching_cost",
]

# provider kind -> "module:Class"; imported only when asked for.
_REGISTRY: dict[str, str] = {
    "anthropic": "ctxlab.providers.anthropic:AnthropicProvider",
    "openai": "ctxlab.providers.openai:OpenAIProvider",
    "openai-compatible": "ctxlab.providers.openai_compatible:OpenAICompatibleProvider",
    "scripted": "ctxlab.providers.scripted:ScriptedProvider",
}

_LAZY: dict[str, str] = {
    "AnthropicProvider": "ctxlab.providers.anthropic",
    "Cassette": "ctxlab.providers.cassette",
    "CostUnknownWarning": "ctxlab.providers.pricing",
    "OpenAICompatibleProvider": "ctxlab.providers.openai_compatible",
    "OpenAIProvider": "ctxlab.providers.openai",
    "RateLimiter": "ctxlab.providers.ratelimit",
    "ResponseCache": "ctxlab.providers.cache",
    "RetryPolicy": "ctxlab.providers.retry",
    "ScriptedProvider": "ctxlab.providers.scripted",
    "context_window": "ctxlab.providers.pricing",
    "cost_usd": "ctxlab.providers.pricing",
    "price_table": "ctxlab.providers.pricing",
    "prompt_caching_cost": "ctxlab.providers.pricing",
}

# "MODEL@http(s)://..." in the openai-compatible spec; model names may hold ':' or '@'.
_AT_URL = re.compile(r"^(?P<model>.*)@(?P<url>https?://.+)$")


def names() -> list[str]:
    """The provider kinds `get_provider` knows, sorted."""
    return sorted(_REGISTRY)


def get_provider(spec: str, **kwargs: Any) -> Provider:
    """Build a provider from a spec such as ``"openai:gpt-4o-mini"`` (see the module docstring).

    Raises:
        UsageError: unknown provider kind, missing model or base URL, or a bad keyword.
    """
    kind, _, rest = spec.partition(":")
    target = _REGISTRY.get(kind)
    if target is None:
        raise UsageError(
            f"unknown provider {kind!r} in spec {spec!r}; known providers: {', '.join(names())} "
            "(e.g. 'openai:gpt-4o-mini' or 'openai-compatible:MODEL@http://HOST:PORT/v1')"
        )
    if kind == "openai-compatible" and (match := _AT_URL.match(rest)):
        rest = match["model"]
        _set_once(kwargs, "base_url", match["url"], spec)
    if rest:
        _set_once(kwargs, "model", rest, spec)
    if kind != "scripted" and not kwargs.get("model"):
        raise UsageError(f"provider spec {spec!r} names no model; write '{kind}:MODEL'")
    module, _, attr = target.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module), attr)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"bad arguments for provider {kind!r}: {exc}") from exc


def _set_once(kwargs: dict[str, Any], key: str, value: str, spec: str) -> None:
    if kwargs.get(key) not in (None, value):
        raise UsageError(f"{key} given both in the spec {spec!r} and as a keyword; give it once")
    kwargs[key] = value


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctxlab.providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
