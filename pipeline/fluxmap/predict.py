"""Global prediction: the training predictors rebuilt lazily on the grid, each cell's zone,
and the zone models applied block by block with ``xr.map_blocks``.

The predictor cube is built from the same decoded catalog entries, with the same
derived features (annual max/min/mean per pixel-year, the day-of-year transform)
as the training table, so a model sees the same variables in both places. ERA5 is
averaged to the 8-day periods on its own grid and then brought to the MODIS-like
grid by nearest neighbour. Nothing here computes: the caller decides which blocks
to evaluate (the writer skips blocks without land).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from fluxmap.extract import to_periods
from fluxmap.features import annual_stats, doy_features, regrid_nearest
from fluxmap.train import FittedModel

__all__ = ["ModelSet", "predict_block", "predict_cube", "predictor_cube"]


@dataclass
class ModelSet:
    """Everything the block function needs for one target: zone models, fallback, ensemble."""

    target: str
    zone_models: dict[int, FittedModel]
    unified: FittedModel
    ensemble: list[FittedModel] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        """Every predictor any of the models uses."""
        names: list[str] = []
        for m in [*self.zone_models.values(), self.unified, *self.ensemble]:
            names += [f for f in m.features if f not in names]
        return names


def predictor_cube(cubes: dict[str, xr.Dataset], *, grid_entry: str = "mod11a2") -> xr.Dataset:
    """All predictors on the grid of ``grid_entry``, lazily, named as in the training table."""
    base = cubes[grid_entry]
    lat, lon, time = base["lat"].values, base["lon"].values, base["time"]
    chunks = {d: base.chunksizes[d] for d in ("time", "lat", "lon")} if base.chunks else None
    timed, static = [], []
    for ds in cubes.values():
        ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims])
        if "time" not in ds.dims:
            static.append(ds[[v for v in ds.data_vars if set(ds[v].dims) <= {"lat", "lon"}]])
            continue
        if pd.Series(ds.time.values).diff().median() < pd.Timedelta(days=8):
            ds = to_periods(ds)
        if {"lat", "lon"} <= set(ds.dims) and (
            ds.sizes["lat"] != lat.size or ds.sizes["lon"] != lon.size or not np.allclose(ds["lat"].values, lat)
        ):
            space = (chunks["lat"][0], chunks["lon"][0]) if chunks else None
            ds = xr.Dataset({v: regrid_nearest(ds[v], lat, lon, chunks=space) for v in ds.data_vars}).sel(time=time)
        timed.append(ds)
    tv = xr.merge(timed, join="inner", compat="override", combine_attrs="drop")
    if chunks:
        tv = tv.chunk({d: chunks[d][0] for d in chunks})
    doy = doy_features(tv.time)
    out = xr.merge([tv, annual_stats(tv), doy, *static], compat="override", combine_attrs="drop")
    if chunks:
        # One chunk grid for every variable: the MODIS cube's (blocks are the unit of prediction and writing).
        out = out.chunk({d: chunks[d][0] for d in chunks})
    return out


def predict_block(block: xr.Dataset, models: ModelSet) -> xr.Dataset:
    """Predict one (time, lat, lon) block: each land cell by its zone's model.

    Cells whose zone has no model use the unified model; cells outside the land
    mask (zone 0) stay NaN. Returns the flux, the ensemble spread and 5-95 %
    range, and a flag of cells where a used predictor was missing (XGBoost still
    predicts through its learned default directions).
    """
    t = models.target
    shape = (block.sizes["time"], block.sizes["lat"], block.sizes["lon"])
    zone = np.broadcast_to(block["zone"].values[None], shape)
    out = np.full(shape, np.nan, dtype="float32")
    missing = np.zeros(shape, dtype="uint8")
    land = zone > 0
    feats = models.features
    cols = {}
    for f in feats:
        v = block[f].transpose(*[d for d in ("time", "lat", "lon") if d in block[f].dims]).values
        cols[f] = np.broadcast_to(v if v.ndim == 3 else (v[None] if v.ndim == 2 else v[:, None, None]), shape)
    for z in np.unique(zone[land]):
        model = models.zone_models.get(int(z), models.unified)
        sel = zone == z
        x = np.stack([cols[f][sel] for f in model.features], axis=1).astype("float32")
        out[sel] = model.predict(x)
        missing[sel] |= np.isnan(x).any(axis=1).astype("uint8")
    data = {t: (("time", "lat", "lon"), out), f"{t}_missing_predictors": (("time", "lat", "lon"), missing)}
    if models.ensemble:
        sel = land
        x_all = {f: cols[f][sel] for f in feats}
        preds = np.stack(
            [m.predict(np.stack([x_all[f] for f in m.features], axis=1).astype("float32")) for m in models.ensemble]
        )
        for name, values in (
            ("sd", preds.std(axis=0, ddof=1)),
            ("p05", np.percentile(preds, 5, axis=0)),
            ("p95", np.percentile(preds, 95, axis=0)),
        ):
            arr = np.full(shape, np.nan, dtype="float32")
            arr[sel] = values
            data[f"{t}_{name}"] = (("time", "lat", "lon"), arr)
    return xr.Dataset(data, coords={c: block[c] for c in ("time", "lat", "lon")})


def predict_cube(predictors: xr.Dataset, zone: xr.DataArray, models: ModelSet | object) -> xr.Dataset:
    """Lazy prediction over the whole cube with ``xr.map_blocks`` and an explicit template.

    ``models`` is a :class:`ModelSet`, or a distributed Future of one (scattered to
    every worker once, so no task carries the models).
    """
    # A Future is fetched once, here, for its names; the tasks keep only the Future.
    ms = models if isinstance(models, ModelSet) else models.result()
    target, features = ms.target, ms.features
    ds = predictors[features].assign(zone=zone)
    like = predictors[features[0]]
    if "time" not in like.dims:
        like = predictors[[v for v in predictors.data_vars if "time" in predictors[v].dims][0]]
    like = like.transpose("time", "lat", "lon")
    f32 = xr.zeros_like(like, dtype="float32")
    template = xr.Dataset({target: f32, f"{target}_missing_predictors": xr.zeros_like(like, dtype="uint8")})
    if ms.ensemble:
        template = template.assign({f"{target}_{s}": f32 for s in ("sd", "p05", "p95")})
    ds = ds.drop_vars([c for c in ds.coords if c not in ("time", "lat", "lon")])
    if like.chunks:
        # Static layers come with their own chunks: align everything to the time-varying cube.
        ds = ds.chunk({d: like.chunksizes[d] for d in ("time", "lat", "lon")})
    template = template.drop_vars([c for c in template.coords if c not in ("time", "lat", "lon")])
    return xr.map_blocks(predict_block, ds, kwargs={"models": models}, template=template)
