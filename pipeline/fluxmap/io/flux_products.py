"""Gridded flux products as modellers write them, opened for :mod:`fluxmap.science.evaluate`.

A product is a NetCDF file or a Zarr store holding one or more carbon fluxes on a regular
latitude-longitude grid: CMIP / TRENDY output (``rh``, ``ra``, ``gpp``, ``nee``, ``nbp`` in
kg m-2 s-1 of carbon, calendars ``noleap``, ``360_day``, ``proleptic_gregorian``, longitudes
0..360), FLUXCOM-style files (g C m-2 d-1) or fluxmap's own store. It is opened lazily and
returned in fluxmap's conventions:

- the variables named as fluxmap's targets (``sr``, ``rh``, ``ra``, ``nee``, ...), in
  g C m-2 d-1 (CF ``g m-2 d-1``), converted by the same unit table as the catalogs'
  (:func:`fluxmap.io.decoders.to_units`), with the configured sign (``nbp`` = -``nee``);
- latitudes increasing, longitudes in -180..180 increasing;
- each time step as the half-open interval ``[start, end)`` of real (proleptic Gregorian) dates,
  from the file's time bounds, decoded with cftime in the file's calendar, or, without bounds,
  from the step the times imply (monthly, 8-day, annual). A 360-day or no-leap calendar's month
  is the real calendar month: a rate's mean over a month does not depend on how long the model
  thinks it is.

Every refusal (no such file or variable, no units or units fluxmap cannot convert, a calendar
cftime does not know, a time step it cannot tell) names the product, the file and the variable.
"""

from __future__ import annotations

import calendar as _calendar
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.io.catalog_schema import CatalogError
from fluxmap.io.decoders import to_units
from fluxmap.science.products import FLUX_UNITS

__all__ = ["ProductError", "open_product"]


class ProductError(ValueError):
    """A flux product that cannot be evaluated as given (the message names file and variable)."""


_LAT = ("lat", "latitude")
_LON = ("lon", "longitude")


def _open(path: Path, where: str) -> xr.Dataset:
    if not path.exists():
        raise ProductError(f"{where}: no such file or store")
    try:
        if path.is_dir():
            return xr.open_zarr(path, decode_times=False, consolidated=None)
        return xr.open_dataset(path, decode_times=False, chunks={})
    except (OSError, ValueError, KeyError) as e:
        raise ProductError(f"{where}: cannot be opened as NetCDF or Zarr ({type(e).__name__}: {e})") from e


def _spatial(ds: xr.Dataset, where: str) -> xr.Dataset:
    """``lat``/``lon`` named so, latitudes increasing, longitudes -180..180 increasing (lazy)."""
    lat = next((n for n in _LAT if n in ds.dims), None)
    lon = next((n for n in _LON if n in ds.dims), None)
    if lat is None or lon is None:
        raise ProductError(
            f"{where}: no latitude/longitude dimensions (looked for {_LAT} and {_LON}; it has {tuple(ds.dims)})"
        )
    try:
        ds = ds.rename({lat: "lat", lon: "lon"})
    except ValueError as e:
        raise ProductError(f"{where}: cannot name its dimensions lat/lon ({e})") from e
    la, lo = ds["lat"].values, ds["lon"].values
    if np.nanmin(la) < -90.01 or np.nanmax(la) > 90.01 or np.nanmin(lo) < -360 or np.nanmax(lo) > 540:
        raise ProductError(f"{where}: latitudes/longitudes out of range: not degrees on a regular grid")
    wrapped = ((lo + 180.0) % 360.0) - 180.0
    ds = ds.assign_coords(lon=("lon", wrapped, ds["lon"].attrs)).sortby("lon")
    # A cyclic column (0 and 360, or -180 and 180) wraps onto another: keep one.
    ds = ds.isel(lon=np.flatnonzero(np.r_[True, np.diff(ds["lon"].values) > 1e-9]))
    return ds.sortby("lat")


def _real(t: Any) -> pd.Timestamp:
    """A cftime date (any calendar) as the real date with the same year, month and day (day 30 of
    February in a 360-day calendar: the month's last day)."""
    day = min(t.day, _calendar.monthrange(t.year, t.month)[1])
    return pd.Timestamp(t.year, t.month, day, t.hour, t.minute)


def _decode(values: np.ndarray, units: str, cal: str, where: str) -> list[pd.Timestamp]:
    import cftime

    try:
        dates = cftime.num2date(np.asarray(values, dtype="float64"), units, calendar=cal)
    except (ValueError, TypeError) as e:
        raise ProductError(f"{where}: time {units!r} in calendar {cal!r} cannot be decoded by cftime: {e}") from e
    return [_real(t) for t in np.atleast_1d(dates)]


def _implied_steps(starts: list[pd.Timestamp], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Step intervals from the times alone: monthly (times anywhere in their month), annual, or
    8-day (times on the MODIS calendar's period starts)."""
    from fluxmap.science.periods import period_bounds, period_start_of

    t = pd.DatetimeIndex(starts)
    if len(t) < 2:
        raise ProductError(f"{where}: one time step and no time bounds: give the time axis a 'bounds' variable")
    gaps = np.diff(t.values).astype("timedelta64[D]").astype(int)
    if np.all((gaps >= 28) & (gaps <= 31)):
        month = t.to_period("M")
        return month.start_time.values, (month + 1).start_time.values
    if np.all((gaps >= 360) & (gaps <= 366)):
        year = t.to_period("Y")
        return year.start_time.values, (year + 1).start_time.values
    if np.all(gaps <= 8) and (period_start_of(t) == t.normalize()).all():
        bounds = period_bounds(t.normalize())
        return bounds[:, 0], bounds[:, 1]
    raise ProductError(
        f"{where}: time steps of {sorted(set(gaps.tolist()))[:5]} days are neither monthly, annual nor "
        "MODIS 8-day: give the time axis a 'bounds' variable"
    )


_BOUNDS = ("time_bnds", "time_bounds", "time_bound")
"""Time-bounds variables looked for when the time axis does not name its own."""


def _steps(ds: xr.Dataset, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Each time step's real ``[start, end)``."""
    if "time" not in ds.dims:
        raise ProductError(f"{where}: no 'time' dimension (dims {tuple(ds.dims)})")
    time = ds["time"]
    units = time.attrs.get("units")
    if units is None:
        if np.issubdtype(time.dtype, np.datetime64):  # a store written with decoded times
            return _implied_steps(list(pd.DatetimeIndex(time.values)), where)
        raise ProductError(f"{where}: variable 'time' has no units (e.g. 'days since 1850-01-01')")
    cal = str(time.attrs.get("calendar", "standard"))
    tw = f"{where}: variable 'time'"
    # A CF climatology names its bounds ``climatology`` (CF-1.10 sect. 7.4).
    bounds = time.attrs.get("bounds") or time.attrs.get("climatology")
    bounds = bounds or next((b for b in _BOUNDS if b in ds.variables), None)
    if bounds is not None and bounds in ds.variables:
        b = ds[bounds].values
        if b.shape != (ds.sizes["time"], 2):
            raise ProductError(f"{where}: time bounds {bounds!r} are {ds[bounds].dims}, not (time, 2)")
        start = _decode(b[:, 0], units, cal, tw)
        end = _decode(b[:, 1], units, cal, tw)
        return pd.DatetimeIndex(start).values, pd.DatetimeIndex(end).values
    return _implied_steps(_decode(time.values, units, cal, tw), where)


_LAND = ("sftlf", "landfrac", "land_fraction", "landmask")
"""Land-fraction variables a product may carry (CMIP's ``sftlf`` in %, the others 0..1)."""


def _land_fraction(raw: xr.Dataset, where: str) -> xr.DataArray | None:
    """The product's land fraction of each cell (0..1), when it carries one (``sftlf`` in %)."""
    name = next((n for n in _LAND if n in raw.variables), None)
    if name is None:
        return None
    da = raw[name]
    if "time" in da.dims:
        da = da.isel(time=0, drop=True)
    if da.ndim != 2:
        raise ProductError(f"{where}: variable {name!r} (land fraction) must be (lat, lon), has {da.dims}")
    factor = 0.01 if name == "sftlf" and str(da.attrs.get("units", "%")) == "%" else 1.0
    return (da.astype("float32") * np.float32(factor)).clip(0, 1)


def open_product(
    label: str,
    path: str | Path,
    variables: tuple[tuple[str, str], ...],
    *,
    signs: tuple[tuple[str, float], ...] = (),
    units: tuple[tuple[str, str], ...] = (),
    climatology: bool = False,
) -> xr.Dataset:
    """One product (the fields of a run config's ``evaluate.products`` entry,
    :class:`fluxmap.config_evaluate.ProductConfig`: ``variables`` as (fluxmap name, name in the
    file), ``signs`` and declared ``units`` per fluxmap name, ``climatology``) in fluxmap's names,
    units, grid and time conventions (lazy), with ``start``/``end`` coordinates along ``time``,
    ``land_fraction`` (0..1) when the product carries one (``sftlf``, ``landfrac``), and attributes
    ``label``, ``source``, ``climatology``."""
    path = Path(path)
    where = f"product {label!r} ({path})"
    raw = _open(path, where)
    declared, factors = dict(units), dict(signs)
    out = {}
    for name, var in variables:
        if var not in raw.data_vars:
            have = sorted(map(str, raw.data_vars))
            raise ProductError(f"{where}: variable {var!r} (for {name}) not in the file; it has {have}")
        try:
            da = to_units(
                raw[var],
                FLUX_UNITS,
                where,
                declared=declared.get(name),
                name=name,
                setting=("the product's units", "the product's units setting"),
            )
        except CatalogError as e:
            raise ProductError(str(e)) from e
        out[name] = da * np.float32(factors.get(name, 1.0))
        given = raw[var].attrs.get("units", declared.get(name))
        out[name].attrs = {"units": FLUX_UNITS, "source_variable": var, "source_units": str(given)}
    land = _land_fraction(raw, where)
    if land is not None:
        out["land_fraction"] = land
    ds = _spatial(xr.Dataset(out, coords={c: raw[c] for c in raw[variables[0][1]].coords}), where)
    start, end = _steps(raw, where)
    ds = ds.assign_coords(time=("time", start), start=("time", start), end=("time", end))
    odd = {n: ds[n].dims for n in out if n != "land_fraction" and set(ds[n].dims) != {"time", "lat", "lon"}}
    if odd:
        raise ProductError(
            f"{where}: variables must be (time, lat, lon); {odd} (select a level or sum the layers first)"
        )
    climatology = (
        climatology
        or "climatology" in raw["time"].attrs
        or str(raw.attrs.get("fluxmap_climatological_year", "")).lower() == "true"
    )
    if climatology and (end.max() - start.min()) > np.timedelta64(366, "D"):
        raise ProductError(
            f"{where}: a climatology must span one year; its steps run from {pd.Timestamp(start.min()):%Y-%m-%d} "
            f"to {pd.Timestamp(end.max()):%Y-%m-%d}"
        )
    return ds.transpose("time", "lat", "lon", ...).assign_attrs(
        label=label, source=str(path), climatology=str(climatology).lower()
    )
