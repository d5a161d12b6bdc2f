"""An OpenAI-compatible proxy that keeps conversation memory per session (extra ``proxy``).

``ctxlab serve --config proxy.toml`` runs it; `create_app` builds the FastAPI application for
any ASGI server. See `ctxlab.live.proxy.config` for the configuration file and
`ctxlab.live.proxy.app` for the endpoints.

Part of `ctxlab.live`: may import the core values, `formats`, `strategies`, `summarizers`,
`providers` and the rest of `live`; never `lab` or `widgets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxlab.live.proxy.config import ProxyConfig, load_config, parse_config

if TYPE_CHECKING:
    from ctxlab.live.proxy.app import create_app

__all__ = ["ProxyConfig", "create_app", "load_config", "parse_config"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ctxlab.errors import MissingDependencyError

        try:
            from ctxlab.live.proxy.app import create_app
        except ImportError as exc:
            missing = exc.name or "fastapi"
            raise MissingDependencyError(missing, "proxy", "the ctxlab proxy") from exc
        return create_app
    raise AttributeError(f"module 'ctxlab.live.proxy' has no attribute {name!r}")
