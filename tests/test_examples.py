"""The COSORE example (Zhu et al. 2024's question on real chamber data), coarsened, through the CLI:
8-day Rs and Rh validated zone vs unified, then mapped for a climatological year on a regular grid
with sub-grid land cover (MCD12C1 class fractions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cosore_example_maps_8day_fluxes_on_a_regular_grid(shared_data, tmp_path):
    cfg = yaml.safe_load((ROOT / "examples" / "cosore_zones.yaml").read_text())
    cfg["workdir"] = str(tmp_path / "run")
    cfg["predict"].update(resolution=6.0, annual_chunk=15)
    cfg["model"].update(
        params={"n_estimators": 40}, selection_params={"n_estimators": 15}, bootstrap_members=2, outer_folds=3,
        inner_folds=2, k_candidates=[2],
    )  # fmt: skip
    path = tmp_path / "cosore.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = subprocess.run(
        [sys.executable, "-m", "fluxmap.cli", "run", "--config", str(path), "--param", f"SHARED_DATA={shared_data}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "8-day maps on a 25 x 60 grid, a climatological year" in run.stdout
    ds = xr.open_zarr(tmp_path / "run" / "predict" / "fluxmap.zarr", consolidated=True)
    assert ds.sizes["time"] == 46 and ds.sizes["lat"] == 25 and ds.sizes["lon"] == 60
    land = ds["land_fraction"].values > 0
    assert 0.2 < land.mean() < 0.6  # mapped land (no water, no ice) of a -60..90 grid
    sr = ds["sr"].values
    assert np.isfinite(sr[:, land]).all() and np.isnan(sr[:, ~land]).all()
    assert np.median(sr[:, land]) > 0
    # A seasonal cycle: the northern mid-latitudes breathe more in July than in January.
    north = (ds.lat.values > 35) & (ds.lat.values < 60)
    jul, jan = ds["sr"].sel(time="2001-07").mean("time"), ds["sr"].sel(time="2001-01").mean("time")
    assert float(jul[north].mean()) > float(jan[north].mean())
    assert "sub-grid land cover" in ds.attrs["comment"] and ds.attrs["fluxmap_climatological_year"] == "true"
    majority = ds["landcover_majority"].values
    assert set(np.unique(majority[land])) <= set(range(1, 17)) - {15}
    assert (majority[~land] == 0).all()
    totals = pd.read_csv(tmp_path / "run" / "predict" / "totals.csv", index_col=0)
    assert np.isfinite(totals.filter(like="sr").iloc[:, 0]).all()
    biomes = pd.read_csv(tmp_path / "run" / "predict" / "totals_by_biome.csv")
    assert set(biomes.target) >= {"sr"} and not biomes.name.isin(["water"]).any()
    assert (tmp_path / "run" / "predict" / "report.md").is_file()
    summary = pd.read_csv(tmp_path / "run" / "models" / "summary.csv").set_index("target")
    assert summary.loc["sr:8day", "physical_sites"] > 30
    assert np.isfinite(summary.loc["sr:8day", ["r2_zone", "r2_unified", "r2_rs_only", "r2_rs_plus_meteo"]]).all()
