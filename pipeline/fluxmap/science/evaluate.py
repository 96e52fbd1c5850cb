"""Scoring gridded flux products against the site observations (Lu et al. 2021, sect. 2.5 and fig. 4;
ILAMB, Collier et al. 2018).

Pure functions. A product is first sampled where and when each observation was made
(:func:`sample_at_rows`): at the site's grid cell, as the time mean over the observation's own
period ``[start, end)`` of the product's steps that overlap it, each weighted by the days it
overlaps, so a monthly model, an 8-day map and a daily chamber record are compared over the same
days. The pairs are then scored (:func:`pair_scores`): n, Pearson r, RMSE, bias, centred RMSE,
standard-deviation ratio, and ILAMB's bias, RMSE and spatial-distribution scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science.aggregate import cell_land_area
from fluxmap.science.validate import metrics

__all__ = [
    "classes_on_grid",
    "difference_field",
    "repeat_climatology",
    "pair_scores",
    "partition",
    "product_profile",
    "product_totals",
    "product_totals_by_class",
    "sample_at_rows",
    "scores_by",
    "time_mean",
]

_DAY = np.timedelta64(1, "D")


def sample_at_rows(
    values: np.ndarray,
    step_start: np.ndarray,
    step_end: np.ndarray,
    site: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    *,
    min_coverage: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """The product's mean over each observation's period.

    ``values``: (sites, steps) rates of the product at each site's cell (NaN: no value);
    ``step_start``/``step_end``: each step's interval (datetime64); ``site``: the row of ``values``
    of each observation; ``start``/``end``: each observation's period. Returns the overlap-weighted
    mean and the fraction of the observation's days the product covers with values; rows covered
    less than ``min_coverage`` get NaN. The steps must not overlap each other (gaps are allowed).
    """
    s0, s1 = np.asarray(step_start, "datetime64[ns]"), np.asarray(step_end, "datetime64[ns]")
    keep = np.flatnonzero(s1 > s0)  # empty steps (e.g. a 360-day calendar's 30 February) hold no days
    order = keep[np.argsort(s0[keep], kind="stable")]
    s0, s1 = s0[order], s1[order]
    if np.any(s0[1:] < s1[:-1]):
        raise ValueError("the product's time steps overlap each other")
    v = np.asarray(values, dtype="float64")[:, order]
    # Cumulative integrals over the steps' boundaries: of the rate, and of the days with a value.
    t = np.concatenate([s0, s1])
    knots = np.unique(t)
    x = (knots - knots[0]) / _DAY
    a = (start.astype("datetime64[ns]") - knots[0]) / _DAY
    b = (end.astype("datetime64[ns]") - knots[0]) / _DAY
    i0 = np.searchsorted(knots, s0)
    mean = np.full(len(site), np.nan)
    cover = np.zeros(len(site))
    for k in np.unique(site):
        rows = np.flatnonzero(site == k)
        ok = np.isfinite(v[k])
        # The rate is constant within a step: integrals are piecewise linear between the knots.
        rate = np.zeros(len(knots) - 1)
        has = np.zeros(len(knots) - 1)
        rate[i0[ok]] = v[k, ok]
        has[i0[ok]] = 1.0
        width = np.diff(x)
        f = np.concatenate([[0.0], np.cumsum(rate * width)])
        g = np.concatenate([[0.0], np.cumsum(has * width)])
        covered = np.interp(b[rows], x, g) - np.interp(a[rows], x, g)
        total = np.interp(b[rows], x, f) - np.interp(a[rows], x, f)
        length = b[rows] - a[rows]
        cover[rows] = np.where(length > 0, covered / np.where(length > 0, length, 1.0), 0.0)
        mean[rows] = np.where(covered > 0, total / np.where(covered > 0, covered, 1.0), np.nan)
    mean[cover < min_coverage] = np.nan
    return mean, cover


def repeat_climatology(
    values: np.ndarray, start: np.ndarray, end: np.ndarray, years: range
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A climatology's steps (``values``: (site, step); steps ``[start, end)`` within one year, its
    label arbitrary) repeated in each of ``years``, so that an observation of any period, several
    years long too, is compared with the climatology over the same days."""
    first = pd.Timestamp(np.min(start)).year
    starts, ends = [], []
    for y in years:
        shift = pd.DateOffset(years=y - first)
        starts.append((pd.DatetimeIndex(start) + shift).values)
        ends.append((pd.DatetimeIndex(end) + shift).values)
    return np.tile(values, (1, len(years))), np.concatenate(starts), np.concatenate(ends)


def _site_scores(o: np.ndarray, m: np.ndarray, site: np.ndarray) -> tuple[float, float, float]:
    """ILAMB's per-site bias and RMSE scores, each averaged over the sites (unweighted, as ilamb3's
    ``integrate_or_mean`` does for site data), and the spatial-distribution score of the sites'
    period means."""
    frame = pd.DataFrame({"o": o, "m": m, "s": site})
    g = frame.groupby("s")
    mo, mm, so, n = g.o.mean(), g.m.mean(), g.o.std(ddof=0), g.o.size()
    # Bias: normalized by the site's standard deviation over time; a site with one value (or a
    # constant one): by its mean (ilamb3's normalizer without a time dimension).
    series = (n >= 2) & (so > 0)
    norm = np.where(series, so, np.abs(mo))
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = np.exp(-np.abs(mm - mo) / norm)
    bias = bias[np.isfinite(bias)]
    # RMSE: centred RMSE over the site's centred RMS, only where the site has a series.
    anomalies = frame.assign(do=frame.o - frame.s.map(mo), dm=frame.m - frame.s.map(mm))
    ga = anomalies.groupby("s")
    crmse = np.sqrt(ga.apply(lambda x: np.mean((x.dm - x.do) ** 2), include_groups=False))
    crms = np.sqrt(ga.apply(lambda x: np.mean(x.do**2), include_groups=False))
    rmse = np.exp(-(crmse / crms)[series])
    # Spatial distribution: the sites' means against each other (Taylor 2001; ILAMB's form).
    spatial = np.nan
    if len(mo) >= 3 and mo.std(ddof=0) > 0 and mm.std(ddof=0) > 0:
        sigma = mm.std(ddof=0) / mo.std(ddof=0)
        r = np.corrcoef(mo, mm)[0, 1]
        spatial = float(2 * (1 + r) / (sigma + 1 / sigma) ** 2)
    return (
        float(np.mean(bias)) if bias.size else np.nan,
        float(np.mean(rmse)) if rmse.size else np.nan,
        spatial,
    )


def pair_scores(obs: np.ndarray, mod: np.ndarray, site: np.ndarray | None = None) -> dict[str, float]:
    """Scores of ``mod`` against ``obs`` over the pairs where both are finite.

    Over all pairs (Lu et al. 2021's site comparison, a Taylor diagram's point): ``n``, ``sites``,
    ``r`` (Pearson), ``rmse``, ``bias`` (mean of mod - obs), ``crmse`` (centred RMSE: of the
    anomalies from each one's mean), ``sd_ratio`` (sd mod / sd obs), ``obs_mean``, ``mod_mean``.

    ILAMB's scores for site data, each in [0, 1] (1: perfect), per site (``site``: each pair's
    site; None: all pairs one site) and then averaged over the sites, as ILAMB (Collier et al. 2018)
    computes them; the formulas are those of ilamb3 (github rubisco-sfa/ilamb3 at 34a4d749:
    ``analysis/bias.py`` L74-78, ``rmse.py`` L177-189, ``spatial_distribution.py`` L129-145):

    - ``score_bias`` = exp(-|mean mod - mean obs| / sd_t obs), sd over the site's own series (its
      mean for a site with one value);
    - ``score_rmse`` = exp(-crmse_t / crms_t obs) on the site's series (sites with two or more values);
    - ``score_spatial`` = 2 (1 + R) / (sigma + 1/sigma)^2 of the sites' means (R their correlation,
      sigma the ratio of their standard deviations; three sites or more);
    - ``score_overall``: ILAMB's weighted mean of the scores present (bias 1, RMSE 2, spatial 1;
      ILAMB v2 ``Confrontation.py``), without its seasonal-cycle and interannual-variability
      terms, which observations of scattered periods do not have.
    """
    o = np.asarray(obs, dtype="float64")
    m = np.asarray(mod, dtype="float64")
    s = np.zeros(len(o)) if site is None else np.asarray(site)
    ok = np.isfinite(o) & np.isfinite(m)
    o, m, s = o[ok], m[ok], s[ok]
    n = int(ok.sum())
    out: dict[str, float] = {"n": n, "sites": int(len(np.unique(s)))}
    if n < 3:
        return {**out, **{k: np.nan for k in _KEYS}}
    so, sm = o.std(), m.std()
    r = float(np.corrcoef(o, m)[0, 1]) if so > 0 and sm > 0 else np.nan
    sb, sr, sd = _site_scores(o, m, s)
    weights = {"score_bias": 1.0, "score_rmse": 2.0, "score_spatial": 1.0}
    pooled = metrics(o, m)
    scores = {
        "r": r,
        "rmse": pooled["rmse"],
        "bias": pooled["bias"],
        "crmse": float(np.sqrt(np.mean(((m - m.mean()) - (o - o.mean())) ** 2))),
        "sd_ratio": float(sm / so) if so > 0 else np.nan,
        "obs_mean": float(o.mean()),
        "mod_mean": float(m.mean()),
        "score_bias": sb,
        "score_rmse": sr,
        "score_spatial": sd,
    }
    present = {k: w for k, w in weights.items() if np.isfinite(scores[k])}
    scores["score_overall"] = (
        sum(w * scores[k] for k, w in present.items()) / sum(present.values()) if present else np.nan
    )
    return {**out, **scores}


_KEYS = (
    *("r", "rmse", "bias", "crmse", "sd_ratio", "obs_mean", "mod_mean"),
    *("score_bias", "score_rmse", "score_spatial", "score_overall"),
)


def scores_by(
    d: pd.DataFrame, columns: dict[str, str], by: tuple[str, ...] = (), *, site: str = "site_group"
) -> pd.DataFrame:
    """:func:`pair_scores` of every ``columns`` (label -> column of ``d``) against ``d.value``, the
    sites being ``d[site]``: over all rows (``group`` = ``all``) and within each value of each column
    named in ``by`` (e.g. the IGBP class, the zone). One row per product and group."""

    def one(part: pd.DataFrame, col: str) -> dict[str, float]:
        return pair_scores(part.value.to_numpy(), part[col].to_numpy(), part[site].to_numpy())

    rows = []
    for label, col in columns.items():
        rows.append({"product": label, "by": "all", "group": "all", **one(d, col)})
        for b in by:
            for g, part in d.groupby(b):
                rows.append({"product": label, "by": b, "group": str(g), **one(part, col)})
    return pd.DataFrame(rows)


def _land_area(flux: xr.DataArray, land: xr.DataArray | None) -> xr.DataArray:
    """Land area (m2) of each cell: its area on the sphere times its land fraction (1 where the
    product gives none), as fluxmap's own totals weigh cells."""
    return cell_land_area(flux, land if land is not None else xr.DataArray(1.0))


def _annualized(grams: np.ndarray, start: np.ndarray, days: np.ndarray) -> pd.DataFrame:
    """Per calendar year of the steps' ``start``: the total (Pg C) of ``grams`` per step, the days the
    steps cover, and the total annualized (``total_pg_c_yr`` = total x days of the year / days
    covered)."""
    t = pd.DataFrame({"year": pd.DatetimeIndex(start).year, "grams": np.asarray(grams, "float64"), "days": days})
    g = t.groupby("year").sum()
    in_year = np.array([366.0 if pd.Timestamp(int(y), 12, 31).day_of_year == 366 else 365.0 for y in g.index])
    return pd.DataFrame(
        {"total_pg_c": g.grams / 1e15, "days": g.days, "total_pg_c_yr": g.grams / 1e15 * in_year / g.days},
        index=pd.Index(g.index, name="year"),
    )


def _days(flux: xr.DataArray) -> xr.DataArray:
    return (flux["end"] - flux["start"]) / _DAY


def product_totals(flux: xr.DataArray, land: xr.DataArray | None = None) -> pd.DataFrame:
    """Per calendar year of the steps' starts: the product's total (Pg C) over the cells with values,
    the days its steps cover, and the total annualized (``total_pg_c_yr`` = total x days of the year
    / days covered). ``flux``: (time, lat, lon) in g C m-2 d-1 with ``start``/``end`` along time;
    ``land``: each cell's land fraction (a model's ``sftlf``), else whole cells count."""
    days = _days(flux)
    grams = (flux.fillna(0.0) * _land_area(flux, land)).sum(("lat", "lon")) * days
    return _annualized(np.asarray(grams.values), flux["start"].values, days.values)


def product_totals_by_class(
    flux: xr.DataArray, land: xr.DataArray | None, classes: xr.DataArray, names: dict[int, str]
) -> pd.DataFrame:
    """:func:`product_totals` per class of ``classes`` (the product's grid, e.g. the IGBP class from
    :func:`classes_on_grid`): year, class, name, land_km2, total_pg_c_yr; cells of no listed
    class as ``unclassified`` (class -1), so the classes add up to the product's total. One
    computation for all classes."""
    import dask

    days = _days(flux)
    w = _land_area(flux, land)
    codes = [int(c) for c in names]
    masks = [classes == c for c in codes] + [~classes.isin(codes)]
    values = dask.compute(
        *[(flux.fillna(0.0) * w.where(m, 0.0)).sum(("lat", "lon")) for m in masks],
        *[w.where(m, 0.0).where(flux.notnull().any("time"), 0.0).sum() for m in masks],
    )
    rows = []
    for i, (code, name) in enumerate(zip([*codes, -1], [*(names[c] for c in codes), "unclassified"])):
        area = float(values[len(masks) + i]) / 1e6
        if area <= 0:
            continue
        t = _annualized(np.asarray(values[i]) * days.values, flux["start"].values, days.values)
        rows.append(t.reset_index().assign(**{"class": code, "name": name, "land_km2": area}))
    out = pd.concat(rows, ignore_index=True)
    return out[["year", "class", "name", "land_km2", "total_pg_c_yr"]]


def classes_on_grid(
    classes: xr.DataArray, land: xr.DataArray, lat: np.ndarray, lon: np.ndarray, codes: list[int]
) -> xr.DataArray:
    """A class map (lat x lon, e.g. fluxmap's IGBP land cover) on another regular grid (``lat`` x
    ``lon``, e.g. a 1.5 deg model's): each cell the class covering most of its land, by the land
    area each source cell shares with it on the sphere (first-order conservative shares of each
    class's land); 0 where it overlaps no land of a listed class."""
    from fluxmap.science.features import regrid_conservative
    from fluxmap.science.grids import majority_class

    land = land.fillna(0.0).astype("float64").broadcast_like(classes).transpose("lat", "lon")
    shares = np.stack(
        [np.nan_to_num(regrid_conservative(land.where(classes == c, 0.0), lat, lon).values) for c in codes]
    )
    major = majority_class(shares, np.asarray(codes, dtype="int16"), fill=0)
    return xr.DataArray(major, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="class")


def time_mean(flux: xr.DataArray) -> xr.DataArray:
    """Each cell's mean over the product's steps, each weighted by its days (g C m-2 d-1); NaN
    where the product has no value."""
    days = _days(flux)
    covered = days.where(flux.notnull()).sum("time")
    return (flux * days).sum("time", min_count=1) / covered.where(covered > 0)


def difference_field(product_mean: xr.DataArray, reference_mean: xr.DataArray) -> xr.DataArray:
    """``product_mean`` (its own grid) brought conservatively onto ``reference_mean``'s grid (fluxmap's
    map) minus the reference: positive where the product is higher; NaN where either has no value."""
    from fluxmap.science.features import regrid_conservative

    on = regrid_conservative(product_mean, reference_mean.lat.values, reference_mean.lon.values)
    return (on - reference_mean).rename("difference")


def partition(totals: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """AR = SR - HR (or the product's own ``ra``) and HR/SR, AR/SR per ``keys`` (e.g. product and
    year, or product, year and class) from a long table of totals (``variable``,
    ``total_pg_c_yr``); only where both SR and HR (or SR and RA) are given."""
    wide = totals.pivot_table(index=keys, columns="variable", values="total_pg_c_yr", aggfunc="first")
    if "sr" not in wide or not ({"rh", "ra"} & set(wide.columns)):
        return pd.DataFrame(columns=[*keys, "sr", "rh", "ra", "rh_over_sr", "ar_over_sr"])
    rh = wide["rh"] if "rh" in wide else wide["sr"] - wide["ra"]
    ra = wide["ra"] if "ra" in wide else wide["sr"] - wide["rh"]
    out = pd.DataFrame({"sr": wide["sr"], "rh": rh, "ra": ra})
    out["rh_over_sr"], out["ar_over_sr"] = out.rh / out.sr, out.ra / out.sr
    return out.dropna(subset=["sr", "rh"]).reset_index()


def product_profile(flux: xr.DataArray, land: xr.DataArray | None = None) -> pd.Series:
    """The land-area-weighted mean flux (g C m-2 d-1) of each latitude row over all the product's
    steps (day-weighted), as fluxmap's own ``latitudinal_profile_*.csv`` has it."""
    mean = time_mean(flux)
    w = _land_area(flux, land).broadcast_like(mean).where(mean.notnull(), 0.0)
    row = (mean.fillna(0.0) * w).sum("lon") / w.sum("lon").where(w.sum("lon") > 0)
    return pd.Series(np.asarray(row.values, dtype="float64"), index=pd.Index(flux.lat.values, name="lat"))
