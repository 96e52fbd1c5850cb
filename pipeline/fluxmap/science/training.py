"""Training tables: site observations aligned to the 8-day periods and joined with the
predictors extracted at their locations, every row that cannot be used set aside with its reason.

The inputs are the tidy observation table of :mod:`fluxmap.io.sites` and the predictors at
the sites' locations (:func:`fluxmap.science.extract.extract_at_sites`, computed); the outputs
are the 8-day table (one row per site, flux and period), the annual table (site-years), the
quarantine and each location's long-term environment (the zone factors).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science.features import (
    annual_stats,
    doy_features,
    growing_season_mean,
    long_term_means,
    period_weights,
)
from fluxmap.science.periods import aggregate_to_periods

__all__ = [
    "QUARANTINE_COLUMNS",
    "align_to_periods",
    "ratio_table",
    "site_factors",
    "site_locations",
    "split_modes",
    "training_tables",
    "truth_at_rows",
]

_KEYS = ["site_id", "lat", "lon", "variable", "source", "method", "ecosystem"]
_VALUES = ["value", "tsoil_c", "swc", "tair_c", "quality"]
QUARANTINE_COLUMNS = ["site_id", "variable", "source", "start", "end", "location", "reason", "detail"]
"""Columns of the extract stage's quarantine table."""


def split_modes(obs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Annual records (site-years, >= 360 days) and everything shorter."""
    days = (obs["end"] - obs["start"]).dt.total_seconds() / 86400.0
    return obs[days >= 360].copy(), obs[days < 360].copy()


def align_to_periods(short_obs: pd.DataFrame, *, min_coverage: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Observations shorter than a year as 8-day period means (time-weighted, with coverage), and
    the periods observed for less than ``min_coverage`` of their length with the reason. A tower's
    micrometeorology (``tower_*`` columns) is averaged beside the flux, each with its own coverage
    (``tower_*_coverage``)."""
    tower = tuple(c for c in short_obs.columns if str(c).startswith("tower_"))
    periods_ok, low = aggregate_to_periods(
        short_obs, keys=_KEYS, value_cols=_VALUES + list(tower), min_coverage=min_coverage, coverage_of=tower
    )
    low = low.assign(
        reason=f"coverage below {min_coverage:g} of the 8-day period",
        detail="coverage=" + low.coverage.round(3).astype(str),
    )
    return periods_ok, low


def site_locations(*tables: pd.DataFrame) -> pd.DataFrame:
    """The distinct (lat, lon) of the tables, indexed ``L00000``, ``L00001``, ... (``location``)."""
    locs = pd.concat([t[["lat", "lon"]] for t in tables]).drop_duplicates().reset_index(drop=True)
    locs.index = pd.Index([f"L{i:05d}" for i in range(len(locs))], name="location")
    return locs


def _with_location(df: pd.DataFrame, locs: pd.DataFrame) -> pd.DataFrame:
    loc_of = {(a, b): i for i, (a, b) in zip(locs.index, zip(locs.lat, locs.lon))}
    return df.assign(location=[loc_of[(a, b)] for a, b in zip(df.lat, df.lon)])


def _drop_unusable(
    tables: list[pd.DataFrame],
    locs: pd.DataFrame,
    outside: dict[str, np.ndarray],
    masked: dict[str, np.ndarray],
    quarantine: list[pd.DataFrame],
) -> list[pd.DataFrame]:
    """Rows at locations outside an entry's grid, then at cells an entry masks throughout."""
    for i in range(len(tables)):
        for entry, mask in outside.items():
            df = tables[i]
            m = df.location.isin(set(locs.index[mask]))
            quarantine.append(df[m].assign(reason=f"outside the predictor grid ({entry})", detail=""))
            tables[i] = df[~m]
    for entry, mask in masked.items():
        bad = set(locs.index[mask])
        for i, df in enumerate(tables):
            m = df.location.isin(bad)
            quarantine.append(df[m].assign(reason=f"masked cell: no valid {entry} data at the site", detail=""))
            tables[i] = df[~m]
    return tables


def _eight_day_table(
    periods_ok: pd.DataFrame, tv: xr.Dataset, quarantine: list[pd.DataFrame]
) -> tuple[pd.DataFrame, list[str]]:
    """8-day rows with the time-varying predictors, their annual statistics and the seasonal transform."""
    if not tv.data_vars:
        return periods_ok, []
    feats = xr.merge([tv, annual_stats(tv), doy_features(tv.time)])
    pred = feats.to_dataframe().reset_index().rename(columns={"site": "location", "time": "start"})
    predictor_cols = [c for c in pred.columns if c not in ("location", "start")]
    eight = periods_ok.merge(pred, on=["location", "start"], how="left", indicator=True)
    no_time = eight["_merge"] == "left_only"
    quarantine.append(eight[no_time].assign(reason="no predictors for the period", detail=""))
    eight = eight[~no_time].drop(columns="_merge")
    masked = eight[list(tv.data_vars)].isna().all(axis=1)
    quarantine.append(eight[masked].assign(reason="masked cell: no valid predictor at the site and period", detail=""))
    return eight[~masked], predictor_cols


def _annual_table(obs: pd.DataFrame, tv: xr.Dataset, quarantine: list[pd.DataFrame]) -> pd.DataFrame:
    """Site-year records with the mean over their study years of each predictor's annual mean/max/min."""
    if not len(obs):
        return obs.assign(location=pd.Series(dtype="object"))
    if not tv.data_vars:
        return obs
    by_year = tv.groupby("time.year")
    days = period_weights(tv["time"])
    weighted = (tv * days).groupby("time.year").sum() / days.where(tv.notnull()).groupby("time.year").sum()
    stats = xr.merge(
        [
            weighted.rename({v: f"{v}_ann_mean" for v in tv.data_vars}),
            by_year.max().rename({v: f"{v}_ann_max" for v in tv.data_vars}),
            by_year.min().rename({v: f"{v}_ann_min" for v in tv.data_vars}),
        ]
    )
    frame = stats.to_dataframe().reset_index().rename(columns={"site": "location"})
    years = [list(range(s.year, max(e.year, s.year + 1))) for s, e in zip(obs.start, obs.end)]
    exploded = obs.assign(year=years).explode("year").astype({"year": "int64"})
    merged = exploded.merge(frame, on=["location", "year"], how="left", indicator=True)
    cols = [c for c in frame.columns if c not in ("location", "year")]
    merged["_row"] = np.repeat(np.arange(len(obs)), [len(y) for y in years])
    has_all = merged.groupby("_row")["_merge"].agg(lambda m: (m == "both").all())
    agg = merged.groupby("_row")[cols].mean()
    result = obs.reset_index(drop=True).join(agg)
    no_years = ~has_all.reindex(range(len(obs)), fill_value=False).to_numpy()
    quarantine.append(result[no_years].assign(reason="no predictors for every study year", detail=""))
    return result[~no_years].reset_index(drop=True)


def site_factors(tv: xr.Dataset, static: pd.DataFrame, locs: pd.DataFrame) -> pd.DataFrame:
    """Long-term environment of every location (for zoning): means over the whole record,
    growing-season LSWI, and the static layers."""
    parts = [locs]
    if tv.data_vars:
        lt = long_term_means(tv)
        if "lswi" in tv and "t2m" in tv:
            lt = lt.assign(lswi_growing_season=growing_season_mean(tv.lswi, tv.t2m))
        parts.append(lt.to_dataframe().rename_axis("location"))
    if len(static):
        parts.append(static.set_index("location"))
    out = pd.concat(parts, axis=1)
    out.index.name = "location"
    return out


def _static_frame(st: xr.Dataset) -> pd.DataFrame:
    static = st.to_dataframe().reset_index() if st.data_vars else pd.DataFrame(columns=["site"])
    static = static.rename(columns={"site": "location"})
    return static[[c for c in static.columns if c != "igbp"]].drop_duplicates("location") if len(static) else static


def _quarantine_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not any(len(d) for d in parts):
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    return pd.concat([d.reindex(columns=QUARANTINE_COLUMNS) for d in parts if len(d)], ignore_index=True)


def training_tables(
    periods_ok: pd.DataFrame,
    annual_obs: pd.DataFrame,
    locs: pd.DataFrame,
    predictors: tuple[xr.Dataset, xr.Dataset, dict[str, np.ndarray], dict[str, np.ndarray]],
    *,
    quarantine: list[pd.DataFrame],
) -> tuple[dict[str, pd.DataFrame], list[str], int]:
    """The training tables from the aligned observations and the predictors at ``locs``.

    ``predictors``: the time-varying predictors (time, site) and the static ones (site), both
    computed, and per catalog entry the locations outside its grid and those on cells it masks
    throughout. ``quarantine`` (the rows set aside so far) is extended in place. Returns the
    tables ``training_8day``, ``training_annual``, ``quarantine`` and ``site_factors``, the
    names of the predictors, and the number of 8-day periods on usable cells.
    """
    tv, st, outside, masked = predictors
    tables = [_with_location(periods_ok, locs), _with_location(annual_obs, locs)]
    periods_ok, annual_obs = _drop_unusable(tables, locs, outside, masked, quarantine)
    static = _static_frame(st)
    eight, predictor_cols = _eight_day_table(periods_ok, tv, quarantine)
    eight = eight.merge(static, on="location", how="left")
    annual = _annual_table(annual_obs, tv, quarantine).merge(static, on="location", how="left")
    out = {
        "training_8day": eight,
        "training_annual": annual,
        "quarantine": _quarantine_frame(quarantine),
        "site_factors": site_factors(tv, static, locs),
    }
    return out, predictor_cols + list(static.columns.drop("location", errors="ignore")), len(periods_ok)


def truth_at_rows(
    truth: pd.DataFrame, true_zone: pd.Series, tables: dict[str, pd.DataFrame], targets: tuple[str, ...]
) -> dict[str, pd.DataFrame]:
    """Per target (``var:8day`` or ``var:annual``), the noise-free flux (``value``) and the true
    zone (``zone``) of each row of its training table, from a known truth at the locations
    (``truth``: ``location``, ``start`` and one column per flux; the demo world). Annual rows get
    the mean over their study years of each year's mean."""
    out = {}
    for target in targets:
        var, _, tab = target.partition(":")
        if var not in truth:
            continue
        if tab == "annual":
            df = tables["training_annual"]
            per_year = truth.assign(year=truth.start.dt.year).groupby(["location", "year"])[var].mean()
            vals = [
                np.nanmean([per_year.get((loc, y), np.nan) for y in range(s.year, max(e.year, s.year + 1))])
                for loc, s, e in zip(df.location, df.start, df.end)
            ]
            value = pd.Series(vals, index=df.index)
        else:
            df = tables["training_8day"]
            m = df[["location", "start"]].merge(truth[["location", "start", var]], on=["location", "start"], how="left")
            value = pd.Series(m[var].to_numpy(), index=df.index)
        out[target] = pd.DataFrame({"value": value, "zone": df.location.map(true_zone).to_numpy()}, index=df.index)
    return out


def ratio_table(df: pd.DataFrame, num: str, den: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flux ratio ``num / den`` on the records of ``df`` (a training table) that give both.

    A pair is the same site and period and, for a source that numbers its records so that both
    fluxes share one (SRDB: a study's row gives Rs_annual and Rh_annual), the same ``record_id``;
    decided per ``source``, so sources that number each flux apart still pair by site and period.
    Each ratio row keeps the numerator row's index, predictors and site, ``variable`` = ``name``,
    ``value`` = the ratio, and ``den_row``, the index of the denominator row. Returns the ratio
    table and the pairs left out, each with its reason (a non-positive denominator, a ratio that is
    not finite, more than one row of a flux for the same key): none is dropped unsaid."""
    parts = [_ratio_pairs(g, num, den, name) for _, g in df.groupby("source", dropna=False)] if "source" in df else [_ratio_pairs(df, num, den, name)]  # fmt: skip
    out = pd.concat([p for p, _ in parts])
    out.index.name = df.index.name
    return out, pd.concat([e for _, e in parts], ignore_index=True)


def _ratio_pairs(df: pd.DataFrame, num: str, den: str, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    a, b = df[df.variable == num], df[df.variable == den]
    keys = ["site_id", "start", "end"]
    if "record_id" in df and set(a.record_id.dropna()) & set(b.record_id.dropna()):
        keys.append("record_id")
    dup_a, dup_b = a.duplicated(keys, keep=False), b.duplicated(keys, keep=False)
    b_keys = b[~dup_b][keys].assign(value_den=b.value[~dup_b], den_row=b.index[~dup_b])
    m = a[~dup_a].rename_axis("_row").reset_index().merge(b_keys, on=keys, how="inner").set_index("_row")
    ratio = m.value / m.value_den
    reason = pd.Series("", index=m.index, dtype=object)
    reason[~np.isfinite(ratio)] = "ratio not finite"
    reason[m.value_den <= 0] = f"{den} <= 0"
    left = [m[reason != ""].assign(reason=reason[reason != ""])]
    for side, dup, flux in ((a, dup_a, num), (b, dup_b, den)):
        if dup.any():
            left.append(side[dup].assign(reason=f"more than one {flux} row for the same {' / '.join(keys)}"))
    out = m[reason == ""].assign(value=ratio[reason == ""], variable=name).drop(columns="value_den")
    cols = ["source", "site_id", "start", "end", "record_id", "variable", "value", "reason"]
    excluded = pd.concat(left)
    return out, excluded[[c for c in cols if c in excluded]]
