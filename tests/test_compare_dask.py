"""A Dask cluster as `compare`'s executor gives the same report as running in-process."""

from __future__ import annotations

import distributed  # the 'dask' extra; the test command installs every extra, so never skipped
import pandas as pd

from ctxlab import datasets
from ctxlab.lab.harness import compare


def test_dask_executor_gives_the_same_report() -> None:
    convs = [datasets.load("locomo")[0], *datasets.load("taubench")[:3]]
    strategies = ["token_window", "mask_tool_outputs", "keep_all"]
    base = compare(convs, strategies, [1000, 4000], progress=False)
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
        dashboard_address=None,
    )  # fmt: skip
    with cluster, distributed.Client(cluster) as client:
        executor = client.get_executor()
        on_dask = compare(convs, strategies, [1000, 4000], executor=executor, progress=False)
    pd.testing.assert_frame_equal(base.df, on_dask.df)
