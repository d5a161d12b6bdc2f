"""What a call costs in US dollars, and how large a model's context window is.

Prices come from a pinned copy of the litellm price table shipped in ``providers/data`` (see
its SOURCE.md for the upstream version and what was kept). Users can pass their own table
(`price_table(path_or_mapping)`) to any function here.

`cost_usd` bills each `Usage` bucket at its own price: ``input_tokens`` at the input price,
``cached_input_tokens`` at the cache-read price, ``cache_write_tokens`` at the cache-write price
(each falling back to the input price when the table has none), ``output_tokens`` at the output
price. An unknown model costs NaN, never a silent 0, and emits one `CostUnknownWarning` per
model name; filter it with ``warnings.filterwarnings("ignore", category=CostUnknownWarning)``.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

from ctxlab.errors import DataFormatError, UsageError
from ctxlab.usage import Usage

__all__ = [
    "CachingEstimate",
    "CostUnknownWarning",
    "ModelPrice",
    "PriceTable",
    "context_window",
    "cost_usd",
    "lookup",
    "price_table",
    "prompt_caching_cost",
]


class CostUnknownWarning(UserWarning):
    """A cost was asked for a model the price table does not know; the cost is NaN."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelPrice:
    """Prices of one model in USD per token, and its limits.

    Attributes:
        input: price of a non-cached prompt token.
        output: price of a generated token.
        cached_input: price of a prompt token read from the prompt cache, if published.
        cache_write: price of a prompt token written to the cache (Anthropic), if published.
        context_window: maximum prompt tokens (``max_input_tokens``), if known.
        max_output_tokens: maximum generated tokens, if known.
        provider: the provider the price applies to (``openai``, ``anthropic``...).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    provider: str | None = None


PriceTable: TypeAlias = Mapping[str, ModelPrice]

_WARNED: set[str] = set()
_WARN_LOCK = threading.Lock()


def price_table(source: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> PriceTable:
    """Load a price table.

    Args:
        source: None for the shipped table; a path to a JSON file in the litellm shape; or a
            mapping of model name to `ModelPrice` or to a litellm-shaped dict.

    Raises:
        DataFormatError: the file or an entry cannot be read.
    """
    if source is None:
        return _shipped()
    if isinstance(source, Mapping):
        return {name: _entry(name, value, None) for name, value in source.items()}
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"cannot read the price table: {exc}", path=path) from exc
    return _parse(data, path)


@functools.lru_cache(maxsize=1)
def _shipped() -> PriceTable:
    text = resources.files("ctxlab.providers").joinpath("data/model_prices.json").read_text()
    return _parse(json.loads(text), Path("ctxlab/providers/data/model_prices.json"))


def _parse(data: Any, path: Path) -> dict[str, ModelPrice]:
    if not isinstance(data, Mapping):
        raise DataFormatError("a price table must be a JSON object keyed by model", path=path)
    table = {}
    for name, value in data.items():
        if name == "sample_spec" or not isinstance(value, Mapping):
            continue
        if value.get("input_cost_per_token") is None or value.get("output_cost_per_token") is None:
            continue  # entries without token prices (images, audio) cannot price a Usage
        table[name] = _entry(name, value, path)
    return table


def _entry(name: str, value: Any, path: Path | None) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    try:
        return ModelPrice(
            input=float(value["input_cost_per_token"]),
            output=float(value["output_cost_per_token"]),
            cached_input=_opt_float(value.get("cache_read_input_token_cost")),
            cache_write=_opt_float(value.get("cache_creation_input_token_cost")),
            context_window=_opt_int(value.get("max_input_tokens") or value.get("max_tokens")),
            max_output_tokens=_opt_int(value.get("max_output_tokens")),
            provider=value.get("litellm_provider"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(
            f"price entry {name!r} needs numeric input_cost_per_token and "
            f"output_cost_per_token ({exc})",
            path=path,
        ) from exc


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def lookup(model: str, table: PriceTable | None = None) -> ModelPrice | None:
    """The price entry of `model`, or None.

    Tries the exact name, then without a provider prefix (``openai/gpt-4o``, ``openai:gpt-4o``),
    then the one table key ending in ``/<model>`` when exactly one does.
    """
    table = price_table() if table is None else table
    for name in (model, model.lower(), model.split("/")[-1], model.split(":", 1)[-1]):
        if name in table:
            return table[name]
    bare = model.split("/")[-1].split(":", 1)[-1]
    matches = [key for key in table if key.endswith("/" + bare)]
    return table[matches[0]] if len(matches) == 1 else None


def cost_usd(usage: Usage, model: str, table: PriceTable | None = None) -> float:
    """Dollar cost of `usage` on `model` (NaN plus one warning when the model is unknown)."""
    price = lookup(model, table)
    if price is None:
        _warn_unknown(model)
        return math.nan
    cached = price.input if price.cached_input is None else price.cached_input
    write = price.input if price.cache_write is None else price.cache_write
    return (
        usage.input_tokens * price.input
        + usage.cached_input_tokens * cached
        + usage.cache_write_tokens * write
        + usage.output_tokens * price.output
    )


def _warn_unknown(model: str) -> None:
    with _WARN_LOCK:
        if model in _WARNED:
            return
        _WARNED.add(model)
    warnings.warn(
        f"no price known for model {model!r}: its cost is NaN. Pass table=price_table(...) "
        "with an entry for it",
        CostUnknownWarning,
        stacklevel=3,
    )


def context_window(model: str, table: PriceTable | None = None) -> int:
    """The model's context window (maximum prompt tokens) from the price table.

    Raises:
        UsageError: the model or its window is unknown; the message suggests close names.
    """
    table = price_table() if table is None else table
    price = lookup(model, table)
    if price is None or price.context_window is None:
        close = difflib.get_close_matches(model, list(table), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(
            f"no context window known for model {model!r}{hint} "
            "Give the window explicitly: Budget(max_tokens=...)"
        )
    return price.context_window


@dataclass(frozen=True, kw_only=True, slots=True)
class CachingEstimate:
    """The cost of a run of requests without and with prompt caching.

    Attributes:
        plain_usd: every prompt token at the input price.
        cached_usd: shared prefixes at the cache-read price (and, for models with a
            cache-write price, the rest of each prompt written to the cache).
        cached_tokens: prompt tokens billed as cache reads.
        input_tokens: all prompt tokens.
    """

    plain_usd: float
    cached_usd: float
    cached_tokens: int
    input_tokens: int

    @property
    def saving_usd(self) -> float:
        """``plain_usd - cached_usd``."""
        return self.plain_usd - self.cached_usd


def prompt_caching_cost(
    input_tokens: Sequence[int],
    shared_prefix_tokens: Sequence[int],
    model: str,
    *,
    output_tokens: Sequence[int] | None = None,
    min_prefix_tokens: int = 1024,
    table: PriceTable | None = None,
) -> CachingEstimate:
    """Estimate what prompt caching would save over a sequence of requests.

    Request ``i`` sends ``input_tokens[i]`` prompt tokens, of which ``shared_prefix_tokens[i]``
    repeat the start of the previous request (0 for the first). Prefixes shorter than
    `min_prefix_tokens` are not cached (providers cache only long prompts: 1024 tokens for
    OpenAI and most Claude models). Models with a cache-write price (Anthropic) pay it for
    the non-shared part of each prompt, which is what the next request could then read;
    models without a cache-read price get no discount.
    """
    if len(input_tokens) != len(shared_prefix_tokens):
        raise UsageError("input_tokens and shared_prefix_tokens must have the same length")
    outputs = output_tokens if output_tokens is not None else [0] * len(input_tokens)
    if len(outputs) != len(input_tokens):
        raise UsageError("output_tokens must have one count per request")
    price = lookup(model, table)
    discount = price is not None and price.cached_input is not None
    writes = discount and price is not None and price.cache_write is not None
    plain = cached = 0.0
    hits = 0
    for n, shared, out in zip(input_tokens, shared_prefix_tokens, outputs, strict=True):
        read = min(shared, n) if discount and shared >= min_prefix_tokens else 0
        rest = n - read
        write = writes and n >= min_prefix_tokens  # shorter prompts cannot be cached at all
        plain += cost_usd(Usage(input_tokens=n, output_tokens=out), model, table)
        bucket = Usage(
            input_tokens=0 if write else rest,
            cache_write_tokens=rest if write else 0,
            cached_input_tokens=read,
            output_tokens=out,
        )
        cached += cost_usd(bucket, model, table)
        hits += read
    return CachingEstimate(
        plain_usd=plain, cached_usd=cached, cached_tokens=hits, input_tokens=sum(input_tokens)
    )
