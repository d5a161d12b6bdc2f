"""Cost accounting from the shipped price table, prompt-caching estimates, Budget.for_model."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from ctxlab import Budget
from ctxlab.errors import DataFormatError, UsageError
from ctxlab.providers import pricing
from ctxlab.providers.pricing import (
    CostUnknownWarning,
    ModelPrice,
    context_window,
    cost_usd,
    lookup,
    price_table,
    prompt_caching_cost,
)
from ctxlab.usage import Usage

DATA = Path(pricing.__file__).parent / "data"


def test_shipped_table_has_chat_models_of_both_providers_and_provenance() -> None:
    table = price_table()
    providers = [p.provider for p in table.values()]
    assert providers.count("openai") >= 50 and providers.count("anthropic") >= 10
    assert "1.110.2" in (DATA / "SOURCE.md").read_text()
    assert "MIT" in (DATA / "LICENSE").read_text()
    assert (DATA / "model_prices.json").stat().st_size < 200_000


def test_gpt4o_cost_bills_cached_tokens_at_the_cached_price() -> None:
    # gpt-4o: $2.50 / M input, $1.25 / M cached input, $10 / M output.
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=100_000)
    assert cost_usd(usage, "gpt-4o") == pytest.approx(2.50 + 1.25 + 1.00)
    assert cost_usd(usage, "openai/gpt-4o") == cost_usd(usage, "gpt-4o")


def test_claude_cost_bills_cache_reads_and_writes() -> None:
    # claude-sonnet-4-5: $3 / M input, $0.30 / M cache read, $3.75 / M cache write, $15 / M out.
    usage = Usage(
        input_tokens=1_000_000,
        cached_input_tokens=1_000_000,
        cache_write_tokens=1_000_000,
        output_tokens=1_000_000,
    )
    assert cost_usd(usage, "claude-sonnet-4-5") == pytest.approx(3 + 0.30 + 3.75 + 15)


def test_unknown_model_is_nan_with_one_warning_per_model() -> None:
    usage = Usage(input_tokens=10, output_tokens=1)
    with pytest.warns(CostUnknownWarning, match="no-such-model-xyz"):
        assert math.isnan(cost_usd(usage, "no-such-model-xyz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(cost_usd(usage, "no-such-model-xyz"))  # no second warning


def test_user_table_overrides_and_extends(tmp_path: Path) -> None:
    own = {"my-model": ModelPrice(input=1e-6, output=2e-6, context_window=8192)}
    usage = Usage(input_tokens=1000, cached_input_tokens=1000, output_tokens=1000)
    # No cached price: cached tokens fall back to the input price.
    assert cost_usd(usage, "my-model", table=own) == pytest.approx(0.004)
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "m2": {
                    "input_cost_per_token": 1e-6,
                    "output_cost_per_token": 0,
                    "max_input_tokens": 4096,
                }
            }
        )
    )
    assert context_window("m2", table=price_table(path)) == 4096
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match=r"prices\.json"):
        price_table(path)


def test_context_window_and_budget_for_model() -> None:
    assert context_window("gpt-4o") == 128_000
    assert context_window("claude-sonnet-4-5") == 200_000
    budget = Budget.for_model("gpt-4o-mini", reserve_output=4096)
    assert (budget.max_tokens, budget.available) == (128_000, 123_904)
    with pytest.raises(UsageError, match="gpt-4o"):
        context_window("gpt-4oo")


def test_lookup_finds_a_unique_provider_prefixed_key() -> None:
    table = price_table()
    bare_names = [k.split("/", 1)[1] for k in table if k.startswith("groq/")]
    unique = [
        b for b in bare_names if b not in table and sum(k.endswith("/" + b) for k in table) == 1
    ]
    assert unique, "the shipped table has groq/ entries"
    assert lookup(unique[0], table) == table["groq/" + unique[0]]
    assert lookup("no-such/model", table) is None


def test_prompt_caching_estimate_beside_the_plain_cost() -> None:
    # Three gpt-4o requests that each repeat the previous prompt as a prefix.
    est = prompt_caching_cost([2000, 3000, 4000], [0, 2000, 3000], "gpt-4o")
    plain = 9000 * 2.5e-6
    cached = (2000 + 1000 + 1000) * 2.5e-6 + 5000 * 1.25e-6
    assert est.plain_usd == pytest.approx(plain) and est.cached_usd == pytest.approx(cached)
    assert est.cached_tokens == 5000 and est.input_tokens == 9000
    assert est.saving_usd == pytest.approx(plain - cached)


def test_prompt_caching_with_anthropic_writes_and_the_minimum_prefix() -> None:
    est = prompt_caching_cost([2000, 3000], [0, 2000], "claude-sonnet-4-5")
    # Non-shared tokens are written (3.75/M), the shared 2000 read (0.30/M).
    assert est.cached_usd == pytest.approx((2000 + 1000) * 3.75e-6 + 2000 * 0.30e-6)
    short = prompt_caching_cost([500, 900], [0, 500], "gpt-4o")
    assert short.cached_tokens == 0 and short.cached_usd == pytest.approx(short.plain_usd)
    with pytest.raises(UsageError):
        prompt_caching_cost([1], [0, 0], "gpt-4o")
