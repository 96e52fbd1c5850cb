"""Zones, models (save/reload, pickle refusal), leave-one-site-out validation."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxmap.io.models import load_model, load_zones, save_model, save_zones
from fluxmap.science.train import fit
from fluxmap.science.validate import compare, loso_predict, metrics, metrics_table, paired_site_bootstrap
from fluxmap.science.zones import assign_zones, fit_zones, zone_array
from fluxmap.testing import raise_if_dask_computes


def _clustered_sites(n_per: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [0.0, 5.0, 5.0]])
    x = np.concatenate([c + rng.normal(0, 0.5, (n_per, 3)) for c in centers])
    return pd.DataFrame(x, columns=["a", "b", "c"], index=[f"s{i}" for i in range(len(x))])


def test_fit_zones_recovers_clusters_and_reports_candidates():
    sites = _clustered_sites()
    model, table = fit_zones(
        sites, factors=["a", "b", "c"], k_candidates=range(2, 6), min_sites=5, min_obs=0, restarts=20
    )
    assert model.k == 3 and table.loc[table.chosen, "k"].item() == 3
    assert {"silhouette", "inertia", "min_sites", "meets_minima"} <= set(table.columns)
    zones = zone_array(model, sites.to_numpy())
    for g in range(3):
        assert len(set(zones[g * 12 : (g + 1) * 12])) == 1
    assert len(set(zones)) == 3
    assert model.explained_variance_ratio.sum() >= 0.8


def test_zone_minimum_sites_enforced():
    sites = _clustered_sites(n_per=4)
    with pytest.raises(ValueError, match="no k"):
        fit_zones(sites, factors=["a", "b", "c"], k_candidates=[2, 3], min_sites=5, min_obs=0, restarts=5)


def test_zone_model_json_roundtrip_and_lazy_grid(tmp_path):
    sites = _clustered_sites()
    model, _ = fit_zones(sites, factors=["a", "b", "c"], k_candidates=[3], min_sites=5, min_obs=0, restarts=5)
    save_zones(model, tmp_path / "zones.json")
    again = load_zones(tmp_path / "zones.json")
    grid = np.random.default_rng(1).normal(2.5, 3, (3, 20, 30))
    grid[:, 0, 0] = np.nan
    eager = xr.Dataset({k: (("lat", "lon"), grid[i]) for i, k in enumerate("abc")})
    with raise_if_dask_computes():
        lazy = xr.Dataset({k: (("lat", "lon"), da.from_array(grid[i], chunks=10)) for i, k in enumerate("abc")})
        zmap = assign_zones(again, lazy)
    assert zmap.chunks is not None
    expect = assign_zones(model, eager)
    xr.testing.assert_equal(zmap.compute(), expect)
    assert int(expect[0, 0]) == 0 and set(np.unique(expect.values[1:])) <= {1, 2, 3}


def _table(n_sites: int = 12, per: int = 15, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    site = np.repeat([f"s{i}" for i in range(n_sites)], per)
    zone = np.repeat(np.arange(n_sites) % 2 + 1, per)
    x1, x2 = rng.normal(size=len(site)), rng.normal(size=len(site))
    value = np.where(zone == 1, 2 * x1, -2 * x1) + 0.5 * x2 + rng.normal(0, 0.1, len(site))
    return pd.DataFrame({"site_id": site, "zone": zone, "x1": x1, "x2": x2, "value": value})


def test_loso_never_trains_on_the_test_site(monkeypatch):
    import fluxmap.science.validate as V

    seen = []
    real = V._one_fold

    def spy(kind, train, test, features, target, seed, params):
        seen.append((set(train.site_id), set(test.site_id)))
        return real(kind, train, test, features, target, seed, params)

    monkeypatch.setattr(V, "_one_fold", spy)
    t = _table()
    pred = loso_predict(t, features=["x1", "x2"], params={"n_estimators": 20})
    assert pred.notna().all()
    assert len(seen) == 12 and all(not (tr & te) for tr, te in seen)


def test_zone_models_win_when_the_truth_differs_by_zone():
    t = _table(n_sites=16)
    t["unified"] = loso_predict(t, features=["x1", "x2"], params={"n_estimators": 60})
    t["zoned"] = loso_predict(t, features=["x1", "x2"], by="zone", params={"n_estimators": 60})
    table = metrics_table(t, {"zone": "zoned", "unified": "unified"})
    cmp = compare(table, "zone", "unified")
    assert cmp.set_index("group").loc["all", "better"] == "zone"
    assert cmp.set_index("group").loc["all", "r2_zone"] > cmp.set_index("group").loc["all", "r2_unified"] + 0.1
    # The same predictions under two names: a tie, not a win for either.
    same = compare(metrics_table(t, {"zone": "unified", "unified": "unified"}), "zone", "unified")
    assert (same.better == "tie").all() and len(same) == len(cmp)


def _paired(rng, n_sites, err_a, err_b):
    site = np.repeat(np.arange(n_sites), 20)
    obs = rng.normal(0, 1, site.size) + rng.normal(0, 1, n_sites)[site]
    return pd.DataFrame(
        {
            "site_id": site,
            "value": obs,
            "a": obs + rng.normal(0, err_a, site.size),
            "b": obs + rng.normal(0, err_b, site.size),
        }
    )


def test_paired_site_bootstrap_separates_a_real_difference_from_a_tie():
    rng = np.random.default_rng(3)
    clear = paired_site_bootstrap(_paired(rng, 40, 0.3, 0.6), "a", "b", n_resamples=500)
    assert clear["delta_r2_lo"] > 0 and clear["share_a_better"] > 0.95
    tie = paired_site_bootstrap(_paired(rng, 40, 0.5, 0.5), "a", "b", n_resamples=500)
    assert tie["delta_r2_lo"] < 0 < tie["delta_r2_hi"] and 0.05 < tie["share_a_better"] < 0.95
    # The observed difference is the plain R2 difference, and the reverse question mirrors it.
    d = _paired(rng, 10, 0.3, 0.4)
    b = paired_site_bootstrap(d, "a", "b", n_resamples=200, seed=1)
    assert b["delta_r2"] == pytest.approx(metrics(d.value, d.a)["r2"] - metrics(d.value, d.b)["r2"])
    r = paired_site_bootstrap(d, "b", "a", n_resamples=200, seed=1)
    assert r["delta_r2_lo"] == pytest.approx(-b["delta_r2_hi"]) and r["delta_r2"] == pytest.approx(-b["delta_r2"])


def test_paired_site_bootstrap_resamples_whole_sites():
    # One resample drawn by hand: the R2 difference from the repeated rows equals the fast path's.
    rng = np.random.default_rng(0)
    d = _paired(rng, 6, 0.3, 0.5)
    b = paired_site_bootstrap(d, "a", "b", n_resamples=1, interval=(0.5, 0.5), seed=7)
    draw = np.random.default_rng(7).integers(0, 6, size=(1, 6))[0]
    sites = pd.factorize(d.site_id)[1]
    rs = pd.concat([d[d.site_id == sites[i]] for i in draw])
    expect = metrics(rs.value, rs.a)["r2"] - metrics(rs.value, rs.b)["r2"]
    assert b["delta_r2_lo"] == pytest.approx(expect)


def test_metrics_by_hand():
    m = metrics(np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.5]))
    assert m["rmse"] == pytest.approx(np.sqrt(0.5 / 3)) and m["bias"] == pytest.approx(0.0)
    assert m["r2"] == pytest.approx(1 - 0.5 / 2.0) and m["n"] == 3


@pytest.mark.parametrize("kind", ["xgboost", "rf", "qrf"])
def test_models_reload_and_reproduce_exactly(kind, tmp_path):
    t = _table()
    m = fit(kind, t, t.value, features=["x1", "x2"], seed=3, params={"n_estimators": 30})
    path = save_model(m, tmp_path / f"model_{kind}")
    again = load_model(path)
    np.testing.assert_array_equal(m.predict(t), again.predict(t))
    assert again.metadata["training_rows"] == len(t) and again.features == ["x1", "x2"]
    m2 = fit(kind, t, t.value, features=["x1", "x2"], seed=3, params={"n_estimators": 30})
    np.testing.assert_array_equal(m.predict(t), m2.predict(t))  # deterministic given the seed


def test_member_percentiles_equal_numpys():
    from fluxmap.science.predict import _member_percentiles

    preds = np.random.default_rng(0).normal(size=(10, 5000))
    preds[3, 7] = np.nan
    for got, want in zip(_member_percentiles(preds, (5.0, 95.0)), np.percentile(preds, [5, 95], axis=0)):
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


def test_quantiles_do_not_cross():
    t = _table()
    m = fit("qrf", t, t.value, features=["x1", "x2"], params={"n_estimators": 30})
    q = m.quantiles(t, [0.05, 0.25, 0.5, 0.75, 0.95])
    assert (np.diff(q, axis=1) >= 0).all()


def test_pickles_and_unknown_files_are_refused(tmp_path):
    t = _table()
    m = fit("rf", t, t.value, features=["x1", "x2"], params={"n_estimators": 5})
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(m.estimator))
    with pytest.raises(ValueError, match="refusing to load a .pkl"):
        load_model(pkl)
    with pytest.raises(ValueError, match="unknown model format"):
        load_model(tmp_path / "model.bin")
