"""``fluxmap score``: a finished run's final models applied to new site records (a newer database
release, a user's own chambers), read with the same readers, rules, catalog and predictors, and
scored: overall, by ecosystem (IGBP), by distance to the nearest training site, and inside vs
outside the area of applicability (``score/predictions.parquet``, ``score/scores.csv``,
``score/quarantine.parquet``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluxmap.config import RunConfig, SourceSpec
from fluxmap.io import sites
from fluxmap.io.models import load_zones, model_files
from fluxmap.io.provenance import write_table
from fluxmap.science.validate import metrics
from fluxmap.science.zones import site_zones
from fluxmap.stages.common import Log, model_sources
from fluxmap.stages.extract import site_tables
from fluxmap.stages.sites import plausible_ranges, read_source

__all__ = ["DISTANCE_BINS_KM", "score_stage"]

DISTANCE_BINS_KM = (0.0, 10.0, 100.0, 500.0, 2000.0, np.inf)
"""Bins of the distance from a record's site to the nearest site the run trained on."""


def _nearest_km(lat: np.ndarray, lon: np.ndarray, train_lat: np.ndarray, train_lon: np.ndarray) -> np.ndarray:
    """Great-circle distance (km) from each point to the nearest training location."""
    from sklearn.neighbors import BallTree

    tree = BallTree(np.deg2rad(np.column_stack([train_lat, train_lon])), metric="haversine")
    dist, _ = tree.query(np.deg2rad(np.column_stack([lat, lon])), k=1)
    return dist[:, 0] * 6371.0088


def _scores(df: pd.DataFrame, target: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []

    def add(group: str, value: Any, part: pd.DataFrame) -> None:
        for model in ("zone", "unified"):
            m = metrics(part.value.to_numpy(), part[f"pred_{model}"].to_numpy())
            rows.append({"target": target, "group": group, "value": str(value), "model": model,
                         "sites": int(part.site_id.nunique()), **m})  # fmt: skip

    add("all", "all", df)
    for eco, part in df.groupby("ecosystem", dropna=False):
        add("ecosystem", eco if isinstance(eco, str) and eco else "unknown", part)
    for label, part in df.groupby("distance_bin", observed=True):
        add("distance_to_training_km", label, part)
    if "inside_aoa" in df:
        for flag, part in df.groupby("inside_aoa"):
            add("area_of_applicability", {1: "inside", 0: "outside", 255: "unknown"}[int(flag)], part)
    return pd.DataFrame(rows)


def score_stage(cfg: RunConfig, specs: tuple[SourceSpec, ...], out: Path, *, log: Log = print) -> pd.DataFrame:
    """Read ``specs`` like the sites stage, build their tables like the extract stage (the run's
    catalog), predict each target with the run's final zone and unified models, and score them.

    Every record's prediction is written with its zone, distance to the nearest training site and
    area-of-applicability flag; records that cannot be predicted (no predictors) are in the
    quarantine with the reason, as in the extract stage."""
    workdir = Path(cfg.workdir)
    models_dir = workdir / "models"
    if not (models_dir / "zones.json").is_file():
        raise FileNotFoundError(f"{models_dir}: no finished models stage (zones.json); run fluxmap models first")
    train = [pd.read_parquet(workdir / "extract" / f) for f in ("training_8day.parquet", "training_annual.parquet")]
    train_locs = pd.concat([t[["lat", "lon"]] for t in train]).drop_duplicates()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ranges = plausible_ranges(cfg)
    table = sites.concat(
        [t for spec in specs for t in read_source(spec, srdb_min_year=cfg.sites.srdb_min_year, plausible=ranges)]
    )
    tables, _, _, _, _ = site_tables(cfg, table)
    write_table(
        pd.concat([table.quarantine.astype({"row": "Int64"}).astype(str), tables["quarantine"].astype(str)]),
        out / "quarantine.parquet",
        index=False,
    )
    zone_of = site_zones(load_zones(models_dir / "zones.json"), tables["site_factors"])
    predictions, scores = [], []
    # As the maps are made: a flux mapped as its denominator times a modelled ratio is scored so too.
    modelled = [t for t in cfg.model.all_targets() if model_files(models_dir / t.replace(":", "_"), "model_unified.*")]
    sources = dict(zip(modelled, model_sources(modelled, models_dir, ensemble=False, unified_map=False)))
    for target in cfg.model.targets:
        var, _, tab = target.partition(":")
        folder = models_dir / target.replace(":", "_")
        if not model_files(folder, "model_unified.*"):
            log(f"score {target}: skipped, the run has no model for it")
            continue
        df = tables["training_annual" if tab == "annual" else "training_8day"]
        df = df[df.variable == var].copy()
        if df.empty:
            log(f"score {target}: no new records")
            continue
        ms = sources[target].load()
        df["zone"] = df.location.map(zone_of).fillna(0).astype(int)
        df["pred_unified"] = ms.unified.predict(df[ms.unified.features])
        df["pred_zone"] = df["pred_unified"]
        for z, model in ms.zone_models.items():
            here = df.zone == z
            if here.any():
                df.loc[here, "pred_zone"] = model.predict(df.loc[here, model.features])
        df.loc[df.zone.isin(list(ms.masked_zones)), "pred_zone"] = np.nan
        if ms.applicability is not None:
            aoa = ms.applicability
            df["di"] = aoa.dissimilarity(df[aoa.features])
            df["inside_aoa"] = aoa.inside(df["di"].to_numpy())
        df["distance_km"] = _nearest_km(
            df.lat.to_numpy(), df.lon.to_numpy(), train_locs.lat.to_numpy(), train_locs.lon.to_numpy()
        )
        df["distance_bin"] = pd.cut(df.distance_km, DISTANCE_BINS_KM, right=False)
        s = _scores(df, target)
        overall = s[(s.group == "all") & (s.model == "unified")].iloc[0]
        log(
            f"score {target}: {len(df)} records at {df.site_id.nunique()} sites; unified R2 {overall.r2:.3f}, "
            f"RMSE {overall.rmse:.3f}, bias {overall.bias:+.3f} g C m-2 d-1; median distance to a training site "
            f"{df.distance_km.median():.0f} km"
        )
        keep = ["site_id", "lat", "lon", "start", "end", "variable", "ecosystem", "location", "zone", "value",
                "pred_zone", "pred_unified", "distance_km", *(c for c in ("di", "inside_aoa") if c in df)]  # fmt: skip
        predictions.append(df[keep].assign(target=target))
        scores.append(s)
    preds = pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame()
    table_out = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame()
    write_table(preds, out / "predictions.parquet", index=False)
    write_table(table_out, out / "scores.csv", index=False)
    log(f"score: {len(preds)} predictions in {time.perf_counter() - t0:.1f} s -> {out}")
    return table_out
