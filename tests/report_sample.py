"""A small default comparison whose every number is pinned in ``tests/data/report_sample.csv``.

The lab's hot paths (replays, metric columns) are rewritten for speed from time to time; this
sample, run with every default strategy over agent runs and a LoCoMo conversation at two
budgets, must give the same report to the last digit. To pin new numbers after a deliberate
change of a strategy or metric, run ``python tests/report_sample.py`` and commit the CSV with
the change that explains it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ctxlab import compare, datasets
from ctxlab.strategies import default_names

SNAPSHOT = Path(__file__).parent / "data" / "report_sample.csv"


def sample_report() -> pd.DataFrame:
    """The sample's report rows, identity columns first, in the run's order."""
    convs = (
        datasets.load("taubench")[:3]
        + datasets.load("sweagent")[:2]
        + datasets.load("locomo")[:1]
        + datasets.load("mtbench101")[:3]
    )
    report = compare(convs, default_names(), [1500, 4000], progress=False)
    return report.df.reset_index(drop=True)


if __name__ == "__main__":
    sample_report().to_csv(SNAPSHOT, index=False, float_format="%.17g")
