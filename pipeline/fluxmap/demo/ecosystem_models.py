"""Three synthetic "ecosystem model" outputs of the demo world, each with a known fault, written as
modellers write them, for ``fluxmap evaluate`` (issue 28).

Each is the world's noise-free soil respiration (SR) and heterotrophic respiration (HR, ``rh``)
with one fault built in:

- ``q10_high`` (FLUXCOM-style: 8-day, the world's grid, g C m-2 d-1, proleptic Gregorian): the
  temperature sensitivity too high: both fluxes times ``Q10_FACTOR`` ** ((T - 15 C) / 10), T the
  daily 2 m air temperature of the world's ERA5-like cube, averaged over each 8-day period;
- ``hr_share_high`` (CMIP-style: monthly, the world's grid, longitudes 0..360, kg m-2 s-1, standard
  calendar): SR right, but HR's share of it ``SHARE_SHIFT`` too high (at most 0.95);
- ``coarse_noleap`` (CMIP-style: monthly, 1.5 deg, ``noleap`` calendar, kg m-2 s-1, longitudes
  0..360): both fluxes right, but as means over 1.5 deg cells (the land's, area-weighted).

The faults are what the evaluation must find; nothing here reads the site observations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config_evaluate import ProductConfig
from fluxmap.science.features import regrid_land_mean
from fluxmap.science.periods import period_bounds

__all__ = ["COARSE_DEG", "Q10_FACTOR", "SHARE_SHIFT", "ecosystem_models", "write_ecosystem_models"]

Q10_FACTOR = 1.6
"""How much the ``q10_high`` model's Q10 exceeds the world's (a factor per 10 K)."""
T_REF_C = 15.0
"""Temperature at which the ``q10_high`` model is right."""
SHARE_SHIFT = 0.15
"""How much too high the ``hr_share_high`` model's HR/SR is."""
COARSE_DEG = 1.5
"""Grid spacing of ``coarse_noleap``."""

_KG_M2_S = 1.0 / 86400.0e3  # 1 g m-2 d-1 in kg m-2 s-1
_NOLEAP_CUM = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])


def _truth(root: Path) -> xr.Dataset:
    ds = xr.open_zarr(root / "truth" / "truth.zarr", consolidated=None)
    return ds[["sr", "rh", "land_fraction"]].load()


def _temperature_factor(root: Path, truth: xr.Dataset, bounds: np.ndarray) -> np.ndarray:
    """Per 8-day period and cell: the mean over its days of Q10_FACTOR ** ((T - 15) / 10)."""
    era = xr.open_zarr(root / "era5" / "era5_daily.zarr", consolidated=False)["2m_temperature"]
    lon = ((era["longitude"].values + 180.0) % 360.0) - 180.0
    rows = np.abs(era["latitude"].values[None, :] - truth["lat"].values[:, None]).argmin(axis=1)
    cols = np.abs(lon[None, :] - truth["lon"].values[:, None]).argmin(axis=1)
    t = era.isel(latitude=xr.DataArray(rows, dims="lat"), longitude=xr.DataArray(cols, dims="lon"))
    days = pd.DatetimeIndex(t["time"].values)
    out = np.empty((len(bounds), truth.sizes["lat"], truth.sizes["lon"]), dtype="float64")
    for i, (a, b) in enumerate(bounds):
        sel = np.flatnonzero((days >= a) & (days < b))
        tc = t.isel(time=sel).values - 273.15
        out[i] = np.mean(Q10_FACTOR ** ((tc - T_REF_C) / 10.0), axis=0)
    return out


def _monthly(values: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Day-weighted monthly means of 8-day values (time first), and the months' starts."""
    months = pd.date_range(pd.Timestamp(bounds[0, 0]), pd.Timestamp(bounds[-1, 1]), freq="MS", inclusive="left")
    m0, m1 = months.values, (months + pd.offsets.MonthBegin(1)).values
    a, b = bounds[:, 0], bounds[:, 1]
    overlap = np.maximum(np.minimum(m1[:, None], b[None, :]) - np.maximum(m0[:, None], a[None, :]), np.timedelta64(0))
    w = overlap / np.timedelta64(1, "D")
    w = w / w.sum(axis=1, keepdims=True)
    flat = values.reshape(values.shape[0], -1)
    good = np.isfinite(flat)
    mean = (w @ np.where(good, flat, 0.0)) / np.where(w @ good > 0, w @ good, np.nan)
    return mean.reshape(len(months), *values.shape[1:]), months


_VERSION = 2
"""How the files are made (with the world's hash, the key of the cached files): 2, aggregated by
``science.features.regrid_land_mean``."""


def _coarse(values: np.ndarray, lat: np.ndarray, lon: np.ndarray, land: np.ndarray) -> tuple:
    """Conservative aggregation onto COARSE_DEG cells (time first): each coarse cell's mean over the
    land its fine cells with values hold (each fine cell split by the area it shares with it), the
    coarse cell's fraction of that land, and the coarse centres."""
    dlat, dlon = abs(float(lat[1] - lat[0])), abs(float(lon[1] - lon[0]))
    centres = []
    for c, d in ((lat, dlat), (lon, dlon)):
        first = np.floor((c.min() - d / 2.0) / COARSE_DEG) * COARSE_DEG
        last = np.ceil((c.max() + d / 2.0) / COARSE_DEG) * COARSE_DEG
        edges = np.arange(first, last + COARSE_DEG / 2.0, COARSE_DEG)
        centres.append((edges[:-1] + edges[1:]) / 2.0)
    clat, clon = centres
    da = xr.DataArray(values, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})
    mean, frac = regrid_land_mean(da, xr.DataArray(land, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}),
                                  clat, clon)  # fmt: skip
    return mean.values, frac.values, (clat, clon)


def _write(path: Path, fields: dict[str, np.ndarray], land: np.ndarray, lat: np.ndarray, lon: np.ndarray,
           edges: np.ndarray, calendar: str, units: str, title: str) -> Path:  # fmt: skip
    """A CF file: ``fields`` (time, lat, lon) with time as days since 2019-01-01 in ``calendar``
    (``edges``: day numbers of the steps' bounds), longitudes written as given, and ``sftlf`` (%),
    the land fraction the fluxes stand for (``land``, lat x lon)."""
    order = np.argsort(lat)
    scale = _KG_M2_S if units == "kg m-2 s-1" else 1.0
    ds = xr.Dataset(
        {
            name: (("time", "lat", "lon"), (v[:, order] * scale).astype("float32"), {"units": units})
            for name, v in fields.items()
        },
        coords={
            "time": (
                "time",
                (edges[:-1] + edges[1:]) / 2.0,
                {"units": "days since 2019-01-01", "calendar": calendar, "bounds": "time_bnds"},
            ),  # fmt: skip
            "lat": ("lat", lat[order], {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    ds["time_bnds"] = (("time", "bnds"), np.stack([edges[:-1], edges[1:]], axis=1))
    ds["sftlf"] = (
        ("lat", "lon"),
        (100.0 * land[order]).astype("float32"),
        {"units": "%", "standard_name": "land_area_fraction"},
    )
    ds.attrs = {"title": title, "Conventions": "CF-1.8", "source": "fluxmap.demo.ecosystem_models"}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path)
    return path


def _days(times: pd.DatetimeIndex, calendar: str) -> np.ndarray:
    """Day numbers since 2019-01-01 in ``calendar`` (``standard`` or ``noleap``)."""
    if calendar == "noleap":
        return np.asarray((times.year - 2019) * 365 + _NOLEAP_CUM[times.month - 1] + times.day - 1, dtype="float64")
    return np.asarray((times - pd.Timestamp("2019-01-01")).days, dtype="float64")


def write_ecosystem_models(root: str | Path, out: str | Path) -> tuple[ProductConfig, ...]:
    """Write the three products of the world at ``root`` into ``out``; their configurations."""
    root, out = Path(root), Path(out)
    truth = _truth(root)
    bounds = period_bounds(truth["time"].values)
    sr, rh = truth["sr"].values.astype("float64"), truth["rh"].values.astype("float64")
    lat, lon = truth["lat"].values, truth["lon"].values
    ends = pd.DatetimeIndex(np.r_[bounds[:, 0], bounds[-1, 1]])

    factor = _temperature_factor(root, truth, bounds)
    land = np.where(np.isfinite(sr[0]), np.nan_to_num(truth["land_fraction"].values.astype("float64")), 0.0)
    _write(out / "q10_high.nc", {"sr": sr * factor, "rh": rh * factor}, land, lat, lon, _days(ends, "standard"),
                 "proleptic_gregorian", "g m-2 d-1", "demo ecosystem model: temperature sensitivity too high")  # fmt: skip

    share = np.minimum(np.where(sr > 0, rh / np.where(sr > 0, sr, 1.0), np.nan) + SHARE_SHIFT, 0.95)
    (m_sr, m_rh), months = (_monthly(v, bounds)[0] for v in (sr, sr * share)), _monthly(sr, bounds)[1]
    edges = months.append(pd.DatetimeIndex([months[-1] + pd.offsets.MonthBegin(1)]))
    lon360 = np.where(lon < 0, lon + 360.0, lon)
    o = np.argsort(lon360)
    _write(out / "hr_share_high.nc", {"rs": m_sr[..., o], "rh": m_rh[..., o]}, land[:, o], lat, lon360[o],
                   _days(edges, "standard"), "standard", "kg m-2 s-1", "demo ecosystem model: HR share of SR too high")  # fmt: skip

    true_sr, true_rh = (_monthly(v, bounds)[0] for v in (sr, rh))
    (c_sr, c_land, (clat, clon)), (c_rh, _, _) = _coarse(true_sr, lat, lon, land), _coarse(true_rh, lat, lon, land)
    clon360 = np.where(clon < 0, clon + 360.0, clon)
    o = np.argsort(clon360)
    _write(out / "coarse_noleap.nc", {"rs": c_sr[..., o], "rh": c_rh[..., o]}, c_land[:, o], clat, clon360[o],
                    _days(edges, "noleap"), "noleap", "kg m-2 s-1", "demo ecosystem model: 1.5 deg, noleap, monthly")  # fmt: skip
    return _configs(out)


def ecosystem_models(root: str | Path) -> tuple[ProductConfig, ...]:
    """The world's three products in ``root/ecosystem_models``, written once per world (a record of
    the world's manifest's checksum says which world they were made from)."""
    import hashlib
    import json

    root = Path(root)
    out = root / "ecosystem_models"
    world = hashlib.sha256((root / "world.json").read_bytes()).hexdigest()
    record = out / "made_from.json"
    names = ("q10_high", "hr_share_high", "coarse_noleap")
    made_from = {"world_sha256": world, "version": _VERSION}
    if record.is_file() and json.loads(record.read_text()) == made_from:
        if all((out / f"{n}.nc").is_file() for n in names):
            return _configs(out)
    made = write_ecosystem_models(root, out)
    record.write_text(json.dumps(made_from))
    return made


def _configs(out: Path) -> tuple[ProductConfig, ...]:
    return (
        ProductConfig("q10_high", str(out / "q10_high.nc"), (("rh", "rh"), ("sr", "sr"))),
        ProductConfig("hr_share_high", str(out / "hr_share_high.nc"), (("rh", "rh"), ("sr", "rs"))),
        ProductConfig("coarse_noleap", str(out / "coarse_noleap.nc"), (("rh", "rh"), ("sr", "rs"))),
    )
