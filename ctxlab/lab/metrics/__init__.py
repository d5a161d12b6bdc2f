"""Cost and retention metrics, one module per family, and their registry.

=============================  ===========  ==================================================
name                           module       what
=============================  ===========  ==================================================
input_tokens                   cost         tokens sent at the probe
cumulative_input_tokens        cost         tokens sent over the replay so far (the bill)
extra_input_tokens             cost         prompt tokens of the strategy's own LLM calls
extra_output_tokens            cost         output tokens of the strategy's own LLM calls
cost_usd                       billing      dollars so far at a model's prices (+ cached)
cache_tokens                   billing      tokens the prompt cache reads and writes per request
compression                    cost         1 - tokens after / tokens before
prefix_stability               cost         share of sent tokens a prompt cache could reuse
evidence_recall                locomo       LoCoMo evidence turns kept verbatim (+ per category)
answer_presence                locomo       LoCoMo gold answers present in the context
key_string_recall              keys         future-referenced key strings in the context
action_argument_recall         taubench     gold actions' known arguments in the context
dropped_content_coverage       coverage     removed content words retold by rewritten messages
violations                     violations   invariant breaches (+ per kind), over_budget_tokens
=============================  ===========  ==================================================

Each metric's class docstring holds its exact definition. Where a metric does not apply
(no annotations, nothing to measure) its value is NaN, never 0. ``cost_usd`` prices the
strategy's own LLM calls at ``summarizer_model`` when one is given (`get_metric`), else at
the requests' model. `Report.summary` gives the extra tokens both per probe and, as
``extra_input_tokens_total`` / ``extra_output_tokens_total``, per conversation.

Part of `ctxlab.lab`: may import the core values, `formats`, `scoring`, `summarizers`,
`providers` and `strategies`; never `live` or `widgets`.
"""

from __future__ import annotations

from typing import Any

from ctxlab.errors import UsageError
from ctxlab.lab.metrics.base import (
    Aggregate,
    AsyncMetric,
    Cell,
    Facts,
    Metric,
    Probe,
    ProbeMetric,
    Values,
)
from ctxlab.lab.metrics.billing import CacheTokens, CostUsd
from ctxlab.lab.metrics.cost import (
    Compression,
    CumulativeInputTokens,
    ExtraInputTokens,
    ExtraOutputTokens,
    InputTokens,
    PrefixStability,
)
from ctxlab.lab.metrics.coverage import DroppedContentCoverage
from ctxlab.lab.metrics.keys import KeyStringRecall
from ctxlab.lab.metrics.locomo import AnswerPresence, EvidenceRecall
from ctxlab.lab.metrics.taubench import ActionArgumentRecall
from ctxlab.lab.metrics.violations import Violations

__all__ = [
    "ActionArgumentRecall",
    "Aggregate",
    "AnswerPresence",
    "AsyncMetric",
    "CacheTokens",
    "Cell",
    "Compression",
    "CostUsd",
    "CumulativeInputTokens",
    "DroppedContentCoverage",
    "EvidenceRecall",
    "ExtraInputTokens",
    "ExtraOutputTokens",
    "Facts",
    "InputTokens",
    "KeyStringRecall",
    "Metric",
    "PrefixStability",
    "Probe",
    "ProbeMetric",
    "Values",
    "Violations",
    "default_metrics",
    "get_metric",
    "names",
]

# In report column order.
_REGISTRY: dict[str, type[Any]] = {
    "input_tokens": InputTokens,
    "cumulative_input_tokens": CumulativeInputTokens,
    "extra_input_tokens": ExtraInputTokens,
    "extra_output_tokens": ExtraOutputTokens,
    "cost_usd": CostUsd,
    "cache_tokens": CacheTokens,
    "compression": Compression,
    "prefix_stability": PrefixStability,
    "evidence_recall": EvidenceRecall,
    "answer_presence": AnswerPresence,
    "key_string_recall": KeyStringRecall,
    "action_argument_recall": ActionArgumentRecall,
    "dropped_content_coverage": DroppedContentCoverage,
    "violations": Violations,
}


def names() -> list[str]:
    """Names of the built-in metrics, in report column order."""
    return list(_REGISTRY)


def get_metric(
    name: str,
    *,
    model: str | None = None,
    summarizer_model: str | None = None,
) -> Metric:
    """The built-in metric called `name`.

    `model` prices the requests in ``cost_usd`` and sets the cache rules of ``cache_tokens``,
    and `summarizer_model` (default: `model`) prices the strategy's own LLM calls. For another
    cache lifetime than the provider's, pass ``CostUsd(model=..., cache_ttl=seconds)`` and
    ``CacheTokens(model=..., cache_ttl=seconds)`` as metrics.

    Raises:
        UsageError: unknown name; the message lists the known ones.
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UsageError(f"unknown metric {name!r}; known metrics: {', '.join(names())}")
    if cls is CostUsd:
        metric: Metric = CostUsd(model=model, summarizer_model=summarizer_model)
    elif cls is CacheTokens:
        metric = CacheTokens(model=model)
    else:
        metric = cls()
    return metric


def default_metrics(
    model: str | None = None, *, summarizer_model: str | None = None
) -> list[Metric]:
    """Every built-in metric (each one fills NaN where it does not apply)."""
    return [get_metric(n, model=model, summarizer_model=summarizer_model) for n in names()]
