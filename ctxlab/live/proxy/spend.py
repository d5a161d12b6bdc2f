"""Prices and spend reservations: what a request may cost at most, and what it did cost.

A route's ``input_usd_per_mtok``/``output_usd_per_mtok`` price every model behind it; without
them the price table (`ctxlab.providers.pricing`) is asked. Lookups are remembered per model
name, at most `MAX_MODELS` of them (names are chosen by clients: the memory must stay bounded).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from ctxlab.live.proxy.routes import Route
from ctxlab.providers.pricing import ModelPrice, cost_usd, lookup
from ctxlab.usage import Usage

__all__ = ["MAX_MODELS", "Prices", "worst_case"]

#: How many distinct model names have their price lookups remembered.
MAX_MODELS = 1024


class Prices:
    """Price lookups by (route, model), remembered in a bounded least-recently-used cache."""

    def __init__(self, limit: int = MAX_MODELS) -> None:
        self._limit = limit
        self._known: OrderedDict[tuple[str, str], ModelPrice | None] = OrderedDict()

    def price(self, route: Route, model: str) -> ModelPrice | None:
        """The price of `model` on `route`, or None when neither the route nor the table knows."""
        config = route.config
        if config.input_usd_per_mtok is not None and config.output_usd_per_mtok is not None:
            return ModelPrice(
                input=config.input_usd_per_mtok / 1e6, output=config.output_usd_per_mtok / 1e6
            )
        found = (route.prefix, model)
        if found in self._known:
            self._known.move_to_end(found)
            return self._known[found]
        price = self._known[found] = lookup(model)  # a miss scans the table: once per name
        if len(self._known) > self._limit:
            self._known.popitem(last=False)
        return price

    def cost(self, usage: Usage, route: Route, model: str) -> float:
        """The cost of `usage`, NaN when the model has no price."""
        price = self.price(route, model)
        return math.nan if price is None else cost_usd(usage, model, {model: price})


def worst_case(price: ModelPrice, prompt_tokens: int, max_tokens: int) -> float:
    """The most a request can cost: its whole prompt uncached and its whole reply limit."""
    return prompt_tokens * price.input + max_tokens * price.output
