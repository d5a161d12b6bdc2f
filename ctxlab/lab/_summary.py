"""The arithmetic behind `Report.summary`: units, pooled estimates and bootstrap intervals.

A summary group is one (dataset, strategy, budget). Each column is reduced to *units*, one
per conversation, each with a sum and a count, and a group's estimate is Σ sums / Σ counts
over its units:

- ``mean``: every probe's value; a conversation's unit holds the sum and number of its
  probes' values (so the estimate is the mean over probes);
- ``last``: each conversation's value at its last probe (running totals);
- ``total``: each conversation's sum over its probes, NaN when one of them is NaN (additive
  per-probe quantities such as the strategy's own LLM tokens).

Conversations are the independent units: probes (and questions) of one conversation share
its speakers, topics and history, so they are resampled together (a clustered bootstrap).
A group with fewer than `MIN_UNITS` conversations gets no interval: with two conversations
there are only three distinct resamples, and their spread is the gap between the two, not
a 95% interval.

The units of every group are computed in one pass over the whole table (`Groups`), then the
percentile bootstrap draws whole units per group.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "MIN_UNITS",
    "Groups",
    "Kind",
    "Streams",
    "bootstrap",
    "cluster_bootstrap",
    "intervals",
]

Kind: TypeAlias = Literal["mean", "last", "total"]
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]

#: Fewest independent units (conversations) a bootstrap interval is computed from.
MIN_UNITS = 5


class Groups:
    """A report's rows split into groups by `keys`, units per conversation found once.

    Attributes:
        keys: each group's key tuple, in order of first appearance.
        conversations: distinct conversations per group.
        probes: rows per group.
    """

    def __init__(self, df: pd.DataFrame, keys: Sequence[str]) -> None:
        n = len(df)
        self.gid: IntArray = df.groupby(list(keys), sort=False).ngroup().to_numpy(np.int64)
        first = np.unique(self.gid, return_index=True)[1]
        self.keys: list[tuple[object, ...]] = list(
            df.iloc[first][list(keys)].itertuples(index=False, name=None)
        )
        # Conversation codes in sorted order, so units come out sorted as np.unique sorts them.
        conv, names = pd.factorize(df["conversation_id"], sort=True)
        self._n_conv = max(len(names), 1)
        pair = self.gid * self._n_conv + conv
        pairs, self._pair_of_row = np.unique(pair, return_inverse=True)
        self._group_of_pair: IntArray = pairs // self._n_conv
        groups = len(self.keys)
        self.conversations: IntArray = np.bincount(self._group_of_pair, minlength=groups)
        self.probes: IntArray = np.bincount(self.gid, minlength=groups)
        probe = df["probe"].to_numpy()
        order = np.lexsort((np.arange(n), probe, self._pair_of_row))
        pairs_in_order = self._pair_of_row[order]
        ends = np.ones(n, dtype=np.bool_)
        ends[:-1] = pairs_in_order[1:] != pairs_in_order[:-1]
        self._last_row: IntArray = order[ends]  # per pair: its row at the last probe

    def units(self, values: FloatArray, kind: Kind) -> tuple[IntArray, FloatArray, FloatArray]:
        """(group, sum, count) of each unit holding a value, sorted by group then unit."""
        if kind == "mean":
            valid = ~np.isnan(values)
            found, index = np.unique(self._pair_of_row[valid], return_inverse=True)
            sums = _sums(index, values[valid], len(found))
            counts = np.bincount(index, minlength=len(found)).astype(np.float64)
            return self._group_of_pair[found], sums, counts
        if kind == "last":
            per_pair = values[self._last_row]
        else:
            nan = np.isnan(values)
            n = len(self._group_of_pair)
            per_pair = _sums(self._pair_of_row, np.where(nan, 0.0, values), n)
            per_pair[_sums(self._pair_of_row, nan.astype(np.float64), n) > 0] = np.nan
        valid = ~np.isnan(per_pair)
        return self._group_of_pair[valid], per_pair[valid], np.ones(int(valid.sum()))

    def estimates(self, group: IntArray, sums: FloatArray, counts: FloatArray) -> FloatArray:
        """Σ sums / Σ counts per group (NaN for a group without units)."""
        total = _sums(group, sums, len(self.keys))
        count = _sums(group, counts, len(self.keys))
        with np.errstate(invalid="ignore", divide="ignore"):
            out: FloatArray = total / count
        return out


def _sums(index: IntArray, weights: FloatArray, n: int) -> FloatArray:
    """Σ weights per index value, for 0..n-1."""
    return np.bincount(index, weights=weights, minlength=n).astype(np.float64, copy=False)


def bootstrap(
    sums: FloatArray, counts: FloatArray, rng: np.random.Generator, n_boot: int, conf: float
) -> tuple[float, float]:
    """Percentile interval of Σ sums / Σ counts, resampling units with replacement.

    Each replicate draws the units anew, so it varies the same pooled mean as the estimate.
    """
    u = len(sums)
    if n_boot <= 0 or u == 0:
        return np.nan, np.nan
    draws = rng.integers(0, u, size=(n_boot, u))
    weights = np.bincount((np.arange(n_boot)[:, None] * u + draws).ravel(), minlength=n_boot * u)
    weights = weights.reshape(n_boot, u).astype(np.float64)
    reps = (weights @ sums) / (weights @ counts)
    tail = (1 - conf) / 2 * 100
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return float(lo), float(hi)


def cluster_bootstrap(
    values: FloatArray,
    units: npt.NDArray[Any],
    rng: np.random.Generator,
    n_boot: int,
    conf: float,
    min_units: int = MIN_UNITS,
) -> tuple[float, float, float, int]:
    """Mean of the non-NaN values, a percentile CI resampling whole units, and the units.

    The interval is NaN when fewer than `min_units` units hold a value.
    """
    valid = ~np.isnan(values)
    if not valid.any():
        return np.nan, np.nan, np.nan, 0
    _, index = np.unique(units[valid], return_inverse=True)
    sums = np.bincount(index, weights=values[valid]).astype(np.float64, copy=False)
    counts = np.bincount(index).astype(np.float64)
    lo, hi = (np.nan, np.nan) if len(sums) < min_units else bootstrap(sums, counts, rng, n_boot,
                                                                      conf)  # fmt: skip
    return float(sums.sum() / counts.sum()), lo, hi, len(sums)


class Streams:
    """A group's random streams: one for per-probe and last-probe columns, one for totals.

    Totals draw from their own stream so that adding them leaves every other interval as
    it was.
    """

    def __init__(self, seed: int, key: tuple[object, ...]) -> None:
        self._entropy = [seed, zlib.crc32(repr(key).encode())]
        self._streams: dict[bool, np.random.Generator] = {}

    def get(self, total: bool) -> np.random.Generator:
        """The stream for ``total`` columns, or for the others."""
        if total not in self._streams:
            self._streams[total] = np.random.default_rng(self._entropy + [1] * total)
        return self._streams[total]


def intervals(
    group: npt.NDArray[np.int64],
    sums: FloatArray,
    counts: FloatArray,
    streams: Sequence[Streams],
    kind: Kind,
    n_boot: int,
    conf: float,
    min_units: int = MIN_UNITS,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Per group: the bootstrap interval of its units and their number.

    The interval is NaN without draws or with fewer than `min_units` units.
    """
    lo = np.full(len(streams), np.nan)
    hi = np.full(len(streams), np.nan)
    bounds = np.searchsorted(group, np.arange(len(streams) + 1))
    n_units: IntArray = np.diff(bounds).astype(np.int64)
    if n_boot <= 0:
        return lo, hi, n_units
    for g, rng in enumerate(streams):
        start, end = bounds[g], bounds[g + 1]
        if end - start >= max(min_units, 1):
            lo[g], hi[g] = bootstrap(sums[start:end], counts[start:end], rng.get(kind == "total"),
                                     n_boot, conf)  # fmt: skip
    return lo, hi, n_units
