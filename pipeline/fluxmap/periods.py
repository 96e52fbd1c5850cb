"""The MODIS 8-day compositing calendar.

MODIS Collection 6.1 8-day products (MOD09A1, MOD11A2, MOD15A2H, MOD17A2H, MOD16A2)
composite over periods starting on day-of-year 1, 9, 17, ..., 361 of each year: 46
periods a year, the last one running to 31 December (5 days, 6 in leap years), and
every year restarting on 1 January (see e.g. the MOD11A2 C6.1 user guide, section 2.3,
and the MOD09A1 C6.1 guide, section 4.3).

Periods are half-open ``[start, end)`` intervals in UTC, held as numpy
``datetime64[ns]``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = [
    "PERIODS_PER_YEAR",
    "PERIOD_DOYS",
    "period_bounds",
    "period_days",
    "period_start_of",
    "period_starts",
]

PERIOD_DOYS = np.arange(1, 366, 8)
"""Day of year each 8-day period starts on (1, 9, ..., 361)."""
PERIODS_PER_YEAR = len(PERIOD_DOYS)  # 46


def period_starts(years: Iterable[int]) -> pd.DatetimeIndex:
    """Start instants of every 8-day period of the given years, in order."""
    years = sorted(set(int(y) for y in years))
    out = [pd.Timestamp(year=y, month=1, day=1) + pd.to_timedelta(PERIOD_DOYS - 1, unit="D") for y in years]
    return pd.DatetimeIndex(np.concatenate(out) if out else [], name="time")


def period_bounds(starts: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """``(n, 2)`` array of ``[start, end)`` for each period start (end exclusive)."""
    starts = pd.DatetimeIndex(starts)
    nominal = starts + pd.Timedelta(days=8)
    next_year = pd.DatetimeIndex([pd.Timestamp(year=y + 1, month=1, day=1) for y in starts.year])
    ends = np.minimum(nominal.values, next_year.values)
    return np.stack([starts.values, ends], axis=1)


def period_days(starts: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Length in days of each period (8; 5 or 6 for the last period of a year)."""
    b = period_bounds(starts)
    return ((b[:, 1] - b[:, 0]) / np.timedelta64(1, "D")).astype("int64")


def period_start_of(times: pd.DatetimeIndex | np.ndarray) -> pd.DatetimeIndex:
    """Start of the 8-day period that contains each instant (vectorized)."""
    t = pd.DatetimeIndex(times)
    doy0 = (t.day_of_year.values - 1) // 8 * 8
    jan1 = pd.to_datetime({"year": t.year, "month": 1, "day": 1})
    return pd.DatetimeIndex(jan1.values + doy0.astype("timedelta64[D]"), name="time")
