"""The proxy's configuration file (TOML), read into frozen values and checked field by field.

The file, with every optional field shown at its default::

    [server]
    host = "127.0.0.1"
    port = 8080
    store = "sqlite:///ctxlab-proxy.db"     # or "memory", or "redis://127.0.0.1:6379/0"
    max_request_bytes = 4194304             # larger request bodies get 413
    read_timeout = 30.0                     # seconds to receive a request body, else 408
    max_reply_bytes = 4194304               # a larger upstream reply or stream gets 502
    default_max_tokens = 4096               # output cap reserved (and sent) under usd_per_day
    metrics_key = "env:METRICS_KEY"         # optional: GET /metrics then needs this bearer key
    debug = false                           # log message content (never keys)

    [[keys]]
    name = "alice"
    key = "env:ALICE_KEY"                   # or "sha256:<hex digest of the key>"
    requests_per_minute = 60                # optional
    tokens_per_minute = 200000              # optional
    usd_per_day = 5.0                       # optional

    [[routes]]
    prefix = "local/"                       # model "local/smollm2" -> this provider, "smollm2"
    provider = "openai-compatible"          # or "openai", "anthropic"
    base_url = "http://127.0.0.1:8765/v1"
    api_key = "env:UPSTREAM_KEY"            # optional
    timeout = 600.0                         # seconds for the whole request, streams included
    max_retries = 2
    input_usd_per_mtok = 0.15               # optional prices (both or neither), USD per
    output_usd_per_mtok = 0.60              #   million tokens; else the price table's
    models = []                             # listed by GET /v1/models

    [memory]
    strategy = "token_window"
    budget = 4000
    params = {}

    [memory.summarizer]                     # optional, for summarize and summary_window:
    model = "local/smollm2"                 #   an LLM, routed like a request's model, writes
    max_summary_tokens = 400                #   the running summary (else: extractive, offline)

Every error names the file and the field (``proxy.toml: keys[1].requests_per_minute must be
a positive integer, got -5``). Secrets are checked for form here and resolved in `auth`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxlab.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "PROVIDERS",
    "KeyConfig",
    "MemoryConfig",
    "ProxyConfig",
    "RouteConfig",
    "ServerConfig",
    "SummarizerConfig",
    "load_config",
    "parse_config",
]

PROVIDERS = ("openai-compatible", "openai", "anthropic")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """The ``[server]`` table."""

    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "sqlite:///ctxlab-proxy.db"
    max_request_bytes: int = 4 * 1024 * 1024
    read_timeout: float = 30.0
    max_reply_bytes: int = 4 * 1024 * 1024
    default_max_tokens: int = 4096
    metrics_key: str | None = None
    debug: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyConfig:
    """One ``[[keys]]`` entry: a client key and its limits (None: unlimited)."""

    name: str
    key: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    usd_per_day: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteConfig:
    """One ``[[routes]]`` entry: requests whose model starts with `prefix` go to a provider."""

    prefix: str
    provider: str
    base_url: str | None = None
    api_key: str | None = None
    timeout: float = 600.0
    max_retries: int = 2
    models: tuple[str, ...] = ()
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SummarizerConfig:
    """The ``[memory.summarizer]`` table: the LLM that writes a running summary."""

    model: str
    max_summary_tokens: int = 400


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryConfig:
    """The ``[memory]`` table: the strategy that prunes what is forwarded."""

    strategy: str = "token_window"
    budget: int = 4000
    params: Mapping[str, Any] = field(default_factory=dict)
    summarizer: SummarizerConfig | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ProxyConfig:
    """The whole file."""

    server: ServerConfig
    keys: tuple[KeyConfig, ...]
    routes: tuple[RouteConfig, ...]
    memory: MemoryConfig
    source: str = "<config>"


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read and check a proxy configuration file.

    Raises:
        ConfigurationError: the file is missing, is not TOML, or a field is wrong.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the proxy config {p}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{p}: not valid TOML: {exc}") from exc
    return parse_config(data, source=str(p))


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> ProxyConfig:
    """Check an already parsed configuration (see the module docstring for the fields)."""
    r = _Reader(source)
    r.only(data, "", {"server", "keys", "routes", "memory"})
    keys = tuple(_key(r, k, f"keys[{i}]") for i, k in enumerate(r.tables(data, "keys")))
    routes = tuple(_route(r, t, f"routes[{i}]") for i, t in enumerate(r.tables(data, "routes")))
    if not keys:
        r.fail("keys", "needs at least one [[keys]] entry; clients cannot authenticate without")
    if not routes:
        r.fail("routes", "needs at least one [[routes]] entry, e.g. prefix = 'local/'")
    r.unique([k.name for k in keys], "keys", "name")
    r.unique([t.prefix for t in routes], "routes", "prefix")
    return ProxyConfig(
        server=_server(r, r.table(data, "server")),
        keys=keys,
        routes=routes,
        memory=_memory(r, r.table(data, "memory"), routes),
        source=source,
    )


def _server(r: _Reader, t: Mapping[str, Any]) -> ServerConfig:
    r.only(t, "server", set(_SERVER_FIELDS))
    d = ServerConfig()
    port = r.integer(t, "server", "port", d.port, minimum=0)
    if port > 65535:
        r.fail("server.port", f"must be at most 65535, got {port}")
    return ServerConfig(
        host=r.string(t, "server", "host", d.host),
        port=port,
        store=r.string(t, "server", "store", d.store),
        max_request_bytes=r.integer(t, "server", "max_request_bytes", d.max_request_bytes),
        read_timeout=r.number(t, "server", "read_timeout", d.read_timeout),
        max_reply_bytes=r.integer(t, "server", "max_reply_bytes", d.max_reply_bytes),
        default_max_tokens=r.integer(t, "server", "default_max_tokens", d.default_max_tokens),
        metrics_key=_secret(r, t, "server", "metrics_key"),
        debug=r.boolean(t, "server", "debug", d.debug),
    )


_SERVER_FIELDS = ServerConfig.__slots__


def _secret(r: _Reader, t: Mapping[str, Any], where: str, name: str, *default: Any) -> Any:
    secret = r.string(t, where, name, *(default or (None,)))
    if secret is not None and not secret.startswith(("env:", "sha256:")):
        r.fail(
            f"{where}.{name}",
            "must be 'env:VARIABLE' or 'sha256:<hex digest>'; a plaintext key is never "
            "accepted in the file (compute the digest with: printf %s KEY | sha256sum)",
        )
    return secret


def _key(r: _Reader, t: Mapping[str, Any], where: str) -> KeyConfig:
    r.only(t, where, {"name", "key", "requests_per_minute", "tokens_per_minute", "usd_per_day"})
    secret = _secret(r, t, where, "key", *())
    return KeyConfig(
        name=r.string(t, where, "name"),
        key=secret,
        requests_per_minute=r.integer(t, where, "requests_per_minute", None),
        tokens_per_minute=r.integer(t, where, "tokens_per_minute", None),
        usd_per_day=r.number(t, where, "usd_per_day", None),
    )


def _route(r: _Reader, t: Mapping[str, Any], where: str) -> RouteConfig:
    r.only(t, where, set(RouteConfig.__slots__))
    provider = r.string(t, where, "provider")
    if provider not in PROVIDERS:
        r.fail(f"{where}.provider", f"must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    base_url = r.string(t, where, "base_url", None)
    if provider == "openai-compatible" and not base_url:
        r.fail(f"{where}.base_url", "is required for provider 'openai-compatible'")
    api_key = r.string(t, where, "api_key", None)
    if api_key is not None and not api_key.startswith("env:"):
        r.fail(f"{where}.api_key", "must be 'env:VARIABLE'; plaintext keys are never accepted")
    models = t.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        r.fail(f"{where}.models", "must be a list of model names (strings)")
    return RouteConfig(
        prefix=r.string(t, where, "prefix"),
        provider=provider,
        base_url=base_url,
        api_key=api_key,
        timeout=r.number(t, where, "timeout", 600.0),
        max_retries=r.integer(t, where, "max_retries", 2, minimum=0),
        models=tuple(models),
        **_prices(r, t, where),
    )


def _prices(r: _Reader, t: Mapping[str, Any], where: str) -> dict[str, float | None]:
    names = ("input_usd_per_mtok", "output_usd_per_mtok")
    given = {n: r.number(t, where, n, None, zero=True) for n in names}
    if (given[names[0]] is None) != (given[names[1]] is None):
        r.fail(f"{where}.{names[0]}", f"and {names[1]} go together: give both or neither")
    return given


def _memory(r: _Reader, t: Mapping[str, Any], routes: tuple[RouteConfig, ...]) -> MemoryConfig:
    r.only(t, "memory", {"strategy", "budget", "params", "summarizer"})
    params = t.get("params", {})
    if not isinstance(params, Mapping):
        r.fail("memory.params", f"must be a table of strategy parameters, got {params!r}")
    strategy = r.string(t, "memory", "strategy", "token_window")
    from ctxlab.errors import UsageError
    from ctxlab.strategies import get_strategy

    try:
        get_strategy(strategy, **params)
    except UsageError as exc:
        r.fail("memory.strategy", str(exc))
    summarizer = _summarizer(r, t, routes) if "summarizer" in t else None
    if summarizer is not None and "summarizer" not in _fields_of(strategy):
        r.fail("memory.summarizer", f"is for strategies with a summary; {strategy!r} has none")
    return MemoryConfig(
        strategy=strategy,
        budget=r.integer(t, "memory", "budget", 4000),
        params=dict(params),
        summarizer=summarizer,
    )


def _summarizer(
    r: _Reader, t: Mapping[str, Any], routes: tuple[RouteConfig, ...]
) -> SummarizerConfig:
    table = r.table(t, "summarizer")
    r.only(table, "memory.summarizer", {"model", "max_summary_tokens"})
    model = r.string(table, "memory.summarizer", "model")
    if not any(model.startswith(route.prefix) and model != route.prefix for route in routes):
        known = ", ".join(route.prefix for route in routes)
        r.fail("memory.summarizer.model", f"{model!r} matches no route prefix ({known})")
    limit = r.integer(table, "memory.summarizer", "max_summary_tokens", 400, minimum=8)
    return SummarizerConfig(model=model, max_summary_tokens=limit)


def _fields_of(strategy: str) -> set[str]:
    import dataclasses

    from ctxlab.strategies import strategy_class

    return {f.name for f in dataclasses.fields(strategy_class(strategy))}  # type: ignore[arg-type]


class _Reader:
    """Typed field access whose errors name the file and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> Any:
        raise ConfigurationError(f"{self.source}: {where} {what}")

    def only(self, t: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        unknown = sorted(set(t) - allowed)
        if unknown:
            name = f"{where}.{unknown[0]}" if where else unknown[0]
            self.fail(name, f"is not a known field; known: {', '.join(sorted(allowed))}")

    def table(self, data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        return value if isinstance(value, Mapping) else self.fail(name, "must be a table")

    def tables(self, data: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.fail(name, f"must be an array of tables: write [[{name}]] entries")
        return list(value)

    def unique(self, values: list[str], where: str, name: str) -> None:
        seen: set[str] = set()
        for i, v in enumerate(values):
            if v in seen:
                self.fail(f"{where}[{i}].{name}", f"{v!r} is used twice; each must be unique")
            seen.add(v)

    def string(self, t: Mapping[str, Any], where: str, name: str, *default: Any) -> Any:
        value = self._get(t, where, name, default)
        if value is not None and (not isinstance(value, str) or not value):
            self.fail(f"{where}.{name}", f"must be a non-empty string, got {value!r}")
        return value

    def boolean(self, t: Mapping[str, Any], where: str, name: str, default: bool) -> bool:
        value = t.get(name, default)
        return (
            value if isinstance(value, bool) else self.fail(f"{where}.{name}", "must be true/false")
        )

    def integer(
        self, t: Mapping[str, Any], where: str, name: str, *default: Any, minimum: int = 1
    ) -> Any:
        value = self._get(t, where, name, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.fail(f"{where}.{name}", f"must be an integer, got {value!r}")
        if value is not None and value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.fail(f"{where}.{name}", f"must be {what}, got {value}")
        return value

    def number(
        self, t: Mapping[str, Any], where: str, name: str, *default: Any, zero: bool = False
    ) -> Any:
        value = self._get(t, where, name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{where}.{name}", f"must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            what = "a number >= 0" if zero else "a positive number"
            self.fail(f"{where}.{name}", f"must be {what}, got {value}")
        return float(value)

    def _get(self, t: Mapping[str, Any], where: str, name: str, default: tuple[Any, ...]) -> Any:
        if name in t:
            return t[name]
        if not default:
            self.fail(f"{where}.{name}", "is required")
        return default[0]
