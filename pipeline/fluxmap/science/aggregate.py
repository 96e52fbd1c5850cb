"""Global and regional totals (Pg C yr-1), latitudinal profiles, and the SR = HR + AR partition.

Totals use true cell areas on the sphere (R^2 dlon (sin lat_n - sin lat_s), R = 6,371,007 m)
times the land fraction, and each 8-day period's length in days (5 or 6 for the last
period of a year): total = sum(flux x days x area x land_fraction), 1 Pg = 1e15 g.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science import periods
from fluxmap.science.grids import cell_area

__all__ = [
    "annual_mean",
    "annual_totals",
    "cell_land_area",
    "display_field",
    "latitudinal_profile",
    "member_band",
    "member_region_totals",
    "member_totals",
    "many_annual_totals",
    "partition",
    "region_totals",
    "step_days",
    "totals_by_class",
    "zone_land_area",
]


def _area(field: xr.DataArray) -> xr.DataArray:
    """Cell area (m2) of each latitude row of ``field``'s grid."""
    dlat = float(abs(field.lat[1] - field.lat[0])) if field.sizes["lat"] > 1 else 1.0
    dlon = float(abs(field.lon[1] - field.lon[0])) if field.sizes["lon"] > 1 else dlat
    return xr.DataArray(cell_area(field.lat.values, dlat, dlon), dims="lat", coords={"lat": field.lat})


def zone_land_area(zone: xr.DataArray, land_fraction: xr.DataArray, zones: list[int]) -> pd.Series:
    """Land area (km2: cell area x land fraction) of each of ``zones`` on the zone map (lat x lon),
    lazily reduced (one pass for all zones)."""
    import dask

    w = _area(zone) * land_fraction.fillna(0.0)
    sums = dask.compute(*[w.where(zone == z, 0.0).sum() for z in zones])
    return pd.Series([float(s) / 1e6 for s in sums], index=pd.Index(zones, name="zone"), name="land_km2")


def step_days(time: xr.DataArray) -> xr.DataArray:
    """The days each time step covers: the 8-day periods' (8; 5 or 6 at the end of a year), or the
    whole year's (365 or 366) where the time axis says it holds years (``fluxmap_step: year``,
    as fluxmap's annual maps do)."""
    t = pd.DatetimeIndex(time.values)
    if time.attrs.get("fluxmap_step") == "year":
        days = np.where(t.is_leap_year, 366.0, 365.0)
    else:
        days = periods.period_days(time.values).astype("float64")
    return xr.DataArray(days, dims="time", coords={"time": time})


def cell_land_area(field: xr.DataArray, land_fraction: xr.DataArray) -> xr.DataArray:
    """Land area (m2) of each cell of ``field``'s grid: cell area on the sphere x land fraction."""
    return _area(field) * land_fraction.fillna(0.0)


def _weights(flux: xr.DataArray, land_fraction: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    return _area(flux) * land_fraction.fillna(0.0), step_days(flux["time"])


def annual_totals(
    flux: xr.DataArray,
    land_fraction: xr.DataArray,
    region: xr.DataArray | None = None,
    *,
    flagged: xr.DataArray | None = None,
) -> pd.DataFrame:
    """Per calendar year, what the periods present in ``flux`` add up to, and what they leave out.

    Columns: ``total_pg_c`` (Pg C over the periods present), ``days`` they cover, ``time_fraction``
    (days / the year's 365 or 366), ``total_pg_c_yr`` (annualized: ``total_pg_c / time_fraction``,
    equal to ``total_pg_c`` for a whole year; a year with periods missing, e.g. at the edges of a
    record, shows it in ``time_fraction``), ``covered_fraction`` (land area-days with a value over
    those of the periods present), ``land_km2_never_predicted`` (land with no value in any period of
    the year, counted as zero in the totals), and with ``flagged`` (bool, like ``flux``: e.g. cells
    predicted from missing predictors) ``flagged_pg_c_yr``, the annualized part of the total from
    flagged cells. ``region`` (bool, lat x lon) restricts every sum.
    """
    return many_annual_totals({"_": (flux, flagged)}, land_fraction, region)["_"]


def many_annual_totals(
    fluxes: dict[str, tuple[xr.DataArray, xr.DataArray | None]],
    land_fraction: xr.DataArray,
    region: xr.DataArray | None = None,
) -> dict[str, pd.DataFrame]:
    """:func:`annual_totals` of several fields (name -> (flux, flagged or None)) on one grid, in
    one computation: a store is read once for all of them, not once per field."""
    import dask

    graphs, finish = {}, {}
    for name, (flux, flagged) in fluxes.items():
        w, days = _weights(flux, land_fraction)
        if region is not None:
            w = w.where(region, 0.0)
        year = flux["time"].dt.year
        grams = (flux.fillna(0.0) * days * w).groupby(year).sum().sum(("lat", "lon"))
        covered = (flux.notnull() * days * w).groupby(year).sum().sum(("lat", "lon"))
        # Every land area-day of the year: the days times the land area, no pass over the cube.
        possible = days.groupby(year).sum() * w.sum(("lat", "lon"))
        never = ~flux.notnull().groupby(year).any()  # no value in any period of the year
        never_km2 = (w * never).sum(("lat", "lon")) / 1e6
        parts = [grams, covered, possible, never_km2]
        if flagged is not None:
            parts.append((flux.where(flagged, 0.0).fillna(0.0) * days * w).groupby(year).sum().sum(("lat", "lon")))
        graphs[name] = [p.data for p in parts]
        finish[name] = (np.asarray(grams["year"].values), days.groupby(year).sum().values, flagged is not None)
    computed = dask.compute(graphs)[0]
    out = {}
    for name, arrays in computed.items():
        values = [np.asarray(v) for v in arrays]
        years, n_days, has_flag = finish[name]
        year_days = np.array([366 if pd.Timestamp(int(y), 12, 31).day_of_year == 366 else 365 for y in years])
        frac = n_days / year_days
        table = pd.DataFrame(
            {
                "total_pg_c": values[0] / 1e15,
                "days": n_days.astype(int),
                "time_fraction": frac,
                "total_pg_c_yr": values[0] / 1e15 / frac,
                # A region without land (a latitude band of a small grid) has nothing to cover: NaN, not 0 / 0.
                "covered_fraction": values[1] / np.where(values[2] > 0, values[2], np.nan),
                "land_km2_never_predicted": values[3],
            },
            index=pd.Index(years, name="year"),
        )
        if has_flag:
            table["flagged_pg_c_yr"] = values[4] / 1e15 / frac
        out[name] = table
    return out


def _by_region(field: xr.DataArray, regions: xr.DataArray, codes: list[int]) -> xr.DataArray:
    """``field`` summed over lat x lon per region code (a new ``region`` dimension, in ``codes``'
    order; a code with no cell sums to 0): one pass over the field, whatever the number of regions
    (flox's grouped reduction), lazy."""
    from flox.xarray import xarray_reduce

    by = regions.rename("region").astype("int32")
    return xarray_reduce(
        field, by, func="sum", dim=("lat", "lon"), expected_groups=np.asarray(codes, dtype="int32"), fill_value=0.0
    )


def region_totals(
    flux: xr.DataArray,
    land_fraction: xr.DataArray,
    regions: xr.DataArray,
    names: dict[int, str],
    *,
    aoa: xr.DataArray | None = None,
) -> pd.DataFrame:
    """Per year and region (``regions``: integer codes, lat x lon; ``names``: code -> name): the
    region's land area (km2), annualized total (Pg C yr-1) and, with ``aoa`` (1 inside the area of
    applicability, 0 outside, like ``flux``), the share of its land area-days with a value that lie
    outside and the total from them. Lazy until one computation, one pass over the map whatever the
    number of regions; cells of no listed code are left out."""
    import dask

    w, days = _weights(flux, land_fraction)
    year = flux["time"].dt.year
    fields = [(flux.fillna(0.0) * days).groupby(year).sum("time"), (flux.notnull() * days).groupby(year).sum("time")]
    if aoa is not None:
        outside = (aoa == 0) & flux.notnull()
        fields += [
            (flux.where(outside, 0.0) * days).groupby(year).sum("time"),
            (outside * days).groupby(year).sum("time"),
        ]
    codes = [int(c) for c in names]
    computed = dask.compute([_by_region(f * w, regions, codes) for f in fields], _by_region(w, regions, codes))
    # values[i][k][j]: region i, field k, year j (the per-code layout the rows below read)
    values = [[f.isel(region=i).values for f in computed[0]] for i in range(len(codes))]
    area_values = computed[1].values
    years = np.asarray(fields[0]["year"].values)
    n_days = days.groupby(year).sum().values
    year_days = np.array([366 if pd.Timestamp(int(y), 12, 31).day_of_year == 366 else 365 for y in years])
    frac = n_days / year_days
    rows = []
    for i, c in enumerate(codes):
        v = [np.asarray(x, dtype=float) for x in values[i]]
        for j, y in enumerate(years):
            row = {
                "year": int(y),
                "code": c,
                "name": names[c],
                "land_km2": float(area_values[i]) / 1e6,
                "total_pg_c_yr": v[0][j] / 1e15 / frac[j],
            }
            if aoa is not None:
                row["outside_aoa_area_fraction"] = v[3][j] / v[1][j] if v[1][j] > 0 else np.nan
                row["from_outside_aoa_pg_c_yr"] = v[2][j] / 1e15 / frac[j]
            rows.append(row)
    return pd.DataFrame(rows)


def totals_by_class(
    flux: xr.DataArray, land_fraction: xr.DataArray, classes: xr.DataArray, names: dict[int, str]
) -> pd.DataFrame:
    """Per year and class of ``classes`` (lat x lon, e.g. IGBP land cover): the land area (km2) and the
    annualized total (Pg C yr-1, as :func:`annual_totals`), with cells of no listed class as
    ``unclassified`` so the classes add up to the total. Lazy until one computation: the store is
    read once, whatever the number of classes."""
    import dask

    w, days = _weights(flux, land_fraction)
    year = flux["time"].dt.year
    yearly = (flux.fillna(0.0) * days).groupby(year).sum("time")  # (year, lat, lon), chunk by chunk
    codes = [int(c) for c in names]
    listed = classes.isin(codes)
    masks = [classes == c for c in codes] + [~listed]
    grams = [(yearly * w.where(m, 0.0)).sum(("lat", "lon")) for m in masks]
    areas = [w.where(m, 0.0).sum() for m in masks]
    values = dask.compute(*grams, *areas)
    years = np.asarray(yearly["year"].values)
    n_days = days.groupby(year).sum().values
    year_days = np.array([366 if pd.Timestamp(int(y), 12, 31).day_of_year == 366 else 365 for y in years])
    frac = n_days / year_days
    labels = [*(names[c] for c in codes), "unclassified"]
    class_codes = [*codes, -1]
    rows = []
    for i, (code, label) in enumerate(zip(class_codes, labels)):
        area_km2 = float(values[len(masks) + i]) / 1e6
        for j, y in enumerate(years):
            rows.append(
                {
                    "year": int(y),
                    "class": code,
                    "name": label,
                    "land_km2": area_km2,
                    "total_pg_c_yr": float(np.asarray(values[i])[j]) / 1e15 / frac[j],
                }
            )
    out = pd.DataFrame(rows)
    out = out[out.land_km2 > 0].reset_index(drop=True)
    out["share_of_total"] = out.total_pg_c_yr / out.groupby("year").total_pg_c_yr.transform("sum")
    return out


def member_totals(members: xr.DataArray, land_fraction: xr.DataArray) -> pd.DataFrame:
    """Per calendar year (rows) and ensemble member (columns): the member map's annualized total,
    Pg C yr-1 (``members``: member x time x lat x lon), as :func:`annual_totals` sums the mean map."""
    w, days = _weights(members, land_fraction)
    year = members["time"].dt.year
    grams = (members.fillna(0.0) * days * w).groupby(year).sum().sum(("lat", "lon")).compute()
    n_days = days.groupby(year).sum().values
    years = np.asarray(grams["year"].values)
    year_days = np.array([366 if pd.Timestamp(int(y), 12, 31).day_of_year == 366 else 365 for y in years])
    values = grams.transpose("year", "member").values / 1e15 / (n_days / year_days)[:, None]
    return pd.DataFrame(values, index=pd.Index(years, name="year"), columns=grams["member"].values)


def member_band(members: xr.DataArray, land_fraction: xr.DataArray) -> pd.DataFrame:
    """Per calendar year: the number of ensemble members and the SD and 5-95 % range of their
    totals (each member's own map summed, :func:`member_totals`): the spread of the total, which
    the members' per-cell spread summed over the cells only bounds."""
    per_member = member_totals(members, land_fraction)
    return pd.DataFrame(
        {
            "ensemble_members": per_member.shape[1],
            "ensemble_sd_pg_c_yr": per_member.std(axis=1, ddof=1),
            "ensemble_p05_pg_c_yr": per_member.quantile(0.05, axis=1),
            "ensemble_p95_pg_c_yr": per_member.quantile(0.95, axis=1),
        }
    )


def member_region_totals(
    members: xr.DataArray, land_fraction: xr.DataArray, regions: xr.DataArray, names: dict[int, str]
) -> pd.DataFrame:
    """Per year, region (``regions``: integer codes, lat x lon; ``names``: code -> name) and ensemble
    member (columns): the member map's annualized total in the region, Pg C yr-1, as
    :func:`member_totals` globally. One computation for all regions."""

    w, days = _weights(members, land_fraction)
    year = members["time"].dt.year
    yearly = (members.fillna(0.0) * days).groupby(year).sum("time")  # (member, year, lat, lon)
    codes = [int(c) for c in names]
    summed = _by_region(yearly * w, regions, codes).compute()
    sums = [summed.isel(region=i) for i in range(len(codes))]
    years = np.asarray(yearly["year"].values)
    n_days = days.groupby(year).sum().values
    year_days = np.array([366 if pd.Timestamp(int(y), 12, 31).day_of_year == 366 else 365 for y in years])
    frac = n_days / year_days
    frames = []
    for c, grams in zip(codes, sums):
        values = grams.transpose("year", "member").values / 1e15 / frac[:, None]
        index = pd.MultiIndex.from_arrays([years, [names[c]] * len(years)], names=["year", "name"])
        frames.append(pd.DataFrame(values, index=index, columns=grams["member"].values))
    return pd.concat(frames)


def annual_mean(flux: xr.DataArray) -> xr.DataArray:
    """Day-weighted mean over all periods of each cell (g C m-2 d-1)."""
    days = step_days(flux["time"])
    total = (flux * days).sum("time", min_count=1)
    covered = days.where(flux.notnull()).sum("time")
    return total / covered.where(covered > 0)  # cells never predicted (ocean): NaN, without 0 / 0


def latitudinal_profile(flux: xr.DataArray, land_fraction: xr.DataArray) -> pd.DataFrame:
    """Per latitude row: land-area-weighted mean flux (g C m-2 d-1) and the row's total (Tg C yr-1)."""
    w, days = _weights(flux, land_fraction)
    mean = annual_mean(flux)
    lon_w = w.broadcast_like(mean).where(mean.notnull(), 0.0)
    row_w = lon_w.sum("lon")
    row_mean = (mean.fillna(0) * lon_w).sum("lon") / row_w.where(row_w > 0)  # rows without land: NaN
    years = len(np.unique(pd.DatetimeIndex(flux.time.values).year))
    row_total = (flux.fillna(0.0) * days * w).sum(("time", "lon")) / 1e12 / years
    return pd.DataFrame(
        {"mean_g_c_m2_d": row_mean.values, "total_tg_c_yr": row_total.values},
        index=pd.Index(flux.lat.values, name="lat"),
    )


def display_field(da: xr.DataArray, *, max_cells: int = 1500, categorical: bool = False) -> xr.DataArray:
    """A (lat, lon) field reduced, lazily, to at most ``max_cells`` along each axis, for figures.

    A figure needs ~1,000 cells across; a 500 m global field has 86,400. With f the smallest
    integer that brings both axes under ``max_cells``, the view holds the mean of each f x f
    block (NaN cells skipped, a block of NaN stays NaN; coordinates are the block centres) or,
    for a ``categorical`` field such as the zone map, the centre cell of each block. Computing
    it reads the field chunk by chunk; only the small view is held. Totals and profiles use
    every cell, never this view.
    """
    f = max(1, -(-max(da.sizes["lat"], da.sizes["lon"]) // max_cells))
    if f == 1:
        return da
    if categorical:
        return da.isel(lat=slice(f // 2, None, f), lon=slice(f // 2, None, f))
    return da.coarsen(lat=f, lon=f, boundary="pad").mean()


def partition(sr_total: pd.DataFrame, rh_total: pd.DataFrame) -> pd.DataFrame:
    """AR = SR - HR and the HR/SR ratio per year, from annual totals (Pg C yr-1)."""
    out = pd.DataFrame({"sr": sr_total.total_pg_c_yr, "rh": rh_total.total_pg_c_yr})
    out["ra"] = out.sr - out.rh
    out["rh_sr_ratio"] = out.rh / out.sr
    return out
