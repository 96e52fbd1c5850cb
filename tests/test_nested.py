"""Nested validation, zones without a validated model, and the reference models (issue 22, items 2, 3, 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fluxmap.science.baselines import fit_reference
from fluxmap.science.comparison import Protocol, nested_cv, summarize, zone_fallbacks
from fluxmap.science.train import FitSpec
from fluxmap.science.validate import group_folds, paired_site_bootstrap


def _sites(n_sites: int = 16, per: int = 10, seed: int = 0, zones: int = 2) -> pd.DataFrame:
    """Rows of ``n_sites`` places (two ids each), a flux that depends on x1 with a zone-specific sign."""
    rng = np.random.default_rng(seed)
    place = np.repeat(np.arange(n_sites), per)
    x1, x2 = rng.normal(size=len(place)), rng.normal(size=len(place))
    zone = place % zones + 1
    value = np.where(zone == 1, 2 * x1, -2 * x1) + 0.5 * x2 + rng.normal(0, 0.2, len(place))
    return pd.DataFrame(
        {
            "site_id": [f"s{p}-{i % 2}" for p, i in zip(place, range(len(place)))],
            "site_group": [f"P{p:02d}" for p in place],
            "location": [f"L{p:03d}" for p in place],
            "x1": x1,
            "x2": x2,
            "noise": rng.normal(size=len(place)),
            "value": value,
            "zone": zone,
            "ecosystem": np.where(zone == 1, "ENF", "GRA"),
        }
    )


def _protocol(**kw) -> Protocol:
    spec = FitSpec("xgboost", {"n_estimators": 40}, 0, 1, group="site_group", folds=kw.pop("folds", 4))
    return Protocol(spec=spec, selection=FitSpec("xgboost", {"n_estimators": 15}, 0, 1, folds=3), **kw)


def test_group_folds_keep_whole_groups_and_balance_them():
    groups = np.repeat([f"g{i}" for i in range(10)], 3)
    f = group_folds(groups, 4, seed=1)
    assert (pd.Series(f).groupby(groups).nunique() == 1).all()
    sizes = pd.Series(f).groupby(f).apply(lambda s: len(set(groups[s.index])))
    assert sorted(sizes) == [2, 2, 3, 3]
    assert len(set(group_folds(groups, 0))) == 10 and len(set(group_folds(groups, 50))) == 10
    assert (group_folds(groups, 4, seed=1) == f).all()


def test_every_choice_is_made_without_the_held_out_sites():
    d = _sites()
    calls: list[set[str]] = []

    def zones(held_out: set[str]) -> pd.Series:
        calls.append(held_out)
        locs = sorted(set(d.location))
        return pd.Series([int(loc[1:]) % 2 + 1 for loc in locs], index=locs)

    out, chosen = nested_cv(d, ["x1", "x2", "noise"], _protocol(backward=True), zones=zones)
    # One zone fit per outer fold, each without exactly that fold's held-out locations.
    assert len(calls) == out.fold.nunique() == 4 == len(chosen)
    for f, held in zip(sorted(out.fold.unique()), calls):
        assert held == set(out.location[out.fold == f])
    # A physical site lies in one fold only (its two ids are never split).
    assert (out.groupby("site_group").fold.nunique() == 1).all()
    assert out[["pred_unified", "pred_zone", "pred_mean", "q_lo", "q_hi"]].notna().all().all()
    # The selection saw the informative predictor in every fold.
    assert all("x1" in fs.split(",") for fs in chosen.features)
    # Zone models with the right sign beat the unified model here, and the report says so.
    s, pieces = summarize(out, _protocol())
    assert s["r2_zone"] > s["r2_unified"] and s["delta_r2_lo_zone_minus_unified"] > 0
    assert s["best_reference"] == "mean" and s["skill_lo_zone"] > 0 > s["skill_unified"] - 0.5


def test_nested_selection_of_pure_noise_scores_no_skill_while_the_non_nested_score_flatters():
    """The reason for nesting: choosing among noise predictors on all rows and scoring on the same
    folds finds 'skill' that the nested score (choice inside the outer folds) does not."""
    from fluxmap.science.comparison import select_predictors

    rng = np.random.default_rng(3)
    d = _sites(n_sites=20, per=6, seed=3)
    names = [f"n{i}" for i in range(8)]
    for n in names:
        d[n] = rng.normal(size=len(d))
    d["value"] = rng.normal(size=len(d))
    p = _protocol(backward=True, folds=5)
    out, _ = nested_cv(d, names, p, zones=lambda held: d.groupby("location").zone.first())
    nested = summarize(out, p)[0]["r2_unified"]
    path = select_predictors(d, names, p)[3]
    non_nested = 1.0 - path.rmse.min() ** 2 / d.value.var(ddof=0)
    assert nested < 0.0 and non_nested > nested


def test_a_zone_with_one_physical_site_falls_back_to_the_unified_model():
    d = _sites(n_sites=13)
    d.loc[d.site_group == "P12", "zone"] = 3  # the only site of zone 3
    p = _protocol()
    out, _ = nested_cv(d, ["x1", "x2"], p, zones=lambda held: d.groupby("location").zone.first())
    lone = out.zone == 3
    assert out.zone_fallback[lone].all() and (out.pred_zone == out.pred_unified)[lone].all()
    assert not out.zone_fallback[~lone].any()
    assert zone_fallbacks(out, "zone", "site_group", 2) == [3]
    assert summarize(out, p)[0]["rows_on_unified_in_folds"] == int(lone.sum())


def test_a_fold_without_zones_is_scored_with_the_unified_model():
    d = _sites()
    zoned = d.groupby("location").zone.first()

    def zones(held_out: set[str]) -> pd.Series:  # zoning fails without location L000's site
        return zoned * 0 if "L000" in held_out else zoned

    out, chosen = nested_cv(d, ["x1", "x2"], _protocol(), zones=zones)
    no_zones = out.fold == out.fold[out.location == "L000"].iloc[0]
    assert (chosen.zones == 0).sum() == 1 and (chosen.zones[chosen.zones > 0] == 2).all()
    assert out.zone_fallback[no_zones].all() and (out.pred_zone == out.pred_unified)[no_zones].all()
    assert not out.zone_fallback[~no_zones].any()


def test_masked_zones_stay_empty_in_the_map():
    import xarray as xr

    from fluxmap.science.predict import ModelSet, predict_block
    from fluxmap.science.train import fit

    d = _sites()
    model = fit("xgboost", d, d.value, features=["x1", "x2"], params={"n_estimators": 10})
    block = xr.Dataset(
        {
            "x1": (("time", "lat", "lon"), np.ones((1, 2, 2), "float32")),
            "x2": (("time", "lat", "lon"), np.zeros((1, 2, 2), "float32")),
            "zone": (("lat", "lon"), np.array([[1, 2], [2, 0]], "uint8")),
        },
        coords={"time": pd.DatetimeIndex(["2020-01-01"]), "lat": [1.0, 0.0], "lon": [0.0, 1.0]},
    )
    both = predict_block(block, ModelSet("x", {}, model))["x"].values[0]
    masked = predict_block(block, ModelSet("x", {}, model, masked_zones=frozenset({2})))["x"].values[0]
    assert np.isfinite(both[[0, 0, 1], [0, 1, 0]]).all() and np.isnan(both[1, 1])
    assert np.isfinite(masked[0, 0]) and np.isnan(masked[[0, 1, 1], [1, 0, 1]]).all()


def test_each_zone_is_predicted_from_its_own_cells_when_zone_models_share_their_predictors():
    """Eight zone models with the same predictor list, zones of different sizes, an ensemble and the
    unified map: every cell's prediction is its own model's on its own predictors (command 1 failed
    when the block's row matrices were cached by the id of a zone's mask, which a later zone's mask
    can reuse)."""
    import xarray as xr

    from fluxmap.science.predict import ModelSet, predict_block
    from fluxmap.science.train import fit

    d = _sites()
    models = {z: fit("xgboost", d, z * d.value, features=["x1", "x2"], params={"n_estimators": 5}) for z in range(1, 9)}
    rng = np.random.default_rng(0)
    zone = rng.choice(np.array([0, 1, 2, 2, 3, 4, 4, 4, 5, 6, 7, 8, 8], "uint8"), size=(60, 70))
    x1, x2 = rng.normal(size=(2, 3, 60, 70)).astype("float32")
    block = xr.Dataset(
        {"x1": (("time", "lat", "lon"), x1), "x2": (("time", "lat", "lon"), x2), "zone": (("lat", "lon"), zone)},
        coords={
            "time": pd.date_range("2020-01-01", periods=3, freq="8D"),
            "lat": np.arange(60.0),
            "lon": np.arange(70.0),
        },
    )
    out = predict_block(block, ModelSet("x", models, models[1], ensemble=[models[2], models[1]], unified_map=True))

    def want(model, cells):
        rows = np.stack([x1[:, cells].ravel(), x2[:, cells].ravel()], axis=1)
        return model.predict(pd.DataFrame(rows, columns=["x1", "x2"])).reshape(3, -1)

    for z, m in models.items():
        np.testing.assert_allclose(out["x"].values[:, zone == z], want(m, zone == z), rtol=1e-6)
    land = zone > 0
    np.testing.assert_allclose(out["x_unified"].values[:, land], want(models[1], land), rtol=1e-6)
    assert np.isnan(out["x"].values[:, ~land]).all()


def test_the_report_says_plainly_when_machine_learning_does_not_beat_the_reference():
    from fluxmap.io.report import _reference_lines

    table = pd.DataFrame({"model": ["unified"], "r2": [0.2]})
    skills = {
        "unified": {"skill": -0.08, "skill_lo": -0.24, "skill_hi": -0.01},
        "zone": {"skill": 0.03, "skill_lo": -0.02, "skill_hi": 0.08},
    }
    text = "\n".join(_reference_lines({}, {"table": table, "best": "climate", "skills": skills}))
    assert "unified model's skill over `climate`: -0.080 [-0.240, -0.010]: machine learning does NOT beat" in text
    assert "zone model's skill over `climate`: +0.030 [-0.020, +0.080]: machine learning is not clearly better" in text


def test_climate_reference_recovers_the_raich_form():
    rng = np.random.default_rng(0)
    t = rng.uniform(-5, 25, 400)
    p = rng.uniform(0.1, 8.0, 400)
    value = 0.8 * np.exp(0.07 * t) * p / (1.5 + p)
    rows = pd.DataFrame({"t2m": t + 273.15, "tp": p, "value": value * np.exp(rng.normal(0, 0.02, 400))})
    pred = fit_reference("climate", rows)(rows)
    assert np.corrcoef(pred, value)[0, 1] > 0.99
    # A row without temperature gets the training mean, not NaN.
    assert fit_reference("climate", rows)(rows.assign(t2m=np.nan).head(1))[0] == pytest.approx(rows.value.mean())
    with pytest.raises(ValueError, match="class_mean"):
        fit_reference("climate", rows.assign(value=-rows.value))
    with pytest.raises(ValueError, match="unknown reference"):
        fit_reference("light", rows)


def test_class_mean_reference_and_skill_score():
    d = _sites()
    ref = fit_reference("class_mean", d[d.site_group != "P00"])
    got = ref(pd.DataFrame({"ecosystem": ["ENF", "GRA", "SAV"]}))
    train = d[d.site_group != "P00"]
    assert got[0] == pytest.approx(train[train.ecosystem == "ENF"].value.mean())
    assert got[2] == pytest.approx(train.value.mean())  # a class not seen: the training mean
    d["perfect"], d["ref"] = d.value, d.value.mean()
    b = paired_site_bootstrap(d, "perfect", "ref", group="site_group", n_resamples=200)
    assert b["skill"] == 1.0 and b["skill_lo"] == 1.0
    b = paired_site_bootstrap(d, "ref", "perfect", group="site_group", n_resamples=50)
    assert np.isnan(b["skill"])  # nothing to improve on: SSE of the reference is 0


def test_complete_combination_search_is_nested_and_scores_every_subset():
    """model.exhaustive_selection: every subset of the filtered predictors scored on inner folds of
    whole sites; the informative pair is chosen on all rows and inside the outer folds."""
    from fluxmap.science.comparison import select_predictors

    d = _sites(n_sites=12, per=12)
    d["value"] = 2 * d.x1 + 1.5 * d.x2 + np.random.default_rng(1).normal(0, 0.1, len(d))
    p = _protocol(backward=True, exhaustive=True)
    chosen, kept, _, path = select_predictors(d, ["x1", "x2", "noise"], p)
    assert len(path) == 7 and set(path.features) >= {"x1", "x1,x2", "x1,x2,noise"}
    assert set(chosen) >= {"x1", "x2"}
    _, folds = nested_cv(d, ["x1", "x2", "noise"], p, zones=lambda held: pd.Series(1, index=sorted(set(d.location))))
    assert all({"x1", "x2"} <= set(f.split(",")) for f in folds.features)
    with pytest.raises(ValueError, match="limit is 2"):
        select_predictors(d, ["x1", "x2", "noise"], _protocol(backward=True, exhaustive=True, exhaustive_max=2))
