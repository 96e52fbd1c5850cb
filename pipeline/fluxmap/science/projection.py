"""Projection under a changed climate by the delta-change method: the baseline's predictors with a
warming added to every temperature and precipitation scaled per calendar month, the rest (surface
reflectance, greenness, productivity, soil, terrain) held at the baseline, as the delta method does
(e.g. Hay, Wilby & Leavesley 2000, J. Am. Water Resour. Assoc. 36:387). Applied to the decoded
catalog cubes, before the 8-day means, annual statistics and zones are derived from them, so every
derived predictor follows. Lazy: nothing is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["PRECIPITATION", "TEMPERATURE", "Delta", "FieldDelta", "apply_delta", "apply_field_delta", "monthly_deltas"]

TEMPERATURE = ("t2m", "lst_day", "lst_night", "tair", "tsoil")
"""Canonical temperatures a delta warms (K or degC: a difference is the same in both)."""
PRECIPITATION = ("tp", "precip")
"""Canonical precipitation a delta scales."""


@dataclass(frozen=True)
class Delta:
    """A delta change: ``warming_k`` added to every temperature, precipitation times
    ``precipitation_factor`` (one factor, or twelve, January to December)."""

    warming_k: float = 2.0
    precipitation_factor: tuple[float, ...] = (0.9,)

    def __post_init__(self) -> None:
        f = self.precipitation_factor
        if len(f) not in (1, 12):
            raise ValueError(f"precipitation_factor: one factor or twelve (per month), not {len(f)}: {list(f)}")
        if any(not np.isfinite(v) or v < 0 for v in f) or not np.isfinite(self.warming_k):
            raise ValueError(f"a delta needs a finite warming and finite factors >= 0: {self}")

    def monthly(self) -> np.ndarray:
        """The precipitation factor of each calendar month (12 values)."""
        return np.resize(np.asarray(self.precipitation_factor, dtype="float64"), 12)

    def describe(self) -> str:
        f = self.precipitation_factor
        p = f"x {f[0]:g}" if len(f) == 1 else "x " + "/".join(f"{v:g}" for v in f) + " (Jan-Dec)"
        return f"{self.warming_k:+g} K, precipitation {p}"

    def as_dict(self) -> dict[str, Any]:
        return {"warming_k": self.warming_k, "precipitation_factor": list(self.precipitation_factor)}


def apply_delta(
    cubes: dict[str, xr.Dataset], delta: Delta | FieldDelta
) -> tuple[dict[str, xr.Dataset], dict[str, list[str]]]:
    """The cubes under ``delta`` and what changed: ``{"warmed": [...], "scaled": [...], "held":
    [...]}`` (entry/variable names). A uniform :class:`Delta` scales precipitation by its month's
    factor (a variable without a time axis by the mean factor); a :class:`FieldDelta` changes each
    cell by the nearest model cell's monthly delta."""
    out: dict[str, xr.Dataset] = {}
    changed: dict[str, list[str]] = {"warmed": [], "scaled": [], "held": []}
    for entry, ds in cubes.items():
        new = {}
        for name, da in ds.data_vars.items():
            key = f"{entry}/{name}"
            if name in TEMPERATURE:
                new[name] = _warm(da, delta)
                changed["warmed"].append(key)
            elif name in PRECIPITATION:
                new[name] = _scale(da, delta)
                changed["scaled"].append(key)
            elif "time" in da.dims:
                changed["held"].append(key)
        out[entry] = ds.assign(new) if new else ds
    return out, changed


def _warm(da: xr.DataArray, delta: Delta | FieldDelta) -> xr.DataArray:
    if isinstance(delta, FieldDelta):
        return apply_field_delta(da, delta.fields["t2m_delta"], kind="add")
    return (da + delta.warming_k).assign_attrs(da.attrs)


def _scale(da: xr.DataArray, delta: Delta | FieldDelta) -> xr.DataArray:
    if isinstance(delta, FieldDelta):
        return apply_field_delta(da, delta.fields["tp_ratio"], kind="multiply")
    factors = delta.monthly()
    f: xr.DataArray | float = float(factors.mean())
    if "time" in da.dims:
        month = da["time"].dt.month.values - 1
        f = xr.DataArray(factors[month], coords={"time": da["time"]}, dims="time")
    return (da * f).astype(da.dtype).assign_attrs(da.attrs)


@dataclass(frozen=True)
class FieldDelta:
    """A delta change that varies by cell and calendar month, from a climate model's future and
    historical runs (:func:`monthly_deltas`): ``fields`` holds ``t2m_delta`` (K) and ``tp_ratio``
    on ``(month, lat, lon)`` of the model's grid; each map cell takes the nearest model cell."""

    fields: xr.Dataset
    label: str

    def describe(self) -> str:
        return self.label

    def as_dict(self) -> dict[str, Any]:
        import hashlib

        digest = hashlib.sha256()
        for name in sorted(map(str, self.fields.data_vars)):
            digest.update(np.ascontiguousarray(self.fields[name].values).tobytes())
        return {"label": self.label, "fields_sha256": digest.hexdigest()}


def _years(ds: xr.Dataset, years: tuple[int, int], where: str) -> xr.Dataset:
    """``ds`` over the calendar years ``years`` (inclusive), every month of them present."""
    if "time" not in ds.dims or not (
        np.issubdtype(ds["time"].dtype, np.datetime64) or ds["time"].dtype == object
    ):  # cftime objects for non-standard calendars
        raise ValueError(f"{where}: the time axis could not be decoded (calendar {ds['time'].attrs.get('calendar')!r})")
    year = ds["time"].dt.year
    have = sorted(set(int(y) for y in np.unique(year.values)))
    want = list(range(int(years[0]), int(years[1]) + 1))
    missing = [y for y in want if y not in have]
    if missing:
        raise ValueError(f"{where}: years {years[0]}-{years[1]} requested, {len(missing)} missing "
                         f"(e.g. {missing[:3]}); the entry spans {have[0]}-{have[-1]}")  # fmt: skip
    return ds.sel(time=(year >= years[0]) & (year <= years[1]))


def monthly_deltas(
    historical: xr.Dataset,
    future: xr.Dataset,
    historical_years: tuple[int, int],
    future_years: tuple[int, int],
    *,
    names: tuple[str, str] = ("historical", "future"),
    min_precipitation: float = 0.01,
) -> xr.Dataset:
    """Per calendar month and model cell: ``t2m_delta`` = the future period's mean ``t2m`` minus the
    historical period's (K), ``tp_ratio`` = the future period's mean ``tp`` over the historical's,
    1 where the historical mean is below ``min_precipitation`` mm d-1 (a ratio of near-zeros says
    nothing). The inputs are canonical (``t2m`` K, ``tp`` mm d-1, as a catalog's canonical entry
    decodes them) on any calendar; computed (the model grid is small)."""
    out = {}
    parts = []
    for ds, years, where in ((historical, historical_years, names[0]), (future, future_years, names[1])):
        for v in ("t2m", "tp"):
            if v not in ds:
                raise ValueError(f"{where}: no canonical {v!r} (map the file's variable to it in the catalog entry)")
        parts.append(_years(ds[["t2m", "tp"]], years, where).groupby("time.month").mean("time").compute())
    hist, fut = parts
    out["t2m_delta"] = (fut.t2m - hist.t2m).assign_attrs(units="K")
    ratio = (fut.tp / hist.tp).where(hist.tp >= min_precipitation, 1.0)
    out["tp_ratio"] = ratio.assign_attrs(units="1")
    fields = xr.Dataset(out)
    lon = ((fields["lon"] + 180.0) % 360.0) - 180.0
    return fields.assign_coords(lon=lon).sortby("lon").sortby("lat")


def _field_on(block: xr.DataArray, field: xr.DataArray) -> np.ndarray:
    """``field`` (month, lat, lon) at the block's cells (nearest) and months: the block's shape."""
    f = field.sel(lat=block["lat"], lon=block["lon"], method="nearest")
    if "time" not in block.dims:
        return f.mean("month").transpose(*block.dims).values
    month = block["time"].dt.month.values - 1
    return f.isel(month=xr.DataArray(month, dims="time")).transpose(*block.dims).values


def apply_field_delta(da: xr.DataArray, field: xr.DataArray, *, kind: str) -> xr.DataArray:
    """``da`` plus (``kind`` ``add``) or times (``multiply``) ``field`` at each of its cells and
    months, block by block (lazy; memory bounded by ``da``'s chunks)."""

    def one(block: xr.DataArray) -> xr.DataArray:
        f = _field_on(block, field)
        values = block.values + f if kind == "add" else block.values * f
        return block.copy(data=values.astype(block.dtype))

    if da.chunks is None:
        return one(da).assign_attrs(da.attrs)
    return xr.map_blocks(one, da, template=da).assign_attrs(da.attrs)
