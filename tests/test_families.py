"""Every model family maps (issue 23, class 4): the predict stage maps what the models stage fitted,
a workdir that held another family's models maps the new ones, and a run without a map does not say done."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr


def _run(world, workdir: Path, kind: str) -> dict:
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import predict_and_report, small_run_config

    cfg = small_run_config(
        workdir, world.root, targets=["sr:8day"], kind=kind, backward_elimination=False, bootstrap_members=0
    )
    log: list[str] = []
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(world.root), log=log.append), log=log.append)
    model_stage(cfg, tables, log=log.append)
    return predict_and_report(cfg, log=log.append)


@pytest.mark.parametrize("kind", ["rf", "qrf"])
def test_forest_families_are_mapped_and_replace_an_earlier_family(tiny_world, tmp_path, kind):
    first = _run(tiny_world, tmp_path, "xgboost")
    assert first and list((tmp_path / "models" / "sr_8day").glob("model_unified.ubj"))
    result = _run(tiny_world, tmp_path, kind)  # same workdir, another family
    folder = tmp_path / "models" / "sr_8day"
    assert not list(folder.glob("*.ubj")), "the earlier family's models must not stay behind"
    meta = json.loads((folder / "model_unified.json").read_text())
    assert meta["kind"] == kind and (folder / "model_unified.skops").is_file()
    ds = xr.open_zarr(result["store"], consolidated=True)
    land = ds.zone.values > 0
    sr = ds.sr.values[:, land]
    assert np.isfinite(sr).mean() > 0.5 and np.nanmin(sr) >= 0
    # The map is the new family's: the stored checksums name the .skops files.
    assert all(p.endswith((".skops", ".json", ".npz")) for p in json.loads(ds.attrs["fluxmap_model_sha256"]))
    assert not any(p.endswith(".ubj") for p in json.loads(ds.attrs["fluxmap_model_sha256"]))
    from fluxmap.io.models import load_model

    model = load_model(folder / "model_unified.skops")
    zone = ds.zone.values
    r, c = np.argwhere(land)[0]
    if int(zone[r, c]) not in {int(p.stem.split("_")[-1]) for p in folder.glob("model_zone_*.skops")}:
        from fluxmap.io.catalog import builtin_catalog, load_catalog
        from fluxmap.science.extract import to_periods
        from fluxmap.science.predict import predictor_cube

        cat = load_catalog(builtin_catalog("demo"), DEMO_ROOT=str(tiny_world.root))
        cubes = {e: cat.open(e) for e in ("mod11a2", "mod09a1", "mod15a2h", "mod17a2h", "mod16a2", "era5", "static")}
        cubes["era5"] = to_periods(cubes["era5"])
        x = predictor_cube(cubes)[model.features].isel(lat=r, lon=c, time=[3]).compute()
        expect = model.predict(np.stack([np.broadcast_to(x[f].values, (1,)) for f in model.features], axis=1))
        np.testing.assert_allclose(ds.sr.values[3, r, c], expect[0], rtol=1e-5)


def test_a_run_without_a_map_does_not_say_done(tiny_world, tmp_path, capsys):
    import yaml

    from fluxmap.cli import main
    from fluxmap.demo import demo_sources

    sources = [{"kind": s.kind, "path": s.path, "options": dict(s.options)} for s in demo_sources(tiny_world.root)]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "workdir": str(tmp_path / "out"),
                "demo": None,
                "sites": {"sources": sources},
                "extract": {"catalog_params": {"DEMO_ROOT": str(tiny_world.root)}},
                # The tiny world has 5 chamber sites, so RH has fewer than 2 x min_sites: no RH model.
                "model": {
                    "targets": ["rh:8day"],
                    "min_sites": 3,
                    "k_candidates": [2],
                    "restarts": 3,
                    "bootstrap_members": 0,
                },
            }
        )
    )
    with pytest.raises(SystemExit, match="no map was written"):
        main(["predict", "--config", str(cfg), "--cluster", "threads"])


@pytest.mark.parametrize("kind", ["xgboost", "rf"])
def test_a_damaged_or_mismatched_model_file_is_refused_before_it_is_parsed(tmp_path, kind):
    """A truncated, replaced or relabelled model file is refused with its name, before XGBoost or skops
    parse a byte of it (a truncated file handed to the native library could crash the process)."""
    import pandas as pd

    from fluxmap.io.models import load_model, save_model
    from fluxmap.science.train import fit

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)}).assign(value=lambda d: 2 * d.a)
    path = save_model(fit(kind, df, df.value, features=["a", "b"], params={"n_estimators": 5}), tmp_path / "m")
    good = path.read_bytes()
    assert load_model(path).predict(df).shape == (60,)
    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=r"m\.(ubj|skops): its SHA-256 differs .* damaged, truncated"):
        load_model(path)
    path.write_bytes(good)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "features": ["b", "a"] if kind == "xgboost" else ["a"]}))
    with pytest.raises(ValueError, match="trained on|takes 2 predictors"):
        load_model(path)
    meta.pop("sha256")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no checksum"):
        load_model(path)
