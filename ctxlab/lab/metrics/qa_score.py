"""LoCoMo's official answer scores: token F1 with its normalisation, per question category.

These follow the rules of LoCoMo's evaluation script (``task_eval/evaluation.py`` of the
LoCoMo release), so numbers are comparable with the paper's tables:

- **normalisation** (`normalise_answer`): commas removed, lowercased, ASCII punctuation
  (Python's ``string.punctuation``) removed, the words a/an/the/and replaced by spaces,
  whitespace collapsed. (This differs from `ctxlab.lab.metrics.text.normalise`, which also drops
  Unicode punctuation: answer scores must match the official ones exactly.)
- **token F1** (`token_f1`): both sides normalised, split on whitespace and Porter-stemmed
  (NLTK's ``PorterStemmer``); F1 of the token multisets; 0 when nothing is shared.
- **multi-hop F1** (`multi_hop_f1`, category 1): prediction and gold are each split on commas;
  for each gold part the best `token_f1` against any prediction part; the mean over gold parts
  (partial credit for multi-part answers).
- **category 3** (open-domain): only the gold text before the first ``;`` counts.
- **category 5** (adversarial, `adversarial_score`): 1 when the answer says "not mentioned" or
  "no information available" (case-insensitive), else 0.

`score(category, prediction, gold)` applies the rule of each category.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable
from functools import lru_cache

from ctxlab.errors import MissingDependencyError, UsageError

__all__ = [
    "adversarial_score",
    "multi_hop_f1",
    "normalise_answer",
    "score",
    "token_f1",
]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_ABSTAIN = ("no information available", "not mentioned")


def normalise_answer(text: str) -> str:
    """LoCoMo's answer normalisation (see the module docstring)."""
    text = text.replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[str], str]:
    try:
        from nltk.stem import PorterStemmer  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError("nltk", "qa", "LoCoMo's official token F1") from exc
    stem: Callable[[str], str] = PorterStemmer().stem
    return stem


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _stemmer()(word)


def _tokens(text: str) -> list[str]:
    return [_stem(w) for w in normalise_answer(text).split()]


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the stemmed, normalised tokens of `prediction` against `gold`."""
    pred, ref = _tokens(prediction), _tokens(gold)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def multi_hop_f1(prediction: str, gold: str) -> float:
    """Mean over the comma-separated gold parts of the best `token_f1` of any prediction part."""
    preds = [p.strip() for p in prediction.split(",")]
    golds = [g.strip() for g in gold.split(",")]
    return sum(max(token_f1(p, g) for p in preds) for g in golds) / len(golds)


def adversarial_score(prediction: str) -> float:
    """1.0 when the answer abstains ("not mentioned", "no information available"), else 0.0."""
    lower = prediction.lower()
    return 1.0 if any(phrase in lower for phrase in _ABSTAIN) else 0.0


def score(category: int, prediction: str, gold: str | None) -> float:
    """The official score of `prediction` for a question of LoCoMo `category` (1-5).

    Raises:
        UsageError: an unknown category, or no gold answer for categories 1-4.
    """
    if category == 5:
        return adversarial_score(prediction)
    if category not in (1, 2, 3, 4):
        raise UsageError(f"LoCoMo categories are 1-5, got {category!r}")
    if gold is None:
        raise UsageError(f"a category-{category} question needs a gold answer")
    if category == 1:
        return multi_hop_f1(prediction, gold)
    if category == 3:
        gold = gold.split(";")[0].strip()
    return token_f1(prediction, gold)
