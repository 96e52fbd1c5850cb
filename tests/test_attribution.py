"""Driver attribution (issue 29, part 2): exact tree SHAP values that add up to the prediction for
both model families, the demo truth's known drivers recovered per true zone, the summaries,
interactions, partial dependence and seasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fluxmap.science.attribution import (
    driver_of,
    forest_booster,
    interaction_table,
    partial_dependence,
    season_of,
    shap_values,
    summarize,
)
from fluxmap.science.train import fit


def _rows(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=["t2m", "tp", "ndvi", "elevation"]).astype("float32")
    x["value"] = 2.0 * x.t2m + np.sin(2 * x.tp) + 0.5 * x.t2m * x.ndvi + rng.normal(0, 0.1, n)
    return x


@pytest.mark.parametrize(("kind", "params"), [("xgboost", {"n_estimators": 80}), ("rf", {"n_estimators": 30})])
def test_shap_values_add_up_to_the_prediction(kind, params):
    x = _rows()
    m = fit(kind, x, x.value, features=["t2m", "tp", "ndvi", "elevation"], params=params)
    values, bias = shap_values(m, x)
    np.testing.assert_allclose(values.sum(axis=1) + bias, m.predict(x), atol=1e-4)
    s = summarize(values, {})
    first = s[(s.level == "predictor")].sort_values("rank")
    assert first.name.iloc[0] == "t2m" and first.name.iloc[-1] == "elevation"  # the strongest, the unused
    inter = interaction_table(m, x.iloc[:300])
    assert {inter.feature_a.iloc[0], inter.feature_b.iloc[0]} == {"t2m", "ndvi"}  # the one product term


@pytest.mark.parametrize("params", [{"n_estimators": 10, "max_depth": 6}, {"n_estimators": 20}])
def test_a_forest_as_an_xgboost_model_predicts_scikit_learns_values(params):
    """The same trees: shallow and deep (breadth-first renumbering), on the very thresholds
    (``<=`` against ``<``) and with missing values."""
    x = _rows(2000, seed=4)
    features = ["t2m", "tp", "ndvi", "elevation"]
    m = fit("rf", x, x.value, features=features, seed=1, params=params)
    new = np.random.default_rng(5).normal(size=(6000, 4)).astype("float32")
    new[:2000] = x[features].to_numpy()
    thresholds = np.concatenate([e.tree_.threshold[e.tree_.feature == 0] for e in m.estimator.estimators_])
    new[2000 : 2000 + len(thresholds), 0] = thresholds.astype("float32")
    new[::7, 2] = np.nan
    np.testing.assert_allclose(forest_booster(m.estimator).inplace_predict(new), m.estimator.predict(new), atol=1e-5)


def test_the_demo_truths_drivers_are_ranked_first_in_their_zones(tiny_world):
    """A model of each true zone fitted to the demo truth's SR at every cell and period: the
    attribution ranks the driver the truth is built on first where one dominates (cold:
    temperature, Q10 0.11 K-1; arid: moisture, m**1.5) and the two co-limiting drivers first where
    they co-limit (temperate: temperature and moisture)."""
    from fluxmap.io.catalog import builtin_catalog, load_catalog
    from fluxmap.science.extract import to_periods
    from fluxmap.science.predict import predictor_cube

    cat = load_catalog(builtin_catalog("demo"), **tiny_world.catalog_params)
    cubes = {e: cat.open(e) for e in cat.entries if e != "truth"}
    cubes["era5"] = to_periods(cubes["era5"])
    cube = predictor_cube(cubes).drop_vars("land_fraction").compute()
    truth = cat.open("truth")[["sr", "zone"]].compute()
    rows = cube.to_dataframe().join(truth.sr.to_dataframe()).reset_index()
    zone = truth.zone.to_series()
    rows["true_zone"] = zone.reindex(pd.MultiIndex.from_frame(rows[list(zone.index.names)])).to_numpy()
    rows = rows[np.isfinite(rows.sr) & (rows.true_zone > 0)]
    features = [v for v in cube.data_vars if v != "landcover"]
    first = {}
    for z, part in rows.groupby("true_zone"):
        part = part.sample(min(len(part), 4000), random_state=0)
        m = fit("xgboost", part, part.sr, features=features, params={"n_estimators": 150})
        values, _ = shap_values(m, part)
        s = summarize(values, {})
        first[int(z)] = list(s[s.level == "driver"].sort_values("rank").name.head(2))
    assert {1, 2, 3} <= set(first), first
    assert first[1][0] == "temperature" and first[2][0] == "water", first
    assert set(first[3]) == {"temperature", "water"}, first


def test_summaries_group_rows_and_rank_drivers():
    values = pd.DataFrame({"t2m": [1.0, -1.0, 3.0, 0.0], "lst_day": [1.0, 1.0, 0.0, 0.0], "gpp": [0.5, 0.5, 0.5, 4.0]})
    s = summarize(values, {"ecosystem": pd.Series(["ENF", "ENF", "GRA", "GRA"])})
    d = s[(s.grouping == "ecosystem") & (s.group == "ENF") & (s.level == "driver")].set_index("name")
    # A driver is its predictors' summed SHAP: temperature rows 2 and 0 -> mean |.| 1.0; productivity 0.5.
    assert d.loc["temperature", "mean_abs_shap"] == pytest.approx(1.0) and d.loc["temperature", "rank"] == 1
    assert d.share.sum() == pytest.approx(1.0) and d.loc["productivity", "share"] == pytest.approx(0.5 / 1.5)
    g = s[(s.grouping == "ecosystem") & (s.group == "GRA") & (s.level == "driver")]
    assert g.name.iloc[0] == "productivity" and (g.rows == 2).all()
    assert driver_of("tower_vpd_f") == "atmospheric demand" and driver_of("mystery") == "mystery"


def test_partial_dependence_follows_the_driver_and_seasons_follow_the_hemisphere():
    x = _rows()
    m = fit("xgboost", x, x.value, features=["t2m", "tp", "ndvi", "elevation"], params={"n_estimators": 80})
    pdp = partial_dependence(m, x, "t2m", points=10)
    assert len(pdp) == 10 and np.all(np.diff(pdp.mean_prediction) >= -0.05)  # 2 x t2m: rising
    assert pdp.mean_prediction.iloc[-1] - pdp.mean_prediction.iloc[0] > 4
    with pytest.raises(ValueError, match="no value of 'tp'"):
        partial_dependence(m, x.assign(tp=np.nan), "tp")
    start = pd.Series(pd.to_datetime(["2020-01-10", "2020-07-10", "2020-04-01", "2020-10-01"]))
    assert list(season_of(start, pd.Series([50.0] * 4))) == ["winter", "summer", "spring", "autumn"]
    assert list(season_of(start, pd.Series([-30.0] * 4))) == ["summer", "winter", "autumn", "spring"]
