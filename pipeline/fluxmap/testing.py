"""Helpers shared by tests, benchmarks and the demo: compute guards and tiny factories."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dask

from fluxmap.config import DemoConfig

__all__ = [
    "CountingScheduler",
    "as_model_output",
    "europe_demo_config",
    "import_prediction_modules",
    "raise_if_dask_computes",
    "small_run_config",
    "tiny_demo_config",
    "tiny_trainable_config",
    "trained_world",
]


class CountingScheduler:
    """A dask scheduler that counts computes and fails past ``max_computes``.

    The pattern of flox's and xarray's test suites: graph-building code must not
    compute, so tests run it under ``raise_if_dask_computes()``.
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):  # noqa: ANN001 (dask's scheduler signature)
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"dask computed {self.total_computes} time(s); at most {self.max_computes} allowed here")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Context in which any dask compute beyond ``max_computes`` raises RuntimeError."""
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


def tiny_demo_config(**overrides: object) -> DemoConfig:
    """A small demo world (Europe, 1 deg, one leap year, ERA5 at 0.5 deg) for fast tests."""
    base = dict(
        resolution=1.0,
        bbox=(-10.0, 36.0, 30.0, 60.0),
        years=(2020,),
        era5_resolution=0.5,
        n_srdb_sites=24,
        n_cosore_sites=5,
        n_fluxnet_sites=6,
        n_halfhourly=1,
        time_chunk=23,
        space_chunk=16,
    )
    base.update(overrides)
    return DemoConfig(**base)  # type: ignore[arg-type]


def small_run_config(workdir: str, demo_root: str, **model: object):
    """A RunConfig for the whole pipeline on an existing demo world with light model settings
    (few restarts, small forests): for tests and benchmarks. ``model`` overrides ModelConfig fields."""
    from fluxmap.config import run_config_from_mapping

    light = {
        "k_candidates": [2, 3],
        "min_sites": 2,
        "min_obs": 1,
        "restarts": 5,
        "params": {"n_estimators": 40},
        "selection_params": {"n_estimators": 15},
        "bootstrap_members": 3,
    }
    return run_config_from_mapping(
        {
            "workdir": str(workdir),
            "demo": None,
            "extract": {"catalog_params": {"DEMO_ROOT": str(demo_root)}},
            "model": {**light, **model},
        }
    )


def tiny_trainable_config(**overrides: object) -> DemoConfig:
    """:func:`tiny_demo_config` with enough COSORE-like sites (12) for ``sr:8day`` zone models: the
    world of the benchmarks' ``--tiny`` runs."""
    return tiny_demo_config(**{"n_srdb_sites": 10, "n_cosore_sites": 12, "n_fluxnet_sites": 4, **overrides})


def import_prediction_modules() -> bool:
    """Import what a prediction worker uses (XGBoost, zarr, flox for the 8-day means, fluxmap.science.predict,
    fluxmap.io.store): run on every worker (``client.run``) before timing or measuring it, so imports
    are not counted."""
    import flox.aggregate_npg  # noqa: F401
    import xgboost  # noqa: F401
    import zarr  # noqa: F401

    import fluxmap.io.store  # noqa: F401
    import fluxmap.science.predict  # noqa: F401

    return True


def europe_demo_config(resolution: float = 0.1, **overrides: object) -> DemoConfig:
    """The benchmarks' world: Europe (10 W-40 E, 35-70 N), one year, ERA5 at 0.25 deg, 70 sites;
    ``resolution`` sets the grid (0.1 deg: 350 x 500 cells). Chunks of one year x 128 x 128 cells:
    the annual statistics then stay inside a block and each input chunk is read once."""
    europe = {"resolution": resolution, "bbox": (-10.0, 35.0, 40.0, 70.0), "era5_resolution": 0.25}
    sizes = {"time_chunk": 46, "space_chunk": 128, "n_srdb_sites": 20, "n_cosore_sites": 40, "n_fluxnet_sites": 10}
    return tiny_demo_config(**{**europe, **sizes, **overrides})


def trained_world(root, demo: DemoConfig, *, n_estimators: int = 200, log=None):
    """Build a demo world under ``root/world`` and train light ``sr:8day`` models (two zones, no
    ensemble; the predict stage writes the zone-model map only) under ``root/work``; return
    ``(run_config, training_tables)``. For benchmarks."""
    import dataclasses
    from pathlib import Path

    from fluxmap.demo import build_world, demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage

    root = Path(root)
    world = build_world(root / "world", demo)
    cfg = small_run_config(
        str(root / "work"),
        str(world.root),
        targets=["sr:8day"],
        k_candidates=[2],
        min_sites=3,
        backward_elimination=False,
        bootstrap_members=0,
        params={"n_estimators": n_estimators},
    )
    cfg = dataclasses.replace(cfg, predict=dataclasses.replace(cfg.predict, ensemble=False, unified=False))
    log = log or (lambda m: None)
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=log), log=log)
    model_stage(cfg, tables, log=log)
    if not (root / "work" / "models" / "sr_8day" / "model_unified.ubj").is_file():
        raise RuntimeError(f"{root}: no sr:8day model was trained (too few COSORE-like sites in {demo})")
    return cfg, tables


def predict_and_report(cfg, *, log=print) -> dict:
    """The predict stage, then the report stage on its store (as ``fluxmap run`` does): the
    report stage's result (store, report, totals, error against the truth)."""
    from fluxmap.stages.predict import predict_stage
    from fluxmap.stages.report import report_stage

    return report_stage(cfg, predict_stage(cfg, log=log), log=log)


def cf_errors(path: str | Path, report_dir: str | Path) -> list[str]:
    """compliance-checker's CF-1.10 errors (its high-priority messages) on a netCDF file or Zarr
    store, as ``"<section>: <message>"`` lines (the JSON report is left in ``report_dir``)."""
    import json

    from compliance_checker.runner import CheckSuite, ComplianceChecker

    report = Path(report_dir) / f"{Path(path).name}.cf.json"
    CheckSuite.load_all_available_checkers()
    ComplianceChecker.run_checker(str(path), ["cf:1.10"], 0, "normal", output_filename=str(report),
                                  output_format="json")  # fmt: skip
    result = json.loads(report.read_text())["cf:1.10"]
    return [f"{c['name']}: {m}" for c in result["high_priorities"] for m in c["msgs"]]


def as_model_output(
    store: str | Path, out: str | Path, variables: dict[str, str], *, factor: int = 2, calendar: str = "noleap"
) -> Path:
    """fluxmap's map ``store`` (8-day or annual Zarr; read whole) rewritten as an ecosystem model would write it,
    for evaluating it as an external product: ``variables`` (fluxmap name -> name in the file, e.g.
    ``{"sr": "rs"}``) in kg m-2 s-1 on a grid ``factor`` times coarser (each coarse cell the mean of
    its land, weighted by cell area x land fraction; ``sftlf`` in %), longitudes 0..360, times as
    days in ``calendar`` with bounds, named ``climatology`` (CF 7.4) when the map is one
    climatological year."""
    import cftime
    import numpy as np
    import pandas as pd
    import xarray as xr

    from fluxmap.science.features import regrid_land_mean

    ds = xr.open_zarr(store, consolidated=True).sortby("lat")
    lat = ds.lat.coarsen(lat=factor, boundary="trim").mean().values
    lon = ds.lon.coarsen(lon=factor, boundary="trim").mean().values
    out_vars: dict[str, xr.DataArray] = {}
    for name, as_name in variables.items():
        mean, land = regrid_land_mean(ds[name].load(), ds["land_fraction"].load(), lat, lon)
        out_vars[as_name] = (mean / 86400.0e3).astype("float32").assign_attrs(units="kg m-2 s-1")
    out_vars["sftlf"] = (100.0 * land).astype("float32").assign_attrs(units="%")
    res = xr.Dataset(out_vars)
    res = res.drop_vars([c for c in res.coords if c not in ("lat", "lon")])
    res = res.assign_coords(lon=res.lon % 360.0).sortby("lon")
    start = pd.DatetimeIndex(ds["time_bnds"].values[:, 0])
    end = pd.DatetimeIndex(ds["time_bnds"].values[:, 1])
    units = f"days since {start[0].year}-01-01"
    kind = cftime.DatetimeNoLeap if calendar == "noleap" else cftime.DatetimeProlepticGregorian

    def days(t: pd.DatetimeIndex) -> np.ndarray:
        return np.asarray(cftime.date2num([kind(d.year, d.month, min(d.day, 28) if d.month == 2 else d.day) for d in t],
                                          units, calendar=calendar), dtype="float64")  # fmt: skip

    bounds = np.stack([days(start), days(end)], axis=1)
    climatological = ds.attrs.get("fluxmap_climatological_year") == "true"
    name = "climatology_bnds" if climatological else "time_bnds"
    time_attrs = {"units": units, "calendar": calendar, ("climatology" if climatological else "bounds"): name}
    res = res.assign_coords(time=xr.Variable("time", bounds.mean(axis=1), time_attrs))
    res[name] = xr.Variable(("time", "bnds"), bounds)
    res.attrs = {"source": f"fluxmap map {store}, rewritten by fluxmap.testing.as_model_output"}
    out = Path(out)
    res.to_netcdf(out)
    return out
