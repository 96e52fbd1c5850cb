"""Predictor values at sites: vectorized pointwise indexing of lazy cubes.

For N sites the cube is indexed once with ``(site, window)`` integer arrays
(xarray vectorized indexing, dask ``vindex`` underneath), so only the chunks that
hold sites are read and there is no Python loop over sites. A k x k window mean
ignores masked (NaN, i.e. QC-rejected) cells. ERA5's hourly or daily fields are
first averaged to the MODIS 8-day periods on their own grid (flox groupby).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science import periods

__all__ = ["SiteIndex", "extract_at_sites", "locate_sites", "on_periods", "to_periods"]


@dataclass(frozen=True)
class SiteIndex:
    """Where each site falls on one grid: row/column of its cell, and whether it is inside."""

    site_id: np.ndarray
    row: np.ndarray
    col: np.ndarray
    inside: np.ndarray


def _nearest(coord: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest coordinate value and whether the point is within half a step of it."""
    index = pd.Index(coord)
    if not (index.is_monotonic_increasing or index.is_monotonic_decreasing):
        raise ValueError("grid coordinate is not monotonic")
    idx = index.get_indexer(points, method="nearest")
    step = np.abs(np.diff(coord)).max() if coord.size > 1 else np.inf
    ok = (idx >= 0) & (np.abs(coord[np.clip(idx, 0, coord.size - 1)] - points) <= step / 2 + 1e-9)
    return idx, ok


def locate_sites(cube: xr.Dataset | xr.DataArray, site_id, lat, lon) -> SiteIndex:
    """Nearest cell of each site on a geographic (``lat``/``lon``) or sinusoidal (``y``/``x``) grid.

    Longitudes follow the cube's convention (0..360 for ERA5, -180..180 otherwise).
    Sinusoidal grids (MODIS tiles, CRS from rioxarray) use the sphere of the MODIS
    grid: x = R lon cos(lat), y = R lat (radians).
    """
    lat = np.asarray(lat, float)
    lon = np.asarray(lon, float)
    if "lat" in cube.dims and "lon" in cube.dims:
        glon = cube["lon"].values
        plon = lon % 360.0 if glon.max() > 180.0 else ((lon + 180.0) % 360.0) - 180.0
        r, rok = _nearest(cube["lat"].values, lat)
        c, cok = _nearest(glon, plon)
    elif "y" in cube.dims and "x" in cube.dims:
        from fluxmap.science.grids import EARTH_RADIUS_M

        x = EARTH_RADIUS_M * np.deg2rad(lon) * np.cos(np.deg2rad(lat))
        y = EARTH_RADIUS_M * np.deg2rad(lat)
        r, rok = _nearest(cube["y"].values, y)
        c, cok = _nearest(cube["x"].values, x)
    else:
        raise ValueError(f"cannot locate sites on dims {tuple(cube.dims)}: need lat/lon or y/x")
    inside = rok & cok
    return SiteIndex(np.asarray(site_id), np.where(inside, r, 0), np.where(inside, c, 0), inside)


def extract_at_sites(cube: xr.Dataset, where: SiteIndex, *, window: int = 1) -> xr.Dataset:
    """Values of every variable of ``cube`` at the sites (lazy if the cube is).

    Returns a Dataset with a ``site`` dimension replacing the two spatial ones (time
    and other dimensions kept). ``window`` (odd) averages a k x k block of cells
    around the site's cell, skipping NaN (QC-masked) cells; cells off the grid's
    edge are left out. Sites outside the grid get NaN.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    ydim, xdim = ("lat", "lon") if "lat" in cube.dims else ("y", "x")
    ny, nx = cube.sizes[ydim], cube.sizes[xdim]
    h = window // 2
    dy, dx = np.meshgrid(np.arange(-h, h + 1), np.arange(-h, h + 1), indexing="ij")
    rows = where.row[:, None] + dy.ravel()[None, :]
    cols = where.col[:, None] + dx.ravel()[None, :]
    valid = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx) & where.inside[:, None]
    rows_i = xr.DataArray(np.clip(rows, 0, ny - 1), dims=("site", "window"))
    cols_i = xr.DataArray(np.clip(cols, 0, nx - 1), dims=("site", "window"))
    # Only spatial variables are indexed; scalars and time-only variables pass through.
    spatial = [v for v in cube.data_vars if {ydim, xdim} <= set(cube[v].dims)]
    picked = cube[spatial].isel({ydim: rows_i, xdim: cols_i})
    mask = xr.DataArray(valid, dims=("site", "window"))
    # Class maps (unsigned ints such as land cover) take the site's own cell, never a mean.
    classes = [v for v in picked.data_vars if picked[v].dtype.kind in "uib"]
    numeric = [v for v in picked.data_vars if v not in classes]
    out = picked[numeric].where(mask)
    if numeric:
        reduced = out.mean("window", skipna=True) if window > 1 else out.isel(window=0)
    else:  # class maps only (a zone map): nothing to average
        reduced = out.drop_dims("window", errors="ignore")
    if classes:
        reduced = reduced.assign({v: picked[v].isel(window=(window * window) // 2) for v in classes})
    reduced = reduced.drop_vars([c for c in (ydim, xdim, "spatial_ref") if c in reduced.coords])
    return reduced.assign_coords(site=("site", where.site_id))


def to_periods(ds: xr.Dataset, *, min_coverage: float = 0.99) -> xr.Dataset:
    """Average sub-period fields (ERA5 hourly or daily) to MODIS 8-day periods, lazily.

    Uses xarray's groupby over each time step's period start (flox underneath), so
    the work stays chunked. Periods whose steps cover less than ``min_coverage`` of
    their length (the ends of the record) are dropped.
    """
    t = pd.DatetimeIndex(ds["time"].values)
    start = periods.period_start_of(t)
    label = xr.DataArray(start.values, dims="time", coords={"time": ds["time"]}, name="period")
    out = ds.groupby(label).mean()
    out = out.rename(period="time")
    # Coverage from the time axis alone (no data read).
    step = pd.Series(t).diff().median() if len(t) > 1 else pd.Timedelta(days=1)
    counts = pd.Series(1, index=start).groupby(level=0).size()
    days = periods.period_days(counts.index)
    coverage = counts.values * (step / pd.Timedelta(days=1)) / days
    keep = counts.index[coverage >= min_coverage]
    return out.sel(time=keep.values)


def on_periods(ds: xr.Dataset, kind: str, starts: pd.DatetimeIndex) -> xr.Dataset:
    """Any time axis put on the 8-day periods starting at ``starts`` (lazy where ``ds`` is).

    - ``climatology`` (12 calendar months, in order): each period takes the month of its
      middle day (start + 4 days), for whatever year it is in.
    - ``series`` with steps shorter than 8 days (ERA5 hourly or daily): averaged to the periods
      (:func:`to_periods`), then the requested ones taken.
    - ``series`` with steps of 8 days or longer (8-day, monthly, annual): each period takes the
      step that holds its middle day; periods before the first step or more than one step after
      the last are NaN, never extrapolated.
    - ``static``: returned as is.
    """
    if kind == "static" or "time" not in ds.dims:
        return ds
    starts = pd.DatetimeIndex(starts)
    middle = starts + pd.Timedelta(days=4)
    if kind == "climatology":
        if ds.sizes["time"] != 12:
            raise ValueError(f"a climatology has 12 months, this one {ds.sizes['time']} steps")
        month = xr.DataArray(middle.month.values - 1, dims="time")
        return ds.isel(time=month).assign_coords(time=("time", starts.values))
    t = pd.DatetimeIndex(ds["time"].values)
    step = pd.Series(t).diff().median() if len(t) > 1 else pd.Timedelta(days=8)
    if step < pd.Timedelta(days=8):
        return to_periods(ds).reindex(time=starts.values)
    idx = t.get_indexer(middle, method="ffill")
    beyond = middle >= t[-1] + step
    idx = np.where(beyond, -1, idx)
    picked = ds.isel(time=xr.DataArray(np.clip(idx, 0, None), dims="time"))
    picked = picked.where(xr.DataArray(idx >= 0, dims="time"))
    return picked.assign_coords(time=("time", starts.values))
