"""Derived predictors: annual statistics per site-year or pixel-year, seasonal day-of-year
transform, site-level long-term means.

Pure functions of xarray objects; each works on numpy- and dask-backed data with
the same result (tested both ways), so training and global prediction share them.
Annual max/min/mean of every predictor follow Zhu et al. (2024).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.science import periods

__all__ = [
    "annual_stats",
    "doy_features",
    "grid_zone_factors",
    "growing_season_mean",
    "long_term_means",
    "period_weights",
    "cell_edges",
    "regrid_conservative",
    "regrid_land_mean",
    "regrid_nearest",
]


def period_weights(time: xr.DataArray) -> xr.DataArray:
    """The days each 8-day period covers (8; 5 or 6 for the last of a year): its weight in any mean
    over time, so a short last period counts for its days, not as a full period."""
    return xr.DataArray(periods.period_days(time.values).astype("float64"), dims="time", coords={"time": time})


_XR = TypeVar("_XR", xr.Dataset, xr.DataArray)


def _time_mean(obj: _XR) -> _XR:
    """Mean over time weighted by the periods' days, skipping missing values (their days too)."""
    return obj.weighted(period_weights(obj["time"])).mean("time", skipna=True)


def annual_stats(ds: xr.Dataset, *, stats: tuple[str, ...] = ("max", "min", "mean")) -> xr.Dataset:
    """For each variable ``v`` with a time axis: ``v_ann_max``, ``v_ann_min``, ``v_ann_mean``
    over its calendar year, broadcast back to every period of that year (NaN-skipping; the mean
    weighted by each period's days).

    Each year's statistic is broadcast with ``expand_dims`` and the years concatenated,
    so the graph stays a few tasks per chunk even on the 500 m global grid.
    """
    timed = [v for v in ds.data_vars if "time" in ds[v].dims and np.issubdtype(ds[v].dtype, np.floating)]
    year = ds["time"].dt.year.values
    out = {}
    for stat in stats:
        pieces = []
        for y in np.unique(year):
            part = ds[timed].isel(time=np.flatnonzero(year == y))
            agg = _time_mean(part) if stat == "mean" else getattr(part, stat)("time", skipna=True)
            pieces.append(agg.expand_dims(time=part["time"].values).transpose(*part[timed[0]].dims) if timed else agg)
        back = xr.concat(pieces, dim="time") if pieces else ds[timed]
        for v in timed:
            out[f"{v}_ann_{stat}"] = (
                back[v]
                .transpose(*ds[v].dims)
                .assign_attrs(
                    long_name=f"annual {stat} of {ds[v].attrs.get('long_name', v)}", units=ds[v].attrs.get("units", "")
                )
            )
    return xr.Dataset(out, coords={"time": ds["time"]})


def doy_features(time: xr.DataArray | np.ndarray | pd.DatetimeIndex) -> xr.Dataset:
    """``doy_sin``/``doy_cos`` of the 8-day period's midpoint, so DOY 1 and 365 are neighbours.

    angle = 2 pi (doy_mid - 1) / days_in_year, doy_mid the period's middle day.
    """
    t = pd.DatetimeIndex(np.asarray(time))
    starts = periods.period_start_of(t)
    mid = starts + pd.to_timedelta(periods.period_days(starts) / 2.0, unit="D")
    year_days = np.where(t.is_leap_year, 366.0, 365.0)
    angle = 2 * np.pi * (mid.day_of_year.values - 1 + (mid.hour.values / 24.0)) / year_days
    coords = {"time": np.asarray(time)}
    return xr.Dataset(
        {
            "doy_sin": ("time", np.sin(angle), {"long_name": "sine of the period's day of year", "units": "1"}),
            "doy_cos": ("time", np.cos(angle), {"long_name": "cosine of the period's day of year", "units": "1"}),
        },
        coords=coords,
    )


def growing_season_mean(da: xr.DataArray, t2m: xr.DataArray, *, threshold_k: float = 278.15) -> xr.DataArray:
    """Mean of ``da`` over the periods whose air temperature exceeds ``threshold_k`` (5 C).

    Used for growing-season LSWI as a zoning factor (Zhu et al. 2024).
    """
    return _time_mean(da.where(t2m > threshold_k)).rename(f"{da.name}_growing_season")


def long_term_means(ds: xr.Dataset) -> xr.Dataset:
    """Mean over time of every time-varying variable (site- or pixel-level climate for zoning),
    weighted by the periods' days."""
    timed = [v for v in ds.data_vars if "time" in ds[v].dims]
    return _time_mean(ds[timed]).rename({v: f"{v}_mean" for v in timed})


def regrid_nearest(
    da: xr.DataArray, lat: np.ndarray, lon: np.ndarray, *, chunks: tuple[int, int] | None = None
) -> xr.DataArray:
    """Nearest-neighbour values of a lat/lon field at other cell centres (lazy; 0-360 aware).

    Used to bring ERA5's 0.25 deg points onto the MODIS-like grid for zoning and
    prediction; ERA5 is smooth at that scale, so nearest is within its own error.
    For dask-backed input every output block (``chunks`` = lat, lon sizes) is one
    task that depends on the source (which should be small: one chunk in lat/lon)
    and picks its cells with integer indices, so the graph grows with the number
    of output blocks, not cells.
    """
    lat, lon = np.asarray(lat), np.asarray(lon)
    src_lon = da["lon"].values
    tgt_lon = lon % 360.0 if src_lon.max() > 180 else lon
    iy = pd.Index(da["lat"].values).get_indexer(lat, method="nearest")
    ix = pd.Index(src_lon).get_indexer(tgt_lon, method="nearest")
    coords = {"lat": ("lat", lat), "lon": ("lon", lon)}
    if not da.chunks:
        out = da.isel(lat=xr.DataArray(iy, dims="lat"), lon=xr.DataArray(ix, dims="lon"))
        return out.drop_vars(["lat", "lon"], errors="ignore").assign_coords(coords)
    return _per_output_block(_pick, da, lat, lon, iy, ix, chunks=chunks, dtype=da.dtype)


def _per_output_block(
    func: Any,
    da: xr.DataArray,
    lat: np.ndarray,
    lon: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    chunks: tuple[int, int] | None,
    dtype: Any,
    **kwargs: Any,
) -> xr.DataArray:
    """``func(source, rows_of_block, cols_of_block, **kwargs)`` as one dask task per output block
    (``chunks``: its lat, lon sizes): every task reads the source's single lat/lon chunk (per chunk
    of its other axes) and the slices of ``rows`` and ``cols`` (one entry, or one row of entries,
    per output cell) for its block, so the graph grows with the output blocks, not the cells."""
    import warnings

    import dask.array as dsa
    from dask.array.core import PerformanceWarning

    other = [d for d in da.dims if d not in ("lat", "lon")]
    src = da.transpose(*other, "lat", "lon").chunk({"lat": -1, "lon": -1}).data
    cy, cx = chunks or (len(lat), len(lon))
    letters = "".join(chr(ord("t") + i) for i in range(len(other)))
    row_chunks, col_chunks = (cy, *rows.shape[1:]), (cx, *cols.shape[1:])
    with warnings.catch_warnings():
        # Many output blocks from one small source block is the point here, not a mistake.
        warnings.simplefilter("ignore", PerformanceWarning)
        data = dsa.blockwise(
            func,
            letters + "yx",
            src,
            letters + "ab",
            dsa.from_array(rows, chunks=row_chunks),
            "yk"[: rows.ndim],
            dsa.from_array(cols, chunks=col_chunks),
            "xk"[: cols.ndim],
            concatenate=True,
            dtype=dtype,
            **kwargs,
        )
    coords = {"lat": ("lat", lat), "lon": ("lon", lon)}
    return xr.DataArray(
        data,
        dims=(*other, "lat", "lon"),
        coords={**{d: da[d] for d in other if d in da.coords}, **coords},
        attrs=da.attrs,
    )


def _pick(src: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    return src[..., iy, :][..., ix]


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """``(n, 2)`` lower and upper edges of regular cells with these centres (either order)."""
    centres = np.asarray(centres, float)
    half = float(np.median(np.abs(np.diff(centres)))) / 2 if centres.size > 1 else 0.5
    return np.stack([centres - half, centres + half], axis=1)


def _lat_weights(tgt: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Area on the unit sphere (per radian of longitude) shared by target and source latitude bands."""
    lo = np.clip(np.maximum(tgt[:, None, 0], src[None, :, 0]), -90, 90)
    hi = np.clip(np.minimum(tgt[:, None, 1], src[None, :, 1]), -90, 90)
    return np.where(hi > lo, np.sin(np.deg2rad(hi)) - np.sin(np.deg2rad(lo)), 0.0)


def _lon_weights(tgt: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Degrees of longitude shared by target and source cells, across the 0/360 seam."""
    w = np.zeros((tgt.shape[0], src.shape[0]))
    for shift in (-360.0, 0.0, 360.0):
        lo = np.maximum(tgt[:, None, 0], src[None, :, 0] + shift)
        hi = np.minimum(tgt[:, None, 1], src[None, :, 1] + shift)
        w += np.clip(hi - lo, 0.0, None)
    return w


def _conservative_block(
    src: np.ndarray, tlat: np.ndarray, tlon: np.ndarray, *, slat: np.ndarray, slon: np.ndarray
) -> np.ndarray:
    """One output block: each target cell the area-weighted mean of the valid source cells it
    overlaps (weights: shared area on the sphere), NaN where it overlaps none."""
    wy, wx = _lat_weights(tlat, slat), _lon_weights(tlon, slon)
    rows, cols = np.flatnonzero(wy.any(axis=0)), np.flatnonzero(wx.any(axis=0))
    part = src[..., rows, :][..., cols]
    wy, wx = wy[:, rows], wx[:, cols]
    valid = np.isfinite(part)
    num = np.matmul(np.matmul(wy, np.where(valid, part, 0.0)), wx.T)
    den = np.matmul(np.matmul(wy, valid.astype("float64")), wx.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, np.nan)
    return out.astype(src.dtype if src.dtype.kind == "f" else "float64")


def regrid_conservative(
    da: xr.DataArray, lat: np.ndarray, lon: np.ndarray, *, chunks: tuple[int, int] | None = None
) -> xr.DataArray:
    """First-order conservative regridding of a regular lat/lon field onto the cells centred at
    ``lat`` x ``lon`` (any order; longitudes in either convention): each target cell the mean of
    the source cells it overlaps, weighted by the shared area on the sphere; missing source cells
    skipped. Lazy on dask input, in the pattern of :func:`regrid_nearest`: one task per output
    block (``chunks``), each reading the source's single lat/lon chunk and using only the rows and
    columns its cells overlap, so a prediction region computes its own cells and nothing else."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    slat, slon = cell_edges(da["lat"].values), cell_edges(da["lon"].values)
    tlat, tlon = cell_edges(lat), cell_edges(lon)
    other = [d for d in da.dims if d not in ("lat", "lon")]
    coords = {"lat": ("lat", lat), "lon": ("lon", lon)}
    out_coords: dict[Any, Any] = {**{d: da[d] for d in other if d in da.coords}, **coords}
    if not da.chunks:
        data = _conservative_block(da.transpose(*other, "lat", "lon").values, tlat, tlon, slat=slat, slon=slon)
        return xr.DataArray(data, dims=(*other, "lat", "lon"), coords=out_coords, attrs=da.attrs)
    dtype = da.dtype if da.dtype.kind == "f" else np.dtype("float64")
    return _per_output_block(
        _conservative_block, da, lat, lon, tlat, tlon, chunks=chunks, dtype=dtype, slat=slat, slon=slon
    )


def regrid_land_mean(
    da: xr.DataArray, land: xr.DataArray, lat: np.ndarray, lon: np.ndarray
) -> tuple[xr.DataArray, xr.DataArray]:
    """A flux per m2 of land (``da``: ..., lat, lon) and its land fraction (``land``: lat, lon)
    brought onto the cells centred at ``lat`` x ``lon`` so that totals are kept: each target cell's
    mean over the land of the source cells with values it overlaps (weights: the area shared on
    the sphere x the land fraction), and the target cell's fraction of that land (source cells with a
    value at any step). As a model's grid holds a flux with its ``sftlf``."""
    land = land.fillna(0.0)
    valid = da.notnull()
    num = regrid_conservative((da * land).where(valid), lat, lon)
    den = regrid_conservative(land.where(valid).transpose(*da.dims), lat, lon)
    mean = num / den.where(den > 0)
    steps = [d for d in valid.dims if d not in ("lat", "lon")]
    anywhere = valid.any(steps) if steps else valid
    fraction = regrid_conservative(land.where(anywhere, 0.0).transpose("lat", "lon"), lat, lon).clip(0.0, 1.0)
    return mean.transpose(*da.dims), fraction


def grid_zone_factors(cubes: dict[str, xr.Dataset], factors: tuple[str, ...] | None = None) -> xr.Dataset:
    """Long-term zoning factors of every cell of the MODIS-like grid, lazily.

    ``cubes`` holds decoded, canonical Datasets by catalog entry: ``era5`` (t2m, tp on
    its own grid), ``mod09a1`` (ndvi, lswi), ``static`` (static layers, e.g. elevation, soc). Names
    match the site factors of the extract stage (``t2m_mean``, ``tp_mean``, ``ndvi_mean``,
    ``lswi_growing_season``, and the static layers by name, on the MODIS-like grid). ``factors``:
    only these (the zones' own; default: every one the cubes give).
    """
    from fluxmap.science.extract import to_periods

    modis = cubes["mod09a1"]
    lat, lon = modis["lat"].values, modis["lon"].values
    era = cubes["era5"][["t2m", "tp"]]
    space = (modis.chunksizes["lat"][0], modis.chunksizes["lon"][0]) if modis.chunks else None
    from fluxmap.science.regrid import regrid_to  # conservative onto cells larger than ERA5's

    static = cubes["static"]
    wanted = set(factors) if factors is not None else None

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    out = xr.Dataset()
    if want("t2m_mean") or want("tp_mean"):
        means = regrid_to(era.mean("time"), lat, lon, chunks=space)
        out = out.assign({k: means[k[:-5]] for k in ("t2m_mean", "tp_mean") if want(k)})
    if want("ndvi_mean"):
        out["ndvi_mean"] = _time_mean(modis["ndvi"])
    if want("lswi_growing_season"):
        era_p = to_periods(era) if pd.Series(era.time.values).diff().median() < pd.Timedelta(days=8) else era
        t2m_8day = regrid_to(era_p[["t2m"]], lat, lon, chunks=space)["t2m"].sel(time=modis["time"])
        out["lswi_growing_season"] = growing_season_mean(modis["lswi"], t2m_8day)
    for name in static.data_vars:
        if set(static[name].dims) == {"lat", "lon"} and want(str(name)) and name != "land_fraction":
            out[name] = static[name]
    missing = sorted((wanted or set()) - set(out.data_vars))
    if missing:
        raise KeyError(f"zone factors {missing} are not in the catalog's era5, mod09a1 or static entries")
    if "land_fraction" in cubes["static"]:
        out = out.where(cubes["static"]["land_fraction"] > 0.5)
    return out.drop_vars([c for c in out.coords if c not in ("lat", "lon")])
