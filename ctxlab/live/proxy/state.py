"""`ProxyState`: everything a request needs, built once from the configuration."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ctxlab.budget import Budget
from ctxlab.live.proxy.auth import KeyRing, key_digest
from ctxlab.live.proxy.config import ProxyConfig
from ctxlab.live.proxy.limits import Limits, open_limits
from ctxlab.live.proxy.metrics import ProxyMetrics
from ctxlab.live.proxy.routes import Router
from ctxlab.live.proxy.spend import MAX_MODELS, Prices
from ctxlab.live.stores import Store, open_store
from ctxlab.strategies import get_strategy
from ctxlab.strategies.base import Strategy
from ctxlab.tokens import TokenCounter, get_counter

__all__ = ["ProxyState"]

logger = logging.getLogger("ctxlab.live.proxy")


class ProxyState:
    """Keys, routes (with their providers), the store, the limits, the strategy, the metrics.

    Args:
        config: the checked configuration.
        store: a store to use instead of opening ``config.server.store``.
        limits: limit state to use instead of the default for the store.

    Raises:
        ConfigurationError: a key or upstream secret cannot be resolved, or the store cannot
            be opened.
    """

    def __init__(
        self, config: ProxyConfig, *, store: Store | None = None, limits: Limits | None = None
    ) -> None:
        self.config = config
        self.keys = KeyRing(config.keys)
        self.router = Router(config.routes, config.server.max_reply_bytes)
        self.store: Store = store if store is not None else open_store(config.server.store)
        self._owns_store = store is None
        self.limits: Limits = limits if limits is not None else open_limits(config.server.store)
        self.strategy: Strategy = _strategy(config, self.router)
        self.budget = Budget(max_tokens=config.memory.budget)
        self.counter: TokenCounter = get_counter()
        self.metrics = ProxyMetrics()
        self.prices = Prices()
        self.heavy = ThreadPoolExecutor(1, thread_name_prefix="ctxlab-proxy-heavy")
        self.metrics_key = _metrics_key(config)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._warned: OrderedDict[str, None] = OrderedDict()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def warn_once(self, message: str) -> None:
        """Log a warning the first time it is seen (among the latest `MAX_MODELS` warnings)."""
        if message not in self._warned:
            self._warned[message] = None
            if len(self._warned) > MAX_MODELS:
                self._warned.popitem(last=False)
            logger.warning(message)

    async def aclose(self) -> None:
        """Wait for background work, then close providers, limits and the store."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.heavy.shutdown(wait=False, cancel_futures=True)
        await self.router.aclose()
        await self.limits.aclose()
        if self._owns_store:
            self.store.close()


def _strategy(config: ProxyConfig, router: Router) -> Strategy:
    """The ``[memory]`` strategy, its summaries written by the routed LLM when configured."""
    memory, params = config.memory, dict(config.memory.params)
    if memory.summarizer is not None:
        from ctxlab.summarizers.llm import LLMSummarizer

        found = router.resolve(memory.summarizer.model)
        assert found is not None  # the config check made sure it routes
        route, model = found
        params["summarizer"] = LLMSummarizer(
            route.provider, model=model, max_summary_tokens=memory.summarizer.max_summary_tokens
        )
    return get_strategy(memory.strategy, **params)


def _metrics_key(config: ProxyConfig) -> bytes | None:
    spec = config.server.metrics_key
    return None if spec is None else key_digest(spec, "server.metrics_key")
