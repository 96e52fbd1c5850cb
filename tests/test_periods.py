"""Property tests of the MODIS 8-day calendar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fluxmap.science import periods


@given(
    st.datetimes(
        min_value=pd.Timestamp("1990-01-01").to_pydatetime(), max_value=pd.Timestamp("2040-12-31 23:59").to_pydatetime()
    )
)
def test_every_instant_falls_in_exactly_one_period(t):
    start = periods.period_start_of([t])[0]
    starts = periods.period_starts([start.year])
    bounds = periods.period_bounds(starts)
    inside = (bounds[:, 0] <= np.datetime64(t)) & (np.datetime64(t) < bounds[:, 1])
    assert inside.sum() == 1
    assert starts[inside.argmax()] == start


@given(st.integers(1950, 2100))
def test_periods_tile_each_year(year):
    starts = periods.period_starts([year])
    assert len(starts) == 46
    assert (starts.day_of_year.values == np.arange(1, 362, 8)).all()
    days = periods.period_days(starts)
    leap = pd.Timestamp(year=year, month=12, day=31).day_of_year == 366
    assert days.sum() == (366 if leap else 365)
    assert days[-1] == (6 if leap else 5) and (days[:-1] == 8).all()
    b = periods.period_bounds(starts)
    assert (b[1:, 0] == b[:-1, 1]).all()
    assert b[-1, 1] == np.datetime64(f"{year + 1}-01-01")


@given(
    st.lists(st.tuples(st.integers(0, 2 * 366 * 24), st.integers(1, 24 * 40)), min_size=1, max_size=30),
    st.floats(-50, 50, allow_nan=False),
)
def test_aggregating_a_constant_gives_that_constant(intervals, c):
    """Any set of non-overlapping intervals of any length holding a constant averages to it."""
    t0 = pd.Timestamp("2019-01-01")
    cuts = sorted({(a, a + d) for a, d in intervals})
    spans, last_end = [], -1
    for a, b in cuts:  # keep a non-overlapping subset
        if a >= last_end:
            spans.append((a, b))
            last_end = b
    obs = pd.DataFrame(
        {
            "site_id": "s",
            "variable": "sr",
            "start": [t0 + pd.Timedelta(hours=a) for a, _ in spans],
            "end": [t0 + pd.Timedelta(hours=b) for _, b in spans],
            "value": c,
        }
    )
    kept, low = periods.aggregate_to_periods(obs, keys=["site_id", "variable"], value_cols=["value"], min_coverage=0)
    assert len(low) == 0
    np.testing.assert_allclose(kept.value, c, atol=1e-9 * max(1.0, abs(c)))
    assert ((kept.coverage > 0) & (kept.coverage <= 1 + 1e-12)).all()
    covered = (kept.coverage * (kept.end - kept.start).dt.total_seconds()).sum()
    assert covered == pytest.approx(sum(b - a for a, b in spans) * 3600.0)
