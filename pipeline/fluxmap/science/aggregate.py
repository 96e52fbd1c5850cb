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

__all__ = ["annual_mean", "annual_totals", "display_field", "latitudinal_profile", "partition"]


def _weights(flux: xr.DataArray, land_fraction: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    dlat = float(abs(flux.lat[1] - flux.lat[0])) if flux.sizes["lat"] > 1 else 1.0
    dlon = float(abs(flux.lon[1] - flux.lon[0])) if flux.sizes["lon"] > 1 else dlat
    area = xr.DataArray(cell_area(flux.lat.values, dlat, dlon), dims="lat", coords={"lat": flux.lat})
    days = xr.DataArray(
        periods.period_days(flux.time.values).astype("float64"), dims="time", coords={"time": flux.time}
    )
    return area * land_fraction.fillna(0.0), days


def annual_totals(flux: xr.DataArray, land_fraction: xr.DataArray, region: xr.DataArray | None = None) -> pd.DataFrame:
    """Total flux per calendar year (Pg C yr-1), and the land area the prediction covers.

    ``region`` (bool, lat x lon) restricts the sum. Cells or periods without a
    prediction count as zero and lower ``covered_fraction`` (of land area-days).
    """
    w, days = _weights(flux, land_fraction)
    if region is not None:
        w = w.where(region, 0.0)
    grams = (flux.fillna(0.0) * days * w).groupby("time.year").sum()
    covered = (flux.notnull() * days * w).groupby("time.year").sum()
    possible = (xr.ones_like(flux) * days * w).groupby("time.year").sum()
    total = grams.sum(("lat", "lon")) / 1e15
    cov = covered.sum(("lat", "lon")) / possible.sum(("lat", "lon"))
    return pd.DataFrame(
        {"total_pg_c_yr": total.values, "covered_fraction": cov.values}, index=pd.Index(total.year.values, name="year")
    )


def annual_mean(flux: xr.DataArray) -> xr.DataArray:
    """Day-weighted mean over all periods of each cell (g C m-2 d-1)."""
    days = xr.DataArray(
        periods.period_days(flux.time.values).astype("float64"), dims="time", coords={"time": flux.time}
    )
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
