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
    "aggregate_to_periods",
    "period_from_number",
    "period_number",
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


_EPOCH_YEAR = 1900


def period_number(times: pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Running number of the 8-day period holding each instant (46 per year from 1900)."""
    t = pd.DatetimeIndex(times)
    return (t.year.values - _EPOCH_YEAR) * PERIODS_PER_YEAR + (t.day_of_year.values - 1) // 8


def period_from_number(number: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(start, end)`` (datetime64[ns], end exclusive) of running period numbers."""
    number = np.asarray(number, dtype="int64")
    year = _EPOCH_YEAR + number // PERIODS_PER_YEAR
    k = number % PERIODS_PER_YEAR
    jan1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    start = jan1 + (8 * k).astype("timedelta64[D]")
    next_year = (year + 1 - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    end = np.minimum(start + np.timedelta64(8, "D"), next_year)
    return start.astype("datetime64[ns]"), end.astype("datetime64[ns]")


def aggregate_to_periods(
    obs: pd.DataFrame,
    *,
    keys: list[str],
    value_cols: list[str],
    min_coverage: float = 0.5,
    coverage_of: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-weighted means of interval observations over the 8-day periods they overlap.

    Each observation ``[start, end)`` is split at period boundaries (a monthly value
    spans several periods, a half-hourly one a sliver of one); every piece is
    weighted by its overlap. ``coverage`` is the observed fraction of the period
    (overlapping observations of one series should have been removed first as
    duplicates). Returns ``(kept, low_coverage)``: periods with coverage below
    ``min_coverage`` come back separately, so the caller can quarantine them.

    Parameters
    ----------
    obs
        Columns ``start``, ``end`` (datetime64, end exclusive), ``keys`` and ``value_cols``.
    keys
        Columns that identify one series (e.g. site_id, variable, source).
    value_cols
        Columns averaged (NaN-aware: a missing covariate does not drop the flux).
    coverage_of
        Value columns that also get their own coverage, ``<col>_coverage``: the fraction of the
        period their mean stands for (a covariate can be missing where the flux is not).
    """
    start = obs["start"].values.astype("datetime64[ns]")
    end = obs["end"].values.astype("datetime64[ns]")
    first = period_number(start)
    last = period_number(end - np.timedelta64(1, "ns"))
    n = (last - first + 1).astype("int64")
    rep = np.repeat(np.arange(len(obs)), n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    number = first[rep] + offset
    p_start, p_end = period_from_number(number)
    overlap = (np.minimum(end[rep], p_end) - np.maximum(start[rep], p_start)) / np.timedelta64(1, "s")
    pieces = obs.iloc[rep][keys + value_cols].reset_index(drop=True)
    pieces["_period"] = number
    sums = {}
    for c in value_cols:
        v = pd.to_numeric(pieces[c], errors="coerce")
        pieces[f"_wv_{c}"] = v * overlap
        pieces[f"_w_{c}"] = np.where(v.notna(), overlap, 0.0)
        sums[f"_wv_{c}"] = "sum"
        sums[f"_w_{c}"] = "sum"
    grouped = pieces.groupby(keys + ["_period"], sort=True, dropna=False)
    g = grouped.agg(sums)
    g["n_obs"] = grouped.size()
    g = g.reset_index()
    ps, pe = period_from_number(g["_period"].values)
    out = g[keys].copy()
    out["start"], out["end"] = ps, pe
    # Coverage counts the time with a value of the first column (the flux).
    out["coverage"] = g[f"_w_{value_cols[0]}"].values / ((pe - ps) / np.timedelta64(1, "s"))
    for c in value_cols:
        w = g[f"_w_{c}"].values
        out[c] = np.where(w > 0, g[f"_wv_{c}"].values / np.where(w > 0, w, 1.0), np.nan)
    for c in coverage_of:
        out[f"{c}_coverage"] = g[f"_w_{c}"].values / ((pe - ps) / np.timedelta64(1, "s"))
    out["n_obs"] = g["n_obs"].values
    low = out["coverage"] < min_coverage
    return out[~low].reset_index(drop=True), out[low].reset_index(drop=True)
