"""Prometheus metrics of the proxy, by key name and route (never by key or session id).

Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ctxlab.usage import Usage

__all__ = ["ProxyMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ProxyMetrics:
    """Counters and histograms for ``GET /metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ctxlab_proxy_requests",
            "Chat requests answered",
            ["key", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ctxlab_proxy_request_seconds",
            "Time to answer a chat request (whole stream for streams)",
            ["key", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "ctxlab_proxy_tokens", "Tokens billed upstream", ["key", "route", "kind"], registry=r
        )
        self.cost = Counter(
            "ctxlab_proxy_cost_usd",
            "Upstream cost from the price table",
            ["key", "route"],
            registry=r,
        )
        self.rate_limited = Counter(
            "ctxlab_proxy_rate_limited",
            "Requests refused by a limit",
            ["key", "reason"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "ctxlab_proxy_upstream_errors",
            "Upstream failures after retries",
            ["route", "status"],
            registry=r,
        )

    def observe(self, key: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(key, route, str(status)).inc()
        self.latency.labels(key, route).observe(seconds)

    def billed(self, key: str, route: str, usage: Usage, cost_usd: float) -> None:
        """Add a reply's tokens and cost."""
        for kind, n in (
            ("input", usage.input_tokens),
            ("cached_input", usage.cached_input_tokens),
            ("cache_write", usage.cache_write_tokens),
            ("output", usage.output_tokens),
        ):
            if n:
                self.tokens.labels(key, route, kind).inc(n)
        if math.isfinite(cost_usd):
            self.cost.labels(key, route).inc(cost_usd)

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))
