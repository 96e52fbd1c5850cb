"""The analytic physical model of the demo world: surface, climate, phenology, fluxes' drivers.

Everything is a smooth function of latitude, elevation, land cover, day of year and a
seeded "weather" field of travelling waves (:class:`_Waves`), so any set of cells and
days can be evaluated on its own, chunk by chunk, without storing the whole world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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
        """``n`` waves from ``rng`` (draws in a fixed order: wavenumbers, phases, speeds)."""
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
    """Elevation (m): Gaussian mountain ranges plus seeded rolling hills, 0 over water."""
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
    """Daily mean 2 m air temperature (C, float32): annual mean, season, weather, year anomaly."""
    season = np.float32(np.cos(2 * np.pi * (doy - 200.0) / 365.25)) * s.t_season
    return s.t_annual + season + s.t_weather * w.field(day) + np.float32(year_anom)


def _climatological_precip(s: _Surface, doy: float) -> np.ndarray:
    """Mean precipitation (mm/d): a migrating ITCZ, mid-latitude storm tracks, land cover."""
    itcz = 8.0 * np.sin(2 * np.pi * (doy - 80.0) / 365.25)
    base = 0.6 + 7.0 * np.exp(-(((s.lat - itcz) / 9.0) ** 2)) + 2.2 * np.exp(-(((np.abs(s.lat) - 48.0) / 12.0) ** 2))
    return base * s.pmult


def _daily_precip(s: _Surface, doy: float, day: float, year_anom: float, w: _WaveBasis) -> np.ndarray:
    """Daily precipitation (mm/d, float32): climatology times log-normal weather and year anomaly."""
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
    """The surface state averaged over the ``ndays`` days from ``start`` (``t0``: the world's first day)."""
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
