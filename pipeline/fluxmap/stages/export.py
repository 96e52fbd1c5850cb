"""Export: a finished run's maps as CF-1.10 netCDF-4, one compressed file per mapped flux and year
(``export/fluxmap_8day_sr_2020.nc``, ``export/fluxmap_annual_sr_2020.nc``), for the tools that
read netCDF better than Zarr (GDAL before 3.9 knows no CRS in Zarr; Panoply, ncview, CDO, NCO)."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from fluxmap.config import RunConfig
from fluxmap.io.cf import export_groups, export_netcdf
from fluxmap.science import products
from fluxmap.stages.common import Log

__all__ = ["FORMATS", "export_stage"]

FORMATS = ("netcdf", "ilamb")
"""The formats ``fluxmap export`` writes."""


def export_stage(
    cfg: RunConfig,
    *,
    fmt: str = "netcdf",
    out: Path | None = None,
    variables: list[str] | None = None,
    log: Log = print,
) -> list[Path]:
    """Every map store of the run's workdir (8-day and annual) exported to ``out`` (default
    ``WORKDIR/export``); ``variables``: only these fluxes (e.g. ``sr``). Returns the files."""
    if fmt not in FORMATS:
        raise ValueError(f"export: format {fmt!r} is not one fluxmap writes; choose from {list(FORMATS)}")
    if fmt == "ilamb":
        return _ilamb(cfg, out or Path(cfg.workdir) / "export" / "ilamb", variables, log)
    predict = Path(cfg.workdir) / "predict"
    stores = [(s, p) for s, p in (("8day", predict / "fluxmap.zarr"), ("annual", predict / "annual" / "annual.zarr"))
              if p.is_dir()]  # fmt: skip
    if not stores:
        raise FileNotFoundError(f"export: no maps in {predict} (run `fluxmap run` or `fluxmap predict` first)")
    held = {s: export_groups(xr.open_zarr(p, consolidated=True)) for s, p in stores}
    if variables:
        unknown = sorted(set(variables) - {g for groups in held.values() for g in groups})
        if unknown:
            known = {s: sorted(g) for s, g in held.items()}
            raise ValueError(f"export: no map of {unknown} in {predict}; the stores hold {known}")
    out = out or Path(cfg.workdir) / "export"
    written: list[Path] = []
    for step, store in stores:
        chosen = [g for g in held[step] if not variables or g in variables]
        if chosen:
            written += export_netcdf(store, out, prefix=f"fluxmap_{step}", variables=chosen, log=log)
    log(f"export: {len(written)} netCDF files in {out}")
    return written


def _ilamb(cfg: RunConfig, out: Path, variables: list[str] | None, log: Log) -> list[Path]:
    """Each map (8-day: ``<var>/fluxmap_<var>.nc``; annual: ``<var>/fluxmap_<var>_annual.nc``) and the
    site observations it was trained on (``..._sites.nc``) as ILAMB reference files
    (:mod:`fluxmap.io.ilamb`)."""
    import pandas as pd

    from fluxmap.io.ilamb import ilamb_map, ilamb_sites, write_ilamb

    predict, extract = Path(cfg.workdir) / "predict", Path(cfg.workdir) / "extract"
    kinds = [(step, path) for step, path in (("8day", predict / "fluxmap.zarr"),
                                             ("annual", predict / "annual" / "annual.zarr")) if path.is_dir()]  # fmt: skip
    if not kinds:
        raise FileNotFoundError(f"export: no maps in {predict} (run `fluxmap run` or `fluxmap predict` first)")
    stores = {step: xr.open_zarr(path, consolidated=True) for step, path in kinds}
    # Fluxes only: a ratio (rh_sr_ratio) has no kg m-2 s-1 for ILAMB.
    mapped = {step: sorted(v for v in export_groups(ds) if v in products.VARIABLES) for step, ds in stores.items()}
    unknown = sorted(set(variables or []) - {v for vs in mapped.values() for v in vs})
    if unknown:
        raise ValueError(f"export: no map of {unknown} in {predict}; the stores hold {mapped}")
    written: list[Path] = []
    for step, store in stores.items():
        what, suffix = ("8-day means", "") if step == "8day" else ("annual means", "_annual")
        table = extract / f"training_{step}.parquet"
        obs = pd.read_parquet(table) if table.is_file() else None
        for var in [v for v in mapped[step] if not variables or v in variables]:
            title = f"fluxmap {var}, {what}"
            written.append(write_ilamb(ilamb_map(store, var, title, what), out / var / f"fluxmap_{var}{suffix}.nc"))
            rows = obs[obs.variable == var] if obs is not None else None
            if rows is not None and len(rows):
                sites = ilamb_sites(rows, var, f"fluxmap {var} site observations, {what}", what)
                written.append(write_ilamb(sites, out / var / f"fluxmap_{var}{suffix}_sites.nc"))
    log(f"export: {len(written)} ILAMB reference files in {out}")
    return written
