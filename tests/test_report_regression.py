"""The report of a sample comparison is the pinned one, to the last digit (`report_sample`)."""

from __future__ import annotations

import io

import pandas as pd
from report_sample import SNAPSHOT, sample_report


def test_the_sample_report_is_unchanged() -> None:
    text = sample_report().to_csv(index=False, float_format="%.17g")
    got = pd.read_csv(io.StringIO(text), keep_default_na=False)
    pinned = pd.read_csv(SNAPSHOT, keep_default_na=False)
    assert len(got) == len(pinned) > 1000
    pd.testing.assert_frame_equal(got, pinned, check_exact=True)
