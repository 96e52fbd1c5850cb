"""Predictor selection, uncertainty, distributed XGBoost and the model stage on the demo world."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fluxmap.io.models import load_model
from fluxmap.science.selection import backward_elimination, correlation_filter, exhaustive_search
from fluxmap.science.train import FitSpec
from fluxmap.science.uncertainty import _stratified_rows, bootstrap_ensemble, class_area_shares, ensemble_spread


def _table(seed: int = 0, n_sites: int = 10, per: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_sites * per
    x1, x2, noise = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "site_id": np.repeat([f"s{i}" for i in range(n_sites)], per),
            "x1": x1,
            "x1_copy": x1 * 2 + 0.01 * rng.normal(size=n),
            "x2": x2,
            "junk": noise,
            "value": 2 * x1 + 2 * x2 + 0.1 * rng.normal(size=n),
            "landcover": np.repeat(rng.choice([1, 4, 10, 12], n_sites), per),
        }
    )


def test_correlation_filter_drops_the_later_twin():
    kept, dropped = correlation_filter(_table(), ["x1", "x2", "x1_copy", "junk"], threshold=0.9)
    assert kept == ["x1", "x2", "junk"]
    assert dropped[0][0] == "x1_copy" and dropped[0][1] == "x1" and dropped[0][2] > 0.99


def test_backward_elimination_keeps_the_informative_features():
    chosen, path = backward_elimination(
        _table(), ["x1", "x2", "junk"], min_features=1, spec=FitSpec(params={"n_estimators": 150})
    )
    assert "x1" in chosen and "x2" in chosen
    assert list(path.n_features) == [3, 2, 1]


def test_exhaustive_search_finds_the_true_set_and_refuses_large_sets():
    chosen, table = exhaustive_search(_table(), ["x1", "x2", "junk"], spec=FitSpec(params={"n_estimators": 150}))
    assert {"x1", "x2"} <= set(chosen) and len(table) == 7
    rank = {frozenset(f.split(",")): i for i, f in enumerate(table.features)}
    assert rank[frozenset({"x1", "x2"})] < min(i for s_, i in rank.items() if not {"x1", "x2"} <= s_)
    with pytest.raises(ValueError, match="combinations"):
        exhaustive_search(_table(), [f"f{i}" for i in range(9)])


def test_stratified_rows_follow_area_shares():
    df = _table(n_sites=40, per=10)
    shares = pd.Series({1: 0.1, 4: 0.2, 10: 0.3, 12: 0.4, 16: 0.9})
    rows = _stratified_rows(df, strata="landcover", shares=shares, n=1000, rng=np.random.default_rng(0))
    got = df.loc[rows, "landcover"].value_counts(normalize=True)
    present = shares[[1, 4, 10, 12]] / shares[[1, 4, 10, 12]].sum()
    np.testing.assert_allclose(got.sort_index().values, present.sort_index().values, atol=0.002)


def test_bootstrap_ensemble_spread():
    df = _table(n_sites=20)
    shares = pd.Series({1: 0.25, 4: 0.25, 10: 0.25, 12: 0.25})
    members, scores = bootstrap_ensemble(
        df, features=["x1", "x2"], strata="landcover", shares=shares, n_members=4, params={"n_estimators": 150}
    )
    assert len(members) == 4 and (scores.r2 > 0.5).all()
    spread = ensemble_spread(members, df.head(5))
    assert (spread.sd >= 0).all() and (spread.mad >= 0).all() and {"mean", "cv"} <= set(spread.columns)


def test_class_area_shares_weights_by_area():
    frac = np.zeros((2, 2, 1))
    frac[0, 0, 0] = 1.0  # class 1 fills the first cell
    frac[1, 1, 0] = 1.0  # class 2 the second, three times larger
    s = class_area_shares(frac, np.array([[1.0], [3.0]]), np.array([1, 2]))
    assert s[1] == pytest.approx(0.25) and s[2] == pytest.approx(0.75)


def test_distributed_xgboost_on_a_local_cluster():
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from fluxmap.science.train import fit_xgboost_dask

    df = _table(n_sites=20)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        ddf = dd.from_pandas(df[["x1", "x2", "value"]], npartitions=4)
        model = fit_xgboost_dask(client, ddf, ddf["value"], features=["x1", "x2"], params={"n_estimators": 40})
    pred = model.predict(df)
    assert model.metadata["distributed"] and model.metadata["workers"] == 2
    assert np.corrcoef(pred, df.value)[0, 1] > 0.95


def test_model_stage_on_the_demo(tiny_world, tmp_path):
    from fluxmap.demo import demo_sources
    from fluxmap.stages.extract import extract_stage
    from fluxmap.stages.models import model_stage
    from fluxmap.stages.sites import sites_stage
    from fluxmap.testing import small_run_config

    cfg = small_run_config(tmp_path, tiny_world.root, targets=["sr:annual", "nee:8day"], params={"n_estimators": 30})
    logs: list[str] = []
    tables = extract_stage(cfg, sites_stage(cfg, demo_sources(tiny_world.root), log=logs.append), log=logs.append)
    summary = model_stage(cfg, tables, log=logs.append).set_index("target")
    out = tmp_path / "models"
    for target in ("sr_annual", "nee_8day"):
        d = out / target
        for f in (
            "zone_vs_unified.csv",
            "loso_metrics.csv",
            "obs_vs_pred.png",
            "report.md",
            "model_unified.ubj",
            "selected_predictors.json",
            "bootstrap_scores.csv",
            "references.csv",
            "outer_folds.csv",
            "selection_stability.csv",
            "zones_without_model.json",
            "drivers.csv",
            "interactions.csv",
            "partial_dependence.csv",
            "drivers.png",
            "partial_dependence.png",
        ):
            assert (d / f).is_file(), f"{target}/{f}"
        drivers = pd.read_csv(d / "drivers.csv")
        assert {"all", "zone", "zone model"} <= set(drivers.grouping)
        for _, g in drivers.groupby(["grouping", "group", "level"]):
            # A model that predicts one value everywhere (a zone of a few sites) has no shares.
            assert g.share.isna().all() or g.share.sum() == pytest.approx(1.0)
            assert list(g["rank"]) == list(range(1, len(g) + 1))
        assert drivers[drivers.grouping == "all"].share.notna().all()
        assert "## What governs the flux: driver attribution" in (d / "report.md").read_text()
        model = load_model(d / "model_unified.ubj")
        assert model.metadata["zone"] == "unified" and model.features
        preds = pd.read_parquet(d / "loso_predictions.parquet")
        assert preds.pred_unified.notna().mean() > 0.9
    assert (out / "zones.json").is_file() and json.loads((out / "zones.json").read_text())["centroids"]
    assert (out / "zone_map.png").is_file()
    import xarray as xr

    k = len(json.loads((out / "zones.json").read_text())["centroids"])
    zmap = xr.open_zarr(out / "zone_map.zarr", consolidated=True).zone
    assert zmap.chunks is not None and set(np.unique(zmap.values)) == set(range(k + 1))
    ari = json.loads((out / "zone_map_vs_truth.json").read_text())["adjusted_rand_index"]
    # The stored agreement is the adjusted Rand index of the two maps over land, recomputed here.
    from sklearn.metrics import adjusted_rand_score

    true = xr.open_zarr(tiny_world.root / "truth" / "truth.zarr").zone.values
    land = zmap.values > 0
    assert ari == pytest.approx(adjusted_rand_score(true[land], zmap.values[land]))
    assert "observations" in pd.read_csv(out / "zone_profiles.csv").columns
    row = summary.loc["nee:8day"]
    for col in (
        "r2_zone",
        "r2_unified",
        "truth_r2_zone",
        "truth_r2_unified",
        "qrf_coverage",
        "skill_unified",
        "skill_lo_zone",
        "r2_ref_mean",
        "bootstrap_sd_median",
        "delta_r2_lo_zone_minus_unified",
        "truth_delta_r2_hi_zone_minus_unified",
        "r2_true_zones",
        "truth_r2_true_zones",
        "delta_r2_lo_true_zones_minus_unified",
    ):
        assert np.isfinite(row[col]), col
    # The oracle: zone models on the world's true zones, each row's true zone read from the truth.
    from fluxmap.io.catalog import builtin_catalog, load_catalog

    true_zone = load_catalog(builtin_catalog("demo"), **dict(cfg.extract.catalog_params)).open("truth").zone
    preds = pd.read_parquet(out / "nee_8day" / "loso_predictions.parquet")
    fac = tables["site_factors"].loc[preds.location.unique()]
    expect = true_zone.sel(lat=xr.DataArray(fac.lat.values), lon=xr.DataArray(fac.lon.values), method="nearest")
    assert (preds.location.map(pd.Series(expect.values, index=fac.index)) == preds.true_zone).all()
    assert row.true_zones == preds.true_zone.nunique() >= 2
    # A held-out row gets its true zone's model when that zone keeps >= 2 physical sites in the
    # fold's training rows, else the unified model's prediction.
    trained = {
        (f, z): preds[(preds.fold != f) & (preds.true_zone == z)].site_group.nunique()
        for f, z in set(zip(preds.fold, preds.true_zone))
    }
    own = np.array([trained[(f, z)] >= 2 for f, z in zip(preds.fold, preds.true_zone)])
    assert own.any() and preds.pred_true_zones.notna().all()
    assert (preds.pred_true_zones != preds.pred_unified)[own].mean() > 0.9
    assert (preds.pred_true_zones == preds.pred_unified)[~own].all()
    assert "true-zone models better in" in (out / "nee_8day" / "report.md").read_text()
    assert 0.5 < row.qrf_coverage <= 1.0
    # Every held-out row's fold holds none of its physical site's rows in training.
    assert (preds.groupby("site_group").fold.nunique() == 1).all()
    assert row.delta_r2_lo_zone_minus_unified <= row.delta_r2_zone_minus_unified <= row.delta_r2_hi_zone_minus_unified
    assert "5-95 % interval" in (out / "nee_8day" / "report.md").read_text()
    # Cached on rerun.
    logs.clear()
    model_stage(cfg, tables, log=logs.append)
    assert any("models: cached" in m for m in logs)


def test_final_models_train_on_the_cluster_when_the_table_is_large():
    from distributed import Client, LocalCluster

    from fluxmap.config import ModelConfig
    from fluxmap.stages.models import _final_fit

    df = _table(n_sites=10)
    cfg = ModelConfig(distributed_rows=50, params=(("n_estimators", 30),))
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        m = _final_fit(cfg, ("xgboost", dict(cfg.params)), df, ["x1", "x2"], {"zone": "unified"})
    assert m.metadata["distributed"] is True and m.metadata["zone"] == "unified"
    small = _final_fit(ModelConfig(), ("xgboost", {"n_estimators": 30}), df, ["x1", "x2"], {})
    assert "distributed" not in small.metadata
