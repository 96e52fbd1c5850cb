"""Area of applicability (Meyer & Pebesma 2021): the dissimilarity index against a brute-force
computation, the threshold from other-fold distances, files without pickles, and the map's flag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.science.applicability import fit_applicability, importance_weights


def _train(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.uniform(0, 1, n), "b": rng.normal(5, 2, n)})


def test_di_is_the_nearest_weighted_distance_over_the_mean_distance():
    x = _train(60)
    w = np.array([2.0, 0.5])
    aoa = fit_applicability(x, ["a", "b"], weights=w)
    z = (x.to_numpy() - x.to_numpy().mean(0)) / x.to_numpy().std(0) * w
    pair = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    dbar = pair[np.triu_indices(len(z), 1)].mean()
    assert aoa.mean_distance == pytest.approx(dbar, rel=1e-9)
    new = np.array([[0.5, 5.0], [3.0, 20.0], [np.nan, 1.0]])
    zn = (new[:2] - x.to_numpy().mean(0)) / x.to_numpy().std(0) * w
    expect = np.sqrt(((zn[:, None, :] - z[None, :, :]) ** 2).sum(-1)).min(1) / dbar
    di = aoa.dissimilarity(new)
    np.testing.assert_allclose(di[:2], expect, rtol=1e-9)
    assert np.isnan(di[2])
    # Without folds, each training point's DI is to its nearest other point.
    np.fill_diagonal(pair, np.inf)
    np.testing.assert_allclose(aoa.train_di, pair.min(1) / dbar, rtol=1e-9)
    assert list(aoa.inside(di)) == [1, 0, 255]


def test_the_threshold_comes_from_other_folds_and_flags_what_is_far():
    x = _train(300)
    folds = np.repeat(np.arange(10), 30)
    aoa = fit_applicability(x, ["a", "b"], folds=folds)
    q1, q3 = np.percentile(aoa.train_di, [25, 75])
    assert aoa.threshold <= q3 + 1.5 * (q3 - q1) and aoa.threshold in aoa.train_di
    near = x.sample(20, random_state=1).to_numpy() + 0.01
    far = np.column_stack([np.full(20, 4.0), np.full(20, 30.0)])
    assert (aoa.inside(aoa.dissimilarity(near)) == 1).all()
    assert (aoa.inside(aoa.dissimilarity(far)) == 0).all()
    # Folds of whole clusters: a cluster's points are far from the other folds, so the threshold grows.
    clustered = pd.DataFrame({"a": np.repeat(np.arange(10.0), 30) + x.a * 0.1, "b": x.b})
    by_cluster = fit_applicability(clustered, ["a", "b"], folds=folds)
    by_point = fit_applicability(clustered, ["a", "b"])
    assert by_cluster.threshold > by_point.threshold


def test_importance_weights_and_files_without_pickles(tmp_path):
    import xgboost as xgb

    from fluxmap.io.models import load_applicability, save_applicability

    x = _train(200)
    y = 3 * x.a + 0.01 * x.b
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3).fit(x, y)
    w = importance_weights(model, ["a", "b"])
    assert w.sum() == pytest.approx(2.0) and w[0] > w[1]
    aoa = fit_applicability(x, ["a", "b"], weights=w, folds=np.arange(200) % 5)
    save_applicability(tmp_path, aoa)
    back = load_applicability(tmp_path)
    assert back is not None and back.features == ["a", "b"] and back.threshold == aoa.threshold
    probe = np.array([[0.2, 4.0], [9.0, 9.0]])
    np.testing.assert_array_equal(back.dissimilarity(probe), aoa.dissimilarity(probe))
    with np.load(tmp_path / "applicability.npz", allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)


def test_the_block_kernel_maps_the_di_and_the_flag():
    from fluxmap.science.predict import ModelSet, predict_block
    from fluxmap.science.train import fit

    x = _train(200)
    model = fit("xgboost", x, 3 * x.a, features=["a", "b"], seed=0, params={"n_estimators": 10})
    aoa = fit_applicability(x, ["a", "b"], folds=np.arange(200) % 5)
    ms = ModelSet(target="sr", zone_models={}, unified=model, applicability=aoa)
    a = np.array([[[0.5, 0.5, 9.0]]], "float32")  # one period, one row, three cells: in, in, far out
    b = np.array([[[5.0, np.nan, 5.0]]], "float32")
    block = xr.Dataset(
        {
            "a": (("time", "lat", "lon"), a),
            "b": (("time", "lat", "lon"), b),
            "zone": (("lat", "lon"), np.array([[1, 1, 1]])),
        },
        coords={"time": pd.DatetimeIndex(["2020-01-01"]), "lat": [0.0], "lon": [0.0, 1.0, 2.0]},
    )
    out = predict_block(block, ms)
    assert list(out.sr_aoa.values.ravel()) == [1, 255, 0]
    di = out.sr_di.values.ravel()
    assert di[0] < aoa.threshold < di[2] and np.isnan(di[1])
