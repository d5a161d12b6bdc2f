"""``key_string_recall``: are the exact strings the conversation needs later still in context?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ctxlab.keys import key_strings
from ctxlab.lab.metrics.base import NAN, Cell, Facts, Probe, ProbeMetric
from ctxlab.lab.metrics.text import full_text

__all__ = ["KeyStringRecall"]


@dataclass(frozen=True, kw_only=True)
class _Keys:
    ids: dict[str, int]  # key string -> id
    first: npt.NDArray[np.int64]  # first message holding each key
    last: npt.NDArray[np.int64]  # last message holding each key
    occ_key: npt.NDArray[np.int64]  # flat (key, message) occurrences
    occ_message: npt.NDArray[np.int64]


def _keys(facts: Facts) -> _Keys:
    ids: dict[str, int] = {}
    first: list[int] = []
    last: list[int] = []
    occ_key: list[int] = []
    occ_message: list[int] = []
    for i, m in enumerate(facts.conversation.messages):
        for key in sorted(key_strings(full_text(m))):
            k = ids.setdefault(key, len(ids))
            if k == len(first):
                first.append(i)
                last.append(i)
            last[k] = i
            occ_key.append(k)
            occ_message.append(i)
    arr = np.asarray
    return _Keys(
        ids=ids,
        first=arr(first, dtype=np.int64),
        last=arr(last, dtype=np.int64),
        occ_key=arr(occ_key, dtype=np.int64),
        occ_message=arr(occ_message, dtype=np.int64),
    )


@dataclass(frozen=True)
class KeyStringRecall(ProbeMetric):
    """``key_string_recall``: share of the future-referenced key strings the context holds.

    Key strings are those of `ctxlab.keys.key_strings` (file paths, identifiers, error names,
    URLs, numbers with 3+ digits, dates, alphanumeric codes), read from each message's text
    and tool-call arguments. At probe k, F = the keys seen in ``messages[:k]`` that occur
    again in ``messages[k:]``; recall = |F ∩ keys(context)| / |F|, where keys(context) is the
    union of the keys of the context's messages (summaries and placeholders included).
    NaN when F is empty (at the end of a conversation, always).
    """

    name: ClassVar[str] = "key_string_recall"
    by_context: ClassVar[bool] = True

    def value(self, cell: Cell, probe: Probe) -> float:
        """|F ∩ keys(context)| / |F| at this probe."""
        keys = cell.facts.memo("keys.occurrences", _keys)
        future = (keys.first < probe.k) & (keys.last >= probe.k)
        if not future.any():
            return NAN
        held = np.zeros(len(keys.ids), dtype=np.bool_)
        # occurrences are in message order: only those before k can be sent
        end = int(np.searchsorted(keys.occ_message, probe.k))
        sent = probe.kept[keys.occ_message[:end]]
        held[keys.occ_key[:end][sent]] = True
        for _, m in probe.others:
            held[_known(cell.facts, keys, full_text(m))] = True
        return float(held[future].sum() / future.sum())


def _known(facts: Facts, keys: _Keys, text: str) -> npt.NDArray[np.int64]:
    """Ids of the conversation's key strings that `text` holds (cached by text)."""

    def find(t: str) -> npt.NDArray[np.int64]:
        found = [keys.ids.get(key) for key in key_strings(t)]
        return np.asarray([k for k in found if k is not None], dtype=np.int64)

    return facts.per_text("keys.known", text, find)
