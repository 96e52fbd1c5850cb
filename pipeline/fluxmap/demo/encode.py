"""The demo world's products in the encodings of the real ones.

MODIS-like 8-day fields become the raw integers of the C6.1 products (scale factors,
fill values, QC bits, cloud gaps; see :mod:`fluxmap.science.products`), and the
ERA5-like daily fields are packed as in the Copernicus Climate Data Store's files,
on ERA5's own grid.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import DemoConfig
from fluxmap.demo.physics import (
    _daily_precip,
    _daily_temperature_c,
    _PeriodState,
    _Surface,
    _surface,
    _WaveBasis,
    _Waves,
)
from fluxmap.demo.stores import _time_blocks, _zarr_write
from fluxmap.io.progress import Progress
from fluxmap.science import products
from fluxmap.science.grids import IGBP, era5_grid, landcover_at_points

# --- MODIS-like 8-day products ---------------------------------------------------------------

_RAW_DTYPES: dict[str, dict[str, str]] = {
    "mod11a2": {"LST_Day_1km": "uint16", "QC_Day": "uint8", "LST_Night_1km": "uint16", "QC_Night": "uint8"},
    "mod09a1": {
        **{f"sur_refl_{b}": "int16" for b in ("b01", "b02", "b03", "b04", "b05", "b06", "b07")},
        "sur_refl_state_500m": "uint16",
    },
    "mod15a2h": {"Lai_500m": "uint8", "Fpar_500m": "uint8", "FparLai_QC": "uint8"},
    "mod17a2h": {"Gpp_500m": "int16"},
    "mod16a2": {"ET_500m": "int16"},
}
"""Raw variables and their integer types, by MODIS-like store."""

_PRODUCT_ATTRS = {
    "mod11a2": {"product": "MOD11A2", "collection": "6.1-like (fluxmap demo)"},
    "mod09a1": {"product": "MOD09A1", "collection": "6.1-like (fluxmap demo)"},
    "mod15a2h": {"product": "MOD15A2H", "collection": "6.1-like (fluxmap demo)"},
    "mod17a2h": {"product": "MOD17A2HGF", "collection": "6.1-like (fluxmap demo)"},
    "mod16a2": {"product": "MOD16A2GF", "collection": "6.1-like (fluxmap demo)"},
}

_RAW_UNITS = {
    "LST_Day_1km": "K",
    "LST_Night_1km": "K",
    "Gpp_500m": "kg C/m^2/8day",
    "ET_500m": "kg/m^2/8day",
    "Lai_500m": "m^2/m^2",
    "Fpar_500m": "Percent",
}


def _qc_lst(cloud: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MOD11A2 QC byte: bits 0-1 mandatory QA, bits 6-7 LST error class."""
    other = rng.random(cloud.shape) < 0.08
    mandatory = np.where(cloud, 2, np.where(other, 1, 0))
    err = np.where(other, rng.integers(2, 4, cloud.shape), rng.integers(0, 2, cloud.shape))
    return (mandatory | (err << 6)).astype("uint8")


def _encode_period(
    st: _PeriodState, land: np.ndarray, days: int, rng: np.random.Generator
) -> dict[str, dict[str, np.ndarray]]:
    """Raw integer fields of every MODIS-like product for one period."""
    shape = st.tair.shape
    p_cloud = np.clip(0.08 + 0.05 * st.precip, 0.0, 0.7)
    cloud = rng.random(shape) < p_cloud
    is_land = land > 0.5
    out: dict[str, dict[str, np.ndarray]] = {}

    def lst(k: np.ndarray) -> np.ndarray:
        dn = np.round(k / products.LST_SCALE)
        return np.where(cloud | ~is_land, products.LST_FILL, dn).astype("uint16")

    cloud_n = rng.random(shape) < p_cloud * 0.8
    out["mod11a2"] = {
        "LST_Day_1km": lst(st.lst_day),
        "QC_Day": np.where(is_land, _qc_lst(cloud, rng), 2 | 0).astype("uint8"),
        "LST_Night_1km": np.where(cloud_n | ~is_land, 0, np.round(st.lst_night / products.LST_SCALE)).astype("uint16"),
        "QC_Night": np.where(is_land, _qc_lst(cloud_n, rng), 2).astype("uint8"),
    }
    # MOD09A1 state: cloud state bits 0-1, shadow 2, land/water 3-5, adjacent 13, snow 15.
    adjacent = (~cloud) & (rng.random(shape) < 0.04)
    shadow = (~cloud) & (rng.random(shape) < 0.02)
    landwater = np.where(is_land, 1, 0)
    state = (
        np.where(cloud, 1, 0)
        | (shadow.astype(int) << 2)
        | (landwater << 3)
        | (adjacent.astype(int) << 13)
        | (st.snow.astype(int) << 15)
    )
    mod09 = {}
    for b, r in st.refl.items():
        r = np.where(cloud, 0.45 + 0.1 * rng.random(shape), r)
        mod09[f"sur_refl_{b}"] = np.where(is_land, np.round(r / products.REFL_SCALE), products.REFL_FILL).astype(
            "int16"
        )
    mod09["sur_refl_state_500m"] = state.astype("uint16")
    out["mod09a1"] = mod09
    # MOD15A2H: cloudy pixels fall back to the backup algorithm (SCF_QC 3), noisier.
    backup = cloud & (rng.random(shape) < 0.8)
    noise = np.where(backup, rng.uniform(0.6, 1.1, shape), 1.0)
    qc15 = (np.where(backup, 3, 0) << 5) | (np.where(cloud, 1, 0) << 3) | backup.astype(int)
    nonveg = (~is_land) | (st.lai <= 0) & (st.ndvi < 0.08)
    out["mod15a2h"] = {
        "Lai_500m": np.where(nonveg, 254, np.clip(np.round(st.lai * noise / products.LAI_SCALE), 0, 100)).astype(
            "uint8"
        ),
        "Fpar_500m": np.where(nonveg, 254, np.clip(np.round(st.fpar * noise / products.FPAR_SCALE), 0, 100)).astype(
            "uint8"
        ),
        "FparLai_QC": np.where(nonveg, 0b10000000 | 0, qc15).astype("uint8"),
    }
    # Period sums (kg C m-2 and kg m-2 over the period) of the gap-filled GPP and ET.
    out["mod17a2h"] = {"Gpp_500m": np.where(is_land, np.round(st.gpp * days / 0.1), 32767).astype("int16")}
    out["mod16a2"] = {"ET_500m": np.where(is_land, np.round(st.et * days / 0.1), 32767).astype("int16")}
    return out


# --- ERA5-like daily cube ---------------------------------------------------------------------

# Packed as int16 with scale_factor/add_offset, the encoding of ERA5 netCDF files from
# the Copernicus Climate Data Store; readers that apply CF packing see physical values.
_ERA5_PACKING = {
    "2m_temperature": {"dtype": "int16", "scale_factor": 0.02, "add_offset": 273.15, "_FillValue": -32767},
    "total_precipitation": {"dtype": "int16", "scale_factor": 1e-5, "add_offset": 0.3, "_FillValue": -32767},
}

_ERA5_ATTRS = {
    "2m_temperature": {"units": "K", "long_name": "2 metre temperature, daily mean"},
    "total_precipitation": {"units": "m", "long_name": "Total precipitation accumulated over the day"},
}


def _era5_domain(cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of the ERA5 grid written for the domain ``cfg.bbox``.

    ERA5 keeps its own conventions (latitude 90 -> -90, longitude 0..360); only the
    domain plus a 1 deg margin is written, so a domain across 0 E wraps in longitude.
    """
    g = era5_grid(cfg.era5_resolution)
    w_, s_, e_, n_ = cfg.bbox
    keep = (g["latitude"] >= s_ - 1.0) & (g["latitude"] <= n_ + 1.0)
    lat = g["latitude"][keep]
    lon = g["longitude"]
    if e_ - w_ < 358.0:
        rel = (lon - (w_ - 1.0)) % 360.0
        lon = lon[rel <= (e_ - w_) + 2.0]
    return lat, lon


def _era5_template(
    lat: np.ndarray, lon: np.ndarray, days: pd.DatetimeIndex, chunks: tuple[int, int, int]
) -> xr.Dataset:
    """The empty (lazy) ERA5-like store, packed variables and chunks in its encoding."""
    shape = (len(days), len(lat), len(lon))
    tmpl = xr.Dataset(
        {
            v: (("time", "latitude", "longitude"), da.zeros(shape, "float32", chunks=chunks), dict(attrs))
            for v, attrs in _ERA5_ATTRS.items()
        },
        coords={
            "time": ("time", days.values),
            "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={
            "title": "fluxmap demo ERA5-like daily fields",
            "source": "fluxmap.demo (ERA5 grid and encoding)",
            "time_step_hours": 24,
        },
    )
    for v, enc in _ERA5_PACKING.items():
        tmpl[v].encoding = {**enc, "chunks": chunks}
    return tmpl


def _era5_days(
    surf: _Surface,
    basis: _WaveBasis,
    days: pd.DatetimeIndex,
    t0: pd.Timestamp,
    year_anom: dict[int, tuple[float, float]],
) -> xr.Dataset:
    """Daily 2 m temperature (K) and precipitation (m) of ``days`` on the ERA5-like grid."""
    t = np.empty((len(days), *surf.lat.shape), "float32")
    p = np.empty_like(t)
    for j, day in enumerate(days):
        n = float((day - t0).days)
        ya_t, ya_p = year_anom[day.year]
        t[j] = _daily_temperature_c(surf, float(day.day_of_year), n, ya_t, basis) + np.float32(273.15)
        p[j] = _daily_precip(surf, float(day.day_of_year), n, ya_p, basis) / np.float32(1000.0)
    return xr.Dataset(
        {
            "2m_temperature": (("time", "latitude", "longitude"), t),
            "total_precipitation": (("time", "latitude", "longitude"), p),
        }
    )


def _write_era5(
    path: Path,
    cfg: DemoConfig,
    lc005: np.ndarray,
    waves: _Waves,
    year_anom: dict[int, tuple[float, float]],
    *,
    progress: bool,
) -> None:
    """Write the ERA5-like daily store (Zarr format 3) month-sized block by block."""
    lat, lon = _era5_domain(cfg)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    cls = landcover_at_points(lc005, lat2, lon2)
    onehot = np.stack([(cls == c) for c in IGBP]).astype("float64")
    lon180 = np.where(lon2 > 180, lon2 - 360, lon2)
    surf = _surface(lat2, lon180, onehot, cfg.seed)
    basis = waves.basis(lat2, lon180)
    days = pd.date_range(f"{min(cfg.years)}-01-01", f"{max(cfg.years)}-12-31", freq="D")
    chunks = (31, min(256, len(lat)), min(256, len(lon)))
    _zarr_write(_era5_template(lat, lon, days, chunks), path, fmt=3, mode="w", compute=False)
    t0 = pd.Timestamp(f"{min(cfg.years)}-01-01")
    blocks = list(_time_blocks(len(days), 31))
    say = (lambda line: print(line, flush=True)) if progress else (lambda line: None)
    with Progress(len(blocks), "demo world: ERA5-like months", say) as bar:
        for bi, sl in enumerate(blocks):
            _zarr_write(_era5_days(surf, basis, days[sl], t0, year_anom), path, fmt=3, region={"time": sl})
            bar(bi + 1)
