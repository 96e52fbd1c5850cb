"""Generating a whole demo world under one folder, and recognising one already there.

:func:`build_world` runs the generator in a fixed order, each step with its own seeded
random stream so the output is byte-identical for a given configuration:

1. the weather waves and yearly anomalies (stream ``[seed, 0]``) and the real MCD12C1 land cover;
2. the static layers and long-term climate on the MODIS-like grid (``static/static.zarr``);
3. the empty 8-day stores (``modis/*.zarr``, ``truth/truth.zarr``);
4. the sites (stream ``[seed, 1]``), then the 8-day fields and truth, block by block
   (stream ``[seed, 2, period]``);
5. the ERA5-like daily store (``era5/era5_daily.zarr``);
6. the site files (stream ``[seed, 3]``);
7. the inversion's regional NEE (``inversion/regional_nee.csv``, stream ``[seed, 4]``,
   :mod:`fluxmap.demo.inversion`);
8. ``world.json`` with the SHA-256 of every file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.config import DemoConfig
from fluxmap.demo.encode import _PRODUCT_ATTRS, _RAW_DTYPES, _RAW_UNITS, _encode_period, _write_era5
from fluxmap.demo.inversion import write_inversion
from fluxmap.demo.physics import (
    _annual_temperature_c,
    _climatological_precip,
    _period_state,
    _sigmoid,
    _Surface,
    _surface,
    _WaveBasis,
    _Waves,
)
from fluxmap.demo.sites import _place_sites, _Sites, _write_sites
from fluxmap.demo.stores import _time_blocks, _zarr_write
from fluxmap.demo.truth import ZONES, _zone_flag_attrs, truth_fluxes, truth_zone
from fluxmap.io.landcover import read_mcd12c1
from fluxmap.io.progress import Progress
from fluxmap.io.provenance import sha256
from fluxmap.science import periods, products
from fluxmap.science.grids import IGBP, LatLonGrid, landcover_on_grid

WORLD_FORMAT = 3
"""Version of what :func:`build_world` writes, recorded in ``world.json``. Raise it with any
change to the generator that changes the world (fields, truth, sites): a cached world of
another format is then rebuilt instead of silently reused (:func:`world_is_current`)."""

_TRUTH_NAMES = ("sr", "rh", "ra", "reco", "gpp", "nee")


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


@dataclass(frozen=True)
class _Static:
    """What is fixed on the MODIS-like grid: land cover, surface, long-term climate, zones, soil carbon."""

    fractions: np.ndarray  # (17, lat, lon) IGBP class fractions
    majority: np.ndarray  # majority IGBP class
    surface: _Surface
    t_annual: np.ndarray  # long-term mean air temperature, C
    p_annual: np.ndarray  # long-term mean precipitation, mm/d
    zone: np.ndarray  # true zone (see ZONES)
    soc: np.ndarray  # soil organic carbon, kg C m-2 (NaN off land)


def _chunks(cfg: DemoConfig, grid: LatLonGrid) -> tuple[int, int, int]:
    """(time, lat, lon) chunks of the 8-day stores; the last two also chunk the static layers."""
    return cfg.time_chunk, min(cfg.space_chunk, grid.shape[0]), min(cfg.space_chunk, grid.shape[1])


# --- static layers -------------------------------------------------------------------------------


def _static_state(
    cfg: DemoConfig, grid: LatLonGrid, lc005: np.ndarray, year_anom: dict[int, tuple[float, float]]
) -> _Static:
    """Land cover on ``grid``, the surface it implies, long-term climate, true zones and soil carbon."""
    frac, majority = landcover_on_grid(lc005, grid)
    lat2, lon2 = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    surf = _surface(lat2, lon2, frac, cfg.seed)
    # Long-term climate for zones and soil carbon: the mean of each period's state.
    t_ann = _annual_temperature_c(lat2, surf.elevation) + np.mean([v[0] for v in year_anom.values()])
    p_ann = np.mean([_climatological_precip(surf, float(d)) for d in range(1, 366, 8)], axis=0)
    moist = p_ann / (p_ann + 1.2)
    soc = (3.0 + 25.0 * _sigmoid(-(t_ann - 2.0) / 5.0)) * (0.4 + 0.8 * moist)
    soc = soc * np.where(majority == 11, 2.0, 1.0) * np.where(majority == 16, 0.1, 1.0)
    soc = np.where(surf.land > 0.5, np.clip(soc, 0.2, 80.0), np.nan)
    return _Static(frac, majority, surf, t_ann, p_ann, truth_zone(t_ann, p_ann), soc)


def _static_dataset(cfg: DemoConfig, grid: LatLonGrid, static: _Static) -> xr.Dataset:
    """The ``static/static.zarr`` layers, chunked in their encoding."""
    ds = xr.Dataset(
        {
            "elevation": (
                ("lat", "lon"),
                static.surface.elevation.astype("float32"),
                products.spec("elevation").attrs(),
            ),
            "soc": (("lat", "lon"), static.soc.astype("float32"), products.spec("soc").attrs()),
            "landcover": (
                ("lat", "lon"),
                static.majority,
                {**products.spec("landcover").attrs(), "comment": "majority MCD12C1 2019 class in the cell"},
            ),
            "landcover_fraction": (
                ("igbp", "lat", "lon"),
                static.fractions,
                {"units": "1", "long_name": "fraction of the cell in each IGBP class (MCD12C1 2019)"},
            ),
            "land_fraction": (
                ("lat", "lon"),
                static.surface.land.astype("float32"),
                {"units": "1", "standard_name": "land_area_fraction", "long_name": "land fraction of the cell"},
            ),
        },
        coords={
            **grid.coords(),
            "igbp": (
                "igbp",
                IGBP,
                {"long_name": "IGBP class", "flag_meanings": " ".join(products.IGBP_CLASSES.values())},
            ),
        },
        attrs={"title": "fluxmap demo world: static layers", "source": "fluxmap.demo; land cover MCD12C1 2019 v006"},
    )
    sc = _chunks(cfg, grid)[1:]
    for v in ds.data_vars:
        ds[v].encoding = {"chunks": (len(IGBP), *sc) if v == "landcover_fraction" else sc}
    return ds


# --- 8-day stores --------------------------------------------------------------------------------


def _modis_template(
    names: dict[str, str], grid_coords: dict, time: pd.DatetimeIndex, chunks: tuple[int, int, int], attrs: dict
) -> xr.Dataset:
    """An empty (lazy) MODIS-like store with the raw variables ``names`` (name -> integer type)."""
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


def _truth_template(
    cfg: DemoConfig, grid: LatLonGrid, starts: pd.DatetimeIndex, static: _Static, land_fraction: xr.DataArray
) -> xr.Dataset:
    """The empty (lazy) truth store: the 8-day fluxes, and the true zone and land fraction of each cell."""
    chunks = _chunks(cfg, grid)
    truth = xr.Dataset(
        {
            n: (
                ("time", "lat", "lon"),
                da.zeros((len(starts), *grid.shape), dtype="float32", chunks=chunks),
                products.spec(n).attrs(),
            )
            for n in _TRUTH_NAMES
        },
        coords={"time": ("time", starts.values), **grid.coords()},
    )
    truth["gpp"].attrs["long_name"] = "gross primary production seen by flux towers, g C m-2 d-1"
    zone_attrs = {"long_name": "true environmental zone", **_zone_flag_attrs(static.zone.dtype)}
    truth["zone"] = (("lat", "lon"), static.zone, zone_attrs)
    truth["land_fraction"] = land_fraction
    for v in ("zone", "land_fraction"):
        truth[v].encoding = {"chunks": chunks[1:]}
    truth.attrs = {
        "title": "fluxmap demo world: ground-truth fluxes",
        "comment": "noise-free; see fluxmap.demo.truth_fluxes",
    }
    return truth


def _create_period_stores(
    root: Path, cfg: DemoConfig, grid: LatLonGrid, starts: pd.DatetimeIndex, truth: xr.Dataset
) -> None:
    """Write the metadata of every 8-day store (MODIS-like and truth); the fields follow block by block."""
    chunks = _chunks(cfg, grid)
    for prod, names in _RAW_DTYPES.items():
        attrs = {**_PRODUCT_ATTRS[prod], "title": f"fluxmap demo {prod}"}
        tmpl = _modis_template(names, grid.coords(), starts, chunks, attrs)
        _zarr_write(tmpl, root / "modis" / f"{prod}.zarr", fmt=2, mode="w", compute=False)
    _zarr_write(truth, root / "truth" / "truth.zarr", fmt=2, mode="w", compute=False)


def _stacked(fields: dict[str, list[np.ndarray]]) -> xr.Dataset:
    """One (time, lat, lon) variable per name from its list of per-period fields."""
    return xr.Dataset({n: (("time", "lat", "lon"), np.stack(v)) for n, v in fields.items()})


def _write_period_block(
    root: Path,
    cfg: DemoConfig,
    static: _Static,
    starts: pd.DatetimeIndex,
    ndays: np.ndarray,
    sl: slice,
    year_anom: dict[int, tuple[float, float]],
    basis: _WaveBasis,
    sites: _Sites,
) -> list[dict[str, np.ndarray]]:
    """Write the MODIS-like fields and truth of periods ``sl``; return each period's truth at the sites."""
    surf = static.surface
    soc = np.nan_to_num(static.soc, nan=1.0)
    encoded: dict[str, dict[str, list[np.ndarray]]] = {p: {n: [] for n in ns} for p, ns in _RAW_DTYPES.items()}
    truth: dict[str, list[np.ndarray]] = {n: [] for n in _TRUTH_NAMES}
    at_sites = []
    for i in range(sl.start, sl.stop):
        st = _period_state(surf, starts[i], int(ndays[i]), starts[0], year_anom, basis)
        fl = truth_fluxes(st, static.zone, soc)
        for n in _TRUTH_NAMES:
            truth[n].append(np.where(surf.land > 0.5, fl[n], np.nan).astype("float32"))
        enc = _encode_period(st, surf.land, int(ndays[i]), np.random.default_rng([cfg.seed, 2, i]))
        for p, fields in enc.items():
            for n, arr in fields.items():
                encoded[p][n].append(arr)
        at_sites.append(
            {
                **{n: fl[n][sites.row, sites.col] for n in _TRUTH_NAMES},
                "tair": st.tair[sites.row, sites.col],
                "moisture": st.moisture[sites.row, sites.col],
            }
        )
    for p, per_name in encoded.items():
        _zarr_write(_stacked(per_name), root / "modis" / f"{p}.zarr", fmt=2, region={"time": sl})
    _zarr_write(_stacked(truth), root / "truth" / "truth.zarr", fmt=2, region={"time": sl})
    return at_sites


def _write_periods(
    root: Path,
    cfg: DemoConfig,
    static: _Static,
    starts: pd.DatetimeIndex,
    ndays: np.ndarray,
    year_anom: dict[int, tuple[float, float]],
    basis: _WaveBasis,
    sites: _Sites,
    *,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Fill the 8-day stores block by block; return the truth at the sites, ``(n_sites, n_periods)`` by name."""
    at_sites: list[dict[str, np.ndarray]] = []
    blocks = list(_time_blocks(len(starts), cfg.time_chunk))
    with Progress(len(blocks), "demo world: 8-day blocks", _say if progress else _quiet) as bar:
        for bi, sl in enumerate(blocks):
            at_sites += _write_period_block(root, cfg, static, starts, ndays, sl, year_anom, basis, sites)
            bar(bi + 1)
    return {k: np.stack([d[k] for d in at_sites], axis=1) for k in at_sites[0]}


def _say(line: str) -> None:
    print(line, flush=True)


def _quiet(line: str) -> None:
    pass


# --- the world -----------------------------------------------------------------------------------


def _write_manifest(root: Path, cfg: DemoConfig, grid: LatLonGrid, n_periods: int, n_sites: int) -> DemoWorld:
    """Checksum every file under ``root`` and record it, with the configuration, in ``world.json``."""
    files = {
        str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file() and p.name != "world.json"
    }
    meta = {
        "format": WORLD_FORMAT,
        "config": dataclasses.asdict(cfg),
        "zones": ZONES,
        "grid_shape": grid.shape,
        "periods": n_periods,
        "sites": n_sites,
        "files": files,
    }
    (root / "world.json").write_text(json.dumps(meta, indent=1, default=str))
    return DemoWorld(root=root, config=cfg, files=files)


def build_world(root: str | Path, config: DemoConfig | None = None, *, progress: bool = False) -> DemoWorld:
    """Generate the demo world under ``root`` (deterministic given ``config.seed``).

    Memory is bounded by one time block of the MODIS-like grid and one month of the
    ERA5-like grid, whatever the number of years.

    Parameters
    ----------
    root : str or pathlib.Path
        Folder to write the world into (created if missing; stores in it are replaced).
    config : fluxmap.config.DemoConfig, optional
        Seed, domain, resolution, years, site counts and chunking; the default world
        when omitted.
    progress : bool, default False
        Print a line per block written.

    Returns
    -------
    DemoWorld
        The folder, the configuration and the SHA-256 of every file written.
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

    static = _static_state(cfg, grid, lc005, year_anom)
    static_ds = _static_dataset(cfg, grid, static)
    _zarr_write(static_ds, root / "static" / "static.zarr", fmt=2, mode="w")

    starts = periods.period_starts(cfg.years)
    ndays = periods.period_days(starts)
    truth = _truth_template(cfg, grid, starts, static, static_ds["land_fraction"])
    _create_period_stores(root, cfg, grid, starts, truth)

    surf = static.surface
    sites = _place_sites(cfg, grid, surf, static.majority, static.zone, np.random.default_rng([cfg.seed, 1]))
    basis = waves.basis(surf.lat, surf.lon)
    series = _write_periods(root, cfg, static, starts, ndays, year_anom, basis, sites, progress=progress)

    _write_era5(root / "era5" / "era5_daily.zarr", cfg, lc005, waves, year_anom, progress=progress)
    rng_sites = np.random.default_rng([cfg.seed, 3])
    _write_sites(root / "sites", cfg, sites, series, starts, ndays, static.t_annual, static.p_annual, rng_sites)
    write_inversion(root, np.random.default_rng([cfg.seed, 4]))
    return _write_manifest(root, cfg, grid, len(starts), int(len(sites.site_id)))


def world_is_current(root: str | Path, config: DemoConfig) -> bool:
    """Whether ``root`` holds a complete world generated from ``config`` by this generator.

    Parameters
    ----------
    root : str or pathlib.Path
        Folder of a (possibly) generated world.
    config : fluxmap.config.DemoConfig
        The configuration the world should come from.

    Returns
    -------
    bool
        True when ``root/world.json`` exists, records this :data:`WORLD_FORMAT` and the
        same configuration (seed, domain, sizes); a world of another format is stale.
    """
    meta = Path(root) / "world.json"
    if not meta.is_file():
        return False
    saved = json.loads(meta.read_text())
    if saved.get("format") != WORLD_FORMAT:
        return False
    return saved.get("config", {}) == json.loads(json.dumps(dataclasses.asdict(config), default=str))
