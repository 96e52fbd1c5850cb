"""``fluxmap score`` (issue 24, part 4): a finished run's models applied to new records read with the
run's readers and catalog, scored overall, by ecosystem, by distance to the training sites and by the
area of applicability; records off the grid quarantined with the reason."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml


@pytest.fixture
def trained(tiny_world, tmp_path):
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import small_run_config

    world = tmp_path / "world"
    shutil.copytree(tiny_world.root, world)
    cfg = small_run_config(
        tmp_path / "work", world, targets=["sr:8day"], backward_elimination=False, bootstrap_members=0, k_candidates=[2]
    )
    quiet = lambda m: None  # noqa: E731
    model_stage(cfg, extract_stage(cfg, sites_stage(cfg, demo_sources(world), log=quiet), log=quiet), log=quiet)
    return cfg, world


def test_new_records_are_predicted_and_scored(trained, tmp_path, capsys):
    from fluxmap.cli import main
    from fluxmap.io.catalog import builtin_catalog, load_catalog

    cfg, world = trained
    truth = load_catalog(builtin_catalog("demo"), DEMO_ROOT=str(world)).open("truth")
    sr = truth.sr.load()
    land = np.argwhere(np.isfinite(sr.isel(time=10).values))
    rng = np.random.default_rng(7)
    rows = ["site,lat,lon,t,flux"]
    for k, (r, c) in enumerate(land[rng.choice(len(land), 12, replace=False)]):
        lat, lon = float(sr.lat[r]), float(sr.lon[c])
        for i in range(5, 40):  # periods of 2020 before December: all 8 days long
            rows.append(f"NEW{k},{lat},{lon},{pd.Timestamp(sr.time.values[i]).date()},{float(sr.values[i, r, c]):.4f}")
    rows += ["FAR,-45.0,170.0,2020-03-06,2.0"]
    csv = tmp_path / "new.csv"
    csv.write_text("\n".join(rows) + "\n")
    mapping = {"site_id": "site", "lat": "lat", "lon": "lon", "start": "t", "step": "8D", "value": "flux",
               "units_name": "g C m-2 d-1", "variable_name": "sr"}  # fmt: skip
    sources = tmp_path / "new.yaml"
    sources.write_text(
        yaml.safe_dump({"sources": [{"kind": "csv", "path": str(csv), "options": {"mapping": mapping}}]})
    )
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({"workdir": cfg.workdir, "demo": None,
                                        "extract": {"catalog_params": {"DEMO_ROOT": str(world)}},
                                        "model": {"targets": ["sr:8day"]}}))  # fmt: skip
    assert main(["score", "--config", str(run_yaml), "--sites", str(sources)]) == 0
    assert "score sr:8day: 420 records at 12 sites; unified R2" in capsys.readouterr().out
    out = tmp_path / "work" / "score"
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == 420 and preds.pred_unified.notna().all() and (preds.distance_km > 0).any()
    assert set(preds.inside_aoa.unique()) <= {0, 1, 255}
    scores = pd.read_csv(out / "scores.csv")
    overall = scores[(scores.group == "all") & (scores.model == "unified")].iloc[0]
    # Noise-free truth at places the run never saw: the models must carry real skill there.
    assert overall.r2 > 0.3 and overall.n == 420
    assert {"ecosystem", "distance_to_training_km", "area_of_applicability"} <= set(scores.group)
    q = pd.read_parquet(out / "quarantine.parquet")
    assert (q.site_id == "FAR").any() and q[q.site_id == "FAR"].reason.str.contains("outside").any()
